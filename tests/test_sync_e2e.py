"""Real proxies on one store: workers add up, and kills lose nothing that was stored."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import httpx

from conftest import MOCKSTORE, ROOT, free_port, no_proxy_env, wait_port

PATHS = [f"/users/{i}" for i in range(1, 25)] + [f"/articles/post-{i}" for i in range(12)] + [
    "/users?page=2", "/users/me", "/status/404", "/items",
]


def start(db: Path, api: str, confdir: Path, mode: str = "learn", workers: int = 1, log: Path | None = None,
          extra: tuple = ()):
    port = free_port()
    args = [MOCKSTORE, "serve", "--listen-port", str(port), "--db", str(db), "--mode", mode, "--latency", "none",
            "--confdir", str(confdir), "--upstream", api, "--workers", str(workers), *extra]
    out = open(log, "w") if log else subprocess.DEVNULL
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    wait_port(port, proc, timeout=30)
    if workers > 1:
        deadline = time.monotonic() + 30
        while "workers listening" not in log.read_text():
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
            time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port}"


def stop(proc) -> None:
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)


def send(url: str, paths: list[str], threads: int = 4, stop_flag: threading.Event | None = None,
         done: list | None = None) -> int:
    """Each request on a new connection, so the kernel spreads them over the workers."""
    done = [] if done is None else done

    def run(k: int) -> None:
        for p in paths[k::threads]:
            if stop_flag is not None and stop_flag.is_set():
                return
            try:
                httpx.get(url + p, headers={"connection": "close"}, timeout=10)
                done.append(p)
            except httpx.HTTPError:
                if stop_flag is None:
                    raise

    ts = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return len(done)


def learned(db: Path) -> dict:
    conn = sqlite3.connect(db)
    eps = {i: (c, json.loads(s)["statuses"]) for i, c, s in conn.execute("select id, count, stats from endpoints")}
    schemas = {(e, k, st): (json.loads(s), n) for e, k, st, s, n in conn.execute(
        "select endpoint, kind, status, schema, samples from schemas")}
    rows = conn.execute("select count(*) from exchanges").fetchone()[0]
    conn.close()
    return {"endpoints": eps, "schemas": schemas, "rows": rows}


def test_two_workers_learn_what_one_process_learns(backend, tmp_path, confdir):
    _, api = backend()
    rng = random.Random(5)
    traffic = [rng.choice(PATHS) for _ in range(300)]
    with no_proxy_env():
        results = {}
        for workers in (1, 2):
            db = tmp_path / f"w{workers}.db"
            # without drift watching: what a body that drifts keeps out of the baseline depends
            # on what each worker had seen when it came (drift alerts add up: test_drift)
            proc, url = start(db, api, confdir, workers=workers, log=tmp_path / f"w{workers}.log",
                              extra=("--set", "mock_drift=false"))
            assert send(url, traffic) == len(traffic)
            stop(proc)
            results[workers] = learned(db)
    one, two = results[1], results[2]
    assert one["rows"] == two["rows"] == len(traffic)
    assert sum(c for c, _ in one["endpoints"].values()) == len(traffic)
    assert two["endpoints"] == one["endpoints"]
    assert two["schemas"] == one["schemas"]


def test_kill_9_while_learning_loses_nothing_stored(backend, tmp_path, confdir):
    _, api = backend()
    db = tmp_path / "k.db"
    rng = random.Random(9)
    with no_proxy_env():
        for round_ in range(10):
            proc, url = start(db, api, confdir)
            flag, done = threading.Event(), []
            paths = [rng.choice(PATHS) for _ in range(2000)]
            t = threading.Thread(target=send, args=(url, paths, 2, flag, done))
            t.start()
            while not done and t.is_alive():
                time.sleep(0.01)
            time.sleep(rng.uniform(0.3, 1.8))  # across persists (every second) and flushes
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            flag.set()
            t.join()
        conn = sqlite3.connect(db)
        assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
        conn.close()
        # open it once more (this counts what the last kill left uncounted), and stop cleanly
        proc, url = start(db, api, confdir)
        stop(proc)
        got = learned(db)
        assert got["rows"] > 0
        assert sum(c for c, _ in got["endpoints"].values()) == got["rows"]
        proc, url = start(db, api, confdir, mode="mock")
        try:
            conn = sqlite3.connect(db)
            seen = {p for (p,) in conn.execute("select distinct path from exchanges")}
            conn.close()
            with httpx.Client(base_url=url, timeout=10) as c:
                for path in seen:
                    r = c.get(path)
                    assert r.headers["x-mockstore-source"] != "not-found", path
                r = c.get("/users/777")  # never seen: answered from what /users/{id} learned
                assert r.status_code == 200 and r.headers["x-mockstore-source"] != "not-found"
        finally:
            stop(proc)
