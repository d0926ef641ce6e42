"""A big store: the recorded-exchange index looked up in SQLite (not loaded at start), schemas
parsed on first use, and every lookup still right. No timing is asserted here: the numbers
are the benchmark's (scripts/bench, store scale)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import httpx
import pytest

from conftest import MOCKSTORE, ROOT, free_port, no_proxy_env
from mockstore.answer import Responder
from mockstore.exchange import Request, Response
from mockstore.learn import Learner
from mockstore.model import Model, StoredSchema
from mockstore.recorded import RecordedIndex
from mockstore.store import Store


def _bench_store():
    spec = importlib.util.spec_from_file_location("bench_store", ROOT / "scripts" / "bench_store.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """200k exchanges over 10k endpoints (20 recordings each), built as the benchmark does."""
    bench_store = _bench_store()
    db = tmp_path_factory.mktemp("scale") / "big.db"
    info = bench_store.build(db, exchanges=200_000, endpoints=10_000)
    return bench_store, db, info


def test_big_store_is_built_and_answered_exactly(big):
    bench_store, db, info = big
    assert info["exchanges"] == 200_000 and info["endpoints"] == 10_000
    measured = bench_store.measure(db, lookups=2_000)
    assert measured["misses"] == 0
    assert measured["endpoints"] == 10_000
    assert measured["recorded_keys"] == 200_000


def test_load_reads_no_exchange_and_no_schema(big):
    bench_store, db, _ = big
    store = Store(db)
    try:
        model = Model.load(store.db)
        assert isinstance(model.recorded, RecordedIndex)
        assert not model.recorded._stored and not model.recorded._added  # nothing read yet
        ep = next(iter(model.endpoints.values()))
        sm = ep.responses[200]
        assert isinstance(sm, StoredSchema) and sm._built is None  # not parsed yet
        assert sm.to_schema()["properties"]["email"]["type"] == "string"
        assert sm._built is not None
        # a lookup goes to the store's index; the answer is the recording's response
        req = bench_store.request(1234, 7)
        answer = Responder(model, store, latency=False).answer(req)
        assert answer.source == "recorded"
        assert answer.response.body == bench_store.BODY
        assert model.recorded.get(10**15) is None
        # an id of the endpoint that nobody recorded: synthesized from the lazily parsed schema
        other = Responder(model, store, latency=False).answer(bench_store.request(1234, 999_999))
        assert other.source == "synthesized"
        assert set(json.loads(other.response.body)) >= {"id", "email"}
    finally:
        store.close()


def test_serve_answers_from_the_big_store(big, tmp_path, confdir):
    bench_store, db, _ = big
    copy = tmp_path / "copy.db"
    shutil.copy(db, copy)
    port = free_port()
    proc = subprocess.Popen(
        [MOCKSTORE, "serve", "--db", str(copy), "--mode", "replay", "--listen-port", str(port), "--latency", "none",
         "--confdir", str(confdir), "--upstream", f"https://{bench_store.HOST}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
    )
    try:
        from conftest import wait_port

        wait_port(port, proc, timeout=30)
        with no_proxy_env(), httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as c:
            r = c.get("/svc9999/items/20")
            assert r.status_code == 200 and r.content == bench_store.BODY
            assert r.headers["x-mockstore-source"] == "recorded"
            r = c.get("/svc9999/items/21")  # replay: exact matches only
            assert r.status_code == 404
    finally:
        proc.send_signal(2)
        out = proc.communicate(timeout=20)[0]
    assert proc.returncode == 0, out


# --- the index itself ----------------------------------------------------------------------

def _store_with(tmp_path, rows: list[tuple[int, int]]):
    store = Store(tmp_path / "idx.db")
    with store.db.conn:
        store.db.conn.executemany("insert into exchanges (id, match_key, path) values (?, ?, '/')", rows)
    return store


def test_index_merges_store_and_new_recordings_in_order(tmp_path):
    store = _store_with(tmp_path, [(10, 1), (30, 1), (20, 2)])
    idx = RecordedIndex(str(store.path))
    assert idx.get(1) == [10, 30] and idx[2] == [20]
    assert idx.get(3) is None and 3 not in idx and 1 in idx
    assert len(idx) == 2
    idx.add(1, 40)
    idx.add(3, 50)
    assert idx.get(1) == [10, 30, 40]
    assert idx.get(3) == [50]
    assert len(idx) == 3
    with store.db.conn:  # the writer flushes 40: it is not counted twice
        store.db.conn.execute("insert into exchanges (id, match_key, path) values (40, 1, '/')")
    idx._stored.clear()
    assert idx.get(1) == [10, 30, 40]
    assert sorted(idx) == [1, 2, 3]
    with pytest.raises(KeyError):
        idx[99]
    store.close()


def test_index_cache_is_bounded(tmp_path):
    store = _store_with(tmp_path, [(i, i) for i in range(1, 200)])
    idx = RecordedIndex(str(store.path), cache_keys=50)
    for k in range(1, 1000):  # misses too: they must not grow memory without end
        idx.get(k)
    assert len(idx._stored) == 50
    assert idx.get(5) == [5]
    store.close()


def test_index_without_a_file_is_memory_only():
    idx = RecordedIndex()
    assert idx.get(1) is None and len(idx) == 0 and not idx
    idx.add(1, 5)
    assert idx.get(1) == [5] and len(idx) == 1


def test_index_survives_a_vanished_store(tmp_path):
    store = _store_with(tmp_path, [(1, 1)])
    path = store.path
    store.close()
    idx = RecordedIndex(str(path))
    path.unlink()
    for p in tmp_path.glob("idx.db-*"):
        p.unlink()
    assert idx.get(1) is None  # no crash: nothing known


def test_learning_and_answering_with_a_file_store(tmp_path):
    """The round trip the proxy makes: learn, restart (load), answer from the index."""
    store = Store(tmp_path / "rt.db")
    model = Model.load(store.db)
    learner = Learner(model, store)
    from mockstore.exchange import Exchange

    for seq, i in enumerate((1, 2, 2)):
        req = Request("GET", "api.test", f"/things/{i}", scheme="https", port=443)
        body = json.dumps({"n": i, "seq": seq}).encode()
        learner.learn(Exchange(req, Response(200, [("content-type", "application/json")], body)))
    store.submit(model.persist())
    store.flush()
    store.close()

    store = Store(tmp_path / "rt.db")
    model = Model.load(store.db)
    responder = Responder(model, store, latency=False)
    req = Request("GET", "api.test", "/things/2", scheme="https", port=443)
    first, second, third = (responder.answer(req) for _ in range(3))
    assert [json.loads(a.response.body)["seq"] for a in (first, second, third)] == [1, 2, 2]  # in order, then the last
    store.close()


def test_stored_schema_with_a_damaged_row_learns_afresh():
    sm = StoredSchema("{not json", 3)
    assert sm.samples == 3
    sm.add({"a": 1})
    assert sm.to_schema()["properties"]["a"]["type"] == "integer"


# --- the benchmark script, as a smoke test ------------------------------------------------

@pytest.mark.skipif(os.environ.get("MOCKSTORE_BENCH_TESTS") != "1",
                    reason="a benchmark run, opt-in: MOCKSTORE_BENCH_TESTS=1 (needs wrk and nginx)")
def test_bench_quick_produces_a_table(tmp_path):
    """Opt-in: it loads the machine for a minute, and whether it runs must not depend on what
    happens to be installed. With the variable set and wrk or nginx missing, it fails."""
    assert shutil.which("wrk") and shutil.which("nginx"), "MOCKSTORE_BENCH_TESTS=1 needs wrk and nginx installed"
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench"), "--quick", "--only", "M0-lean", "--seconds", "1",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    md = (tmp_path / "bench.md").read_text()
    assert "| M0-lean | M0 trivial addon, lean master |" in md
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["results"][0]["id"] == "M0-lean" and data["results"][0]["rps"] > 0
