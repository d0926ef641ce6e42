"""`mockstore serve` (the lean master, one or several workers) against `mitmdump -s`: the
same answers, and several workers learning into one store at once lose nothing."""

from __future__ import annotations

import os
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
from mockstore.workers import WorkersError, check_port


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


def test_workers_learning_at_once_lose_nothing(served, backend, tmp_path):
    """Two workers record concurrently into one store: every exchange lands, ids from both
    slots, no client ever sees an error (such as "database is locked")."""
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


def test_workers_stop_together_when_one_dies(served, backend, tmp_path):
    _, api = backend()
    proxy = served("serve", api, tmp_path / "w.db", "learn", workers=2)
    children = Path(f"/proc/{proxy.proc.pid}/task/{proxy.proc.pid}/children").read_text().split()
    assert len(children) == 2
    os.kill(int(children[1]), signal.SIGKILL)
    proxy.proc.wait(timeout=30)
    assert proxy.proc.returncode != 0
    assert "a worker exited" in proxy.output()
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
