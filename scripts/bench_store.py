"""Store scale: build a big store fast, then measure what the request path and start-up pay.

Used by `scripts/bench` (1M exchanges, 10k endpoints) and by tests/test_scale.py (200k).
The endpoints, templates and schemas are learned for real (the Learner, no store); the bulk
of exchanges is written straight into SQLite in one transaction, as the Learner would have
recorded them, because going through the proxy would take an hour for a million.

    python scripts/bench_store.py build STORE.db [--exchanges N] [--endpoints N]
    python scripts/bench_store.py measure STORE.db
"""

from __future__ import annotations

import json
import random
import sqlite3
import sys
import time
from pathlib import Path

from mockstore.answer import Responder
from mockstore.exchange import Exchange, Request, Response
from mockstore.learn import Learner, request_key
from mockstore.model import Model, match_key
from mockstore.store import Store

HOST = "api.example.com"
BODY = json.dumps({"id": 1, "name": "Leanne Graham", "username": "Bret", "email": "Sincere@april.biz",
                   "active": True, "score": 1.5, "tags": ["a", "b"]}).encode()
RESP_HEADERS = json.dumps([["content-type", "application/json"]])


def endpoint_path(e: int, item: int) -> str:
    return f"/svc{e}/items/{item}"


def request(e: int, item: int) -> Request:
    return Request("GET", HOST, endpoint_path(e, item), scheme="https", port=443)


def build(path: str | Path, *, exchanges: int = 1_000_000, endpoints: int = 10_000, seed: int = 0) -> dict:
    """A store with `endpoints` learned endpoints and `exchanges` recorded exchanges, spread
    evenly over them (item ids 1..exchanges/endpoints). Returns what it built and how long it took."""
    t0 = time.perf_counter()
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; the builder only makes new stores")
    store = Store(path)  # creates the schema (and every registered module's tables)
    model = Model()
    learner = Learner(model, None)
    for e in range(endpoints):  # three ids each, so every endpoint is a template, none folds
        for item in (1, 2, 3):
            learner.learn(Exchange(request(e, item), Response(200, [("content-type", "application/json")], BODY),
                                   started=time.time(), duration_ms=5.0))
    write = model.persist()
    store.submit(write)
    store.flush()
    store.close()
    t_learn = time.perf_counter() - t0

    per = max(1, exchanges // endpoints)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("drop index if exists exchanges_match")  # rebuilt once at the end: much faster
    conn.execute("drop index if exists exchanges_endpoint")
    authority = HOST  # https on 443: no port in the authority
    base_id = int(time.time() * 1_000_000) * 16
    rng = random.Random(seed)

    def rows():
        n = 0
        for item in range(1, per + 1):
            for e in range(endpoints):
                if n >= exchanges:
                    return
                p = endpoint_path(e, item)
                yield (base_id + n * 16, time.time(), "https", authority, 443, "GET", p, "[]", "[]", b"",
                       200, RESP_HEADERS, BODY, 5.0 + rng.random(), f"/svc{e}/items/{{id}}",
                       match_key("GET", authority, p, [], ""), "import")
                n += 1

    with conn:
        conn.executemany(
            """insert into exchanges (id, ts, scheme, host, port, method, path, query, req_headers, req_body,
               status, resp_headers, resp_body, duration_ms, template, match_key, source)
               values (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
            rows(),
        )
        # the bulk stands for exchanges the model had counted (see mockstore.rebuild)
        for slot, top in conn.execute("select id % 16, max(id) from exchanges group by id % 16").fetchall():
            conn.execute("insert or replace into meta (key, value) values (?, ?)", [f"counted.{slot}", str(top)])
    t_rows = time.perf_counter() - t0 - t_learn
    with conn:
        conn.execute("create index if not exists exchanges_match on exchanges (match_key, id)")
        conn.execute("create index if not exists exchanges_endpoint on exchanges (host, method, template)")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    count = conn.execute("select count(*) from exchanges").fetchone()[0]
    conn.close()
    return {
        "exchanges": count, "endpoints": len(model.endpoints), "per_endpoint": per,
        "learn_s": t_learn, "insert_s": t_rows, "total_s": time.perf_counter() - t0,
        "mb": path.stat().st_size / 1e6,
    }


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def measure(path: str | Path, *, lookups: int = 20_000, seed: int = 1) -> dict:
    """Model.load time, and the latency of exact-match lookups as the proxy makes them:
    `exact_cached` (memory) and `answer` (memory, then the store) over random recordings."""
    store = Store(path)
    try:
        t0 = time.perf_counter()
        model = Model.load(store.db)
        load_s = time.perf_counter() - t0
        responder = Responder(model, store, latency=False)
        n_eps = len(model.endpoints)
        per = max(1, len(model.recorded) // max(1, n_eps))
        rng = random.Random(seed)
        reqs = [request(rng.randrange(n_eps), rng.randint(1, per)) for _ in range(lookups)]
        answer_us, cached_us, key_us, misses = [], [], [], 0
        for req in reqs:
            t = time.perf_counter()
            a = responder.answer(req)  # cold: index in memory, the response from SQLite
            answer_us.append((time.perf_counter() - t) * 1e6)
            if a.source != "recorded":
                misses += 1
            t = time.perf_counter()
            responder.exact_cached(req, responder.key(req))  # warm: now in the response cache
            cached_us.append((time.perf_counter() - t) * 1e6)
            t = time.perf_counter()
            request_key(req)
            key_us.append((time.perf_counter() - t) * 1e6)
        return {
            "load_s": load_s, "recorded_keys": len(model.recorded), "endpoints": n_eps, "misses": misses,
            "answer_p50_us": _pct(answer_us, 50), "answer_p99_us": _pct(answer_us, 99),
            "cached_p50_us": _pct(cached_us, 50), "cached_p99_us": _pct(cached_us, 99),
            "key_p99_us": _pct(key_us, 99),
        }
    finally:
        store.close()


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("db")
    b.add_argument("--exchanges", type=int, default=1_000_000)
    b.add_argument("--endpoints", type=int, default=10_000)
    m = sub.add_parser("measure")
    m.add_argument("db")
    args = ap.parse_args(argv)
    if args.cmd == "build":
        out = build(args.db, exchanges=args.exchanges, endpoints=args.endpoints)
    else:
        if not Path(args.db).exists():
            ap.error(f"no store at {args.db}")
        out = measure(args.db)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
