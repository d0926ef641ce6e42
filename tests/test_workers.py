"""`mockstore serve` (the lean master, one or several workers) against `mitmdump -s`: the
same answers, and several workers learning into one store at once lose nothing."""

from __future__ import annotations

import http.client
import io
import os
import re
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from conftest import ADDON, MITMDUMP, MOCKSTORE, ROOT, free_port, no_proxy_env, wait_port
from mockstore.workers import STEADY, Pool, WorkersError, check_port


class Served:
    """A proxy process whose output goes to a file, so a test can wait for a line in it."""

    def __init__(self, args: list[str], port: int, log: Path, ready: str | None = None):
        self.port, self.log = port, log
        self.url = f"http://127.0.0.1:{port}"
        self._f = open(log, "w")
        self.proc = subprocess.Popen(args, stdout=self._f, stderr=subprocess.STDOUT, cwd=ROOT)
        wait_port(port, self.proc, timeout=30)
        deadline = time.monotonic() + 30
        while ready and ready not in self.output():
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, f"no {ready!r} in:\n{self.output()}"
            time.sleep(0.05)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._f.close()
        return self.output()


@pytest.fixture
def served(tmp_path, confdir):
    started: list[Served] = []

    def start(runner: str, upstream: str, db: Path, mode: str = "learn", workers: int = 1) -> Served:
        port = free_port()
        if runner == "mitmdump":
            args = [MITMDUMP, "-s", ADDON, "--listen-host", "127.0.0.1", "--listen-port", str(port),
                    "--mode", f"reverse:{upstream}", "--set", f"mock_db={db}", "--set", f"mock_mode={mode}",
                    "--set", "mock_latency=none", "--set", f"confdir={confdir}"]
        else:
            args = [MOCKSTORE, "serve", "--listen-port", str(port), "--db", str(db), "--mode", mode,
                    "--latency", "none", "--confdir", str(confdir), "--upstream", upstream, "--workers", str(workers)]
        s = Served(args, port, tmp_path / f"{runner}-{workers}-{len(started)}.log",
                   ready="workers listening" if workers > 1 else None)
        started.append(s)
        return s

    with no_proxy_env():
        yield start
    for s in started:
        s.stop()


def exchanges(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute("select id, method, path, status from exchanges order by id").fetchall()


CASES = ["/users/1", "/users/2", "/users/3", "/users/me", "/articles/hello-world", "/users?page=2"]


def run_cases(url: str, extra: tuple = ()) -> list[tuple]:
    out = []
    with httpx.Client(base_url=url, timeout=20) as c:
        for path in CASES + ["/users/7", "/nowhere/at/all", *extra]:
            r = c.get(path)
            out.append((path, r.status_code, r.headers.get("x-mockstore-source"), r.content))
    return out


def test_serve_answers_like_mitmdump(served, backend, tmp_path):
    """Learn the same traffic through each runner, then mock from it: the same answers."""
    _, api = backend()
    answers = {}
    for runner, workers in (("mitmdump", 1), ("serve", 1), ("serve", 2)):
        db = tmp_path / f"{runner}-{workers}.db"
        learning = served(runner, api, db, "learn", workers)
        real = run_cases(learning.url)
        learning.stop()
        assert [r[1] for r in real[: len(CASES)]] == [200] * len(CASES)
        assert all(r[2] is None for r in real), "learn mode forwards: nothing is ours"
        assert len(exchanges(db)) == len(CASES) + 2
        mocking = served(runner, api, db, "mock", workers)
        answers[(runner, workers)] = run_cases(mocking.url, ("/never/seen",))
        mocking.stop()
        for (path, status, source, body), (_, rstatus, _, rbody) in zip(answers[(runner, workers)], real):
            if path in CASES:
                assert (status, source, body) == (rstatus, "recorded", rbody), path
    assert answers[("serve", 1)] == answers[("mitmdump", 1)]
    assert answers[("serve", 2)] == answers[("mitmdump", 1)]
    recorded_404, never_seen = answers[("serve", 1)][-2:]
    assert recorded_404[1:3] == (404, "recorded")  # the backend's own 404, replayed
    assert never_seen[1:3] == (404, "not-found")


def test_workers_learning_at_once_lose_nothing(served, backend, tmp_path, monkeypatch):
    """Two workers record concurrently into one store: every exchange lands, ids from both
    slots, no client ever sees an error (such as "database is locked"); their log, written to
    one file as it happens, keeps every line whole."""
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)  # a file gets Python's block buffering
    _, api = backend()
    db = tmp_path / "shared.db"
    proxy = served("serve", api, db, "learn", workers=2)
    results: list[tuple[int, bytes]] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        # a new connection per request, so the kernel spreads them over both workers
        for i in range(40):
            r = httpx.get(f"{proxy.url}/users/{k * 100 + i}", headers={"connection": "close"}, timeout=20)
            with lock:
                results.append((r.status_code, r.content))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.monotonic() + 5
    while proxy.output().count("] client connect") < 240:  # each line written as it is logged
        assert time.monotonic() < deadline, "the workers' log lags behind their traffic"
        time.sleep(0.05)
    output = proxy.stop()
    assert len(results) == 240
    assert all(status == 200 for status, _ in results), {s for s, _ in results}
    assert not any(b"locked" in body for _, body in results)
    assert "database is locked" not in output
    rows = exchanges(db)
    assert len(rows) == 240
    assert len({r[0] for r in rows}) == 240
    assert {r[2] for r in rows} == {f"/users/{k * 100 + i}" for k in range(6) for i in range(40)}
    assert {r[0] % 16 for r in rows} == {0, 1}, "both workers recorded"
    lines = output.splitlines()
    torn = [line for line in lines if not re.fullmatch(r"mockstore: .*|\[\d\d:\d\d:\d\d\.\d{3}\][^\[]*(\[[\d.:]+\][^\[]*)?", line)]
    assert not torn, torn[:5]


def test_two_proxies_started_alike_on_one_store_record_with_their_own_slots(served, backend, tmp_path):
    """Two `mitmdump -s` on one store, neither given its own mock_worker: the second records
    with another slot (ids from one slot, made by two processes, would now and then be equal,
    and the store keeps one row per id), says so, and every exchange lands and is counted."""
    _, api = backend()
    db = tmp_path / "shared.db"
    first = served("mitmdump", api, db)
    second = served("mitmdump", api, db)
    for i in range(30):
        for p in (first, second):
            assert httpx.get(f"{p.url}/users/{i}?by={p.port}", timeout=20).status_code == 200
    first.stop()
    out = second.stop()
    assert "worker slot 0 of" in out and "records with slot 1" in out, out
    rows = exchanges(db)
    assert len(rows) == 60 and {r[0] % 16 for r in rows} == {0, 1}
    with sqlite3.connect(db) as conn:
        assert conn.execute("select sum(count) from endpoints").fetchone()[0] == 60
    assert not list(tmp_path.glob("*.lock")), "each let its slot go"


def test_workers_refuse_a_taken_port(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(WorkersError, match="cannot listen"):
            check_port("127.0.0.1", port)
        r = subprocess.run(
            [MOCKSTORE, "serve", "--workers", "2", "--listen-port", str(port), "--db", str(tmp_path / "x.db"),
             "--confdir", str(tmp_path / "certs")],
            capture_output=True, text=True, timeout=30, cwd=ROOT,
        )
    assert r.returncode != 0
    assert "cannot listen" in r.stderr + r.stdout
    with pytest.raises(WorkersError, match="fixed --listen-port"):
        check_port("127.0.0.1", 0)


# --- the pool: a dead worker is replaced, a stopped pool stops every worker ---------------------


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def client_ports(pid: int, port: int) -> set[int]:
    """The client ports of the established connections to `port` that process `pid` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = set()
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        local, remote, state, inode = f[1], f[2], f[3], f[9]
        if inode in inodes and state == "01" and int(local.split(":")[1], 16) == port:
            ports.add(int(remote.split(":")[1], 16))
    return ports


def wait_for(what, timeout: float = 25.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while not (result := what()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)
    return result


class Load:
    """Client threads, each on one keep-alive connection at a time (httpx), asking until
    stopped; each error is kept with its thread and the client port of the connection it
    happened on (None: a new connection, never answered)."""

    def __init__(self, url: str, threads: int = 8):
        self.url, self.answers, self.errors = url, 0, []
        self.lock, self.stopped = threading.Lock(), threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(k,)) for k in range(threads)]
        for t in self.threads:
            t.start()

    def _client(self, k: int) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        with httpx.Client(base_url=self.url, timeout=10, limits=limits) as c:
            port, i = None, 0
            while not self.stopped.is_set():
                i += 1
                try:
                    r = c.get(f"/users/{k}/{i}")
                    port = r.extensions["network_stream"].get_extra_info("client_addr")[1]
                    assert r.headers.get("x-mockstore-source") == "not-found", r.headers
                    with self.lock:
                        self.answers += 1
                except httpx.TransportError as e:
                    with self.lock:
                        self.errors.append((time.monotonic(), k, port, repr(e)))
                    port = None

    def wait_answers(self, n: int) -> None:
        wait_for(lambda: self.answers >= n)

    def stop(self) -> None:
        self.stopped.set()
        for t in self.threads:
            t.join(timeout=20)


def connected_workers(url: str, port: int, workers: list[int], n: int = 16) -> dict[int, int]:
    """Open n connections at once, each answered once; how many each worker holds."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(n)]
    try:
        for s in socks:
            s.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        for s in socks:
            assert s.recv(65536).startswith(b"HTTP/1.1 404")
        return {w: len(client_ports(w, port)) for w in workers}
    finally:
        for s in socks:
            s.close()


def test_a_killed_worker_is_replaced_and_only_its_connections_fail(served, tmp_path):
    """kill -9 one worker under load: the parent starts it again, the pool serves from both
    again, and the only client errors are on the connections the killed worker held (and on a
    client's next connection, when the kernel queued it at the dying worker's socket in the
    moment it took to close: a reset of a connection nobody answered yet)."""
    proxy = served("serve", "http://127.0.0.1:9", tmp_path / "m.db", "mock", workers=2)
    workers = children(proxy.proc.pid)
    assert len(workers) == 2
    load = Load(proxy.url)
    try:
        load.wait_answers(150)
        held = {w: client_ports(w, proxy.port) for w in workers}
        victim = max(workers, key=lambda w: len(held[w]))
        survivor = next(w for w in workers if w != victim)
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(lambda: "listening again" in proxy.output())
        restarted_at = time.monotonic()
        answered = load.answers
        load.wait_answers(answered + 150)
    finally:
        load.stop()
    print(f"held {len(held[victim])} of {sum(map(len, held.values()))} connections; {len(load.errors)} errors; "
          f"back after {restarted_at - killed_at:.1f} s; {load.answers} answers: {load.errors}")
    assert held[victim], held
    assert load.errors, "the killed worker's connections were reset"
    on_held = [(k, port) for _, k, port, _ in load.errors if port is not None]
    assert len(on_held) <= len(held[victim]), load.errors
    assert {port for _, port in on_held} <= held[victim], (load.errors, held)
    lost = {k for k, _ in on_held}  # the clients whose connection was the killed worker's
    assert all(k in lost for _, k, port, _ in load.errors if port is None), load.errors
    assert all(killed_at <= t < restarted_at for t, _, _, _ in load.errors), "no error once it is back"
    now = children(proxy.proc.pid)
    assert survivor in now and victim not in now and len(now) == 2, (workers, now)
    replacement = next(w for w in now if w != survivor)
    out = proxy.output()
    assert f"(pid {victim}) exited (killed by SIGKILL); starting it again" in out
    assert f"listening again (pid {replacement})" in out
    spread = connected_workers(proxy.url, proxy.port, now)
    assert all(spread.values()), f"both workers take connections again: {spread}"


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_stops_quietly_with_a_client_connected(served, backend, tmp_path, workers):
    """Ctrl-C while a client keeps its connection open (as browsers do): the connection is
    closed, and nothing is reported as an error (Python 3.11 printed a traceback for it)."""
    _, api = backend()
    proxy = served("serve", api, tmp_path / "s.db", "learn", workers=workers)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    conn.request("GET", "/users/1")
    r = conn.getresponse()
    assert r.status == 200 and r.read()
    out = proxy.stop()
    assert conn.sock.recv(1) == b"", "the proxy closed the connection"
    conn.close()
    assert proxy.proc.returncode == 0
    assert "Traceback" not in out and "Exception in callback" not in out, out


def test_a_stopped_pool_stops_every_worker_cleanly(served, backend, tmp_path):
    """SIGTERM to the parent: each worker closes its store on the way out and exits 0 (the
    parent says of any that did not), and the parent exits 0."""
    _, api = backend()
    db = tmp_path / "w.db"
    proxy = served("serve", api, db, "learn", workers=2)
    workers = children(proxy.proc.pid)
    for i in range(30):
        assert httpx.get(f"{proxy.url}/users/{i}", headers={"connection": "close"}, timeout=20).status_code == 200
    proxy.proc.send_signal(signal.SIGTERM)
    assert proxy.proc.wait(timeout=30) == 0, proxy.output()
    assert all(gone(w) for w in workers)
    out = proxy.output()
    assert "starting it again" not in out and "stopped with" not in out and "did not stop" not in out, out
    assert len(exchanges(db)) == 30


def test_workers_of_a_killed_parent_stop(served, tmp_path):
    """No orphan keeps a socket in the port's group once the parent is gone, even by SIGKILL."""
    proxy = served("serve", "http://127.0.0.1:9", tmp_path / "m.db", "mock", workers=2)
    workers = children(proxy.proc.pid)
    proxy.proc.kill()
    proxy.proc.wait()
    wait_for(lambda: all(gone(w) for w in workers), timeout=20)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=2).close()


def test_a_worker_that_cannot_start_again_ends_the_pool(served, tmp_path):
    """A replacement that dies before listening is tried again, with a back-off, a few
    times; then the pool stops and exits with its error, rather than loop forever."""
    db = tmp_path / "m.db"
    proxy = served("serve", "http://127.0.0.1:9", db, "mock", workers=2)
    workers = children(proxy.proc.pid)
    # the running workers keep the files they opened; a new one finds a folder there (a file
    # of garbage would not do: pages of the store in its -wal, which the others keep, read fine)
    for name in (db.name, f"{db.name}-wal", f"{db.name}-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    db.mkdir()
    os.kill(workers[1], signal.SIGKILL)
    code = proxy.proc.wait(timeout=60)
    out = proxy.output()
    assert code == 1, out
    assert out.count("mockstore worker 1: mock_db: cannot open the store") == 3, out
    assert "exited before listening 3 times in a row (exit code 1); stopping the others" in out
    assert all(gone(w) for w in workers)


def test_the_back_off_doubles_while_a_worker_keeps_dying_and_starts_over_once_it_held():
    pool = Pool({}, 2, io.StringIO())
    pool.serving = True
    w = pool.workers[1]

    class Dead:
        returncode, pid = -9, 1234

    for expected in (0.5, 1, 2, 4, 8, 8):
        w.proc, w.listening_since = Dead(), time.monotonic()  # it listened, then died at once
        assert pool.died(w) is None
        assert w.delay == expected and w.due is not None
    w.proc, w.listening_since = Dead(), time.monotonic() - STEADY  # it held a while
    assert pool.died(w) is None and w.delay == 0.5
    assert "worker 1 (pid 1234) exited (killed by SIGKILL); starting it again in 0.5 s" in pool.out.getvalue()
