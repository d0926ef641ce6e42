"""The core library without a proxy: bodies, redaction, statistics, the store's writer,
the model's persistence, and the answer chain."""

from __future__ import annotations

import gzip
import json
import random
import sqlite3
import zlib

import brotli
import jsonschema
import pytest
import zstandard

from mockstore import bodies, flows, redact
from mockstore.answer import Responder
from mockstore.exchange import Exchange, Request, Response
from mockstore.flows import VOLATILE_HEADERS
from mockstore.learn import Fingerprint, Learner
from mockstore.model import Model, ResponseCache
from mockstore.stats import EndpointStats
from mockstore.store import Store, StoreError

PAYLOAD = json.dumps({"id": 1, "name": "x" * 100}).encode()


# --- bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "encoding,data",
    [
        ("gzip", gzip.compress(PAYLOAD, mtime=0)),  # the same bytes, so the same test id, in every process
        ("deflate", zlib.compress(PAYLOAD)),
        ("deflate", zlib.compress(PAYLOAD)[2:-4]),  # raw deflate, as some servers send it
        ("br", brotli.compress(PAYLOAD)),
        ("zstd", zstandard.ZstdCompressor().compress(PAYLOAD)),
        ("identity", PAYLOAD),
        ("", PAYLOAD),
    ],
)
def test_decode_every_encoding(encoding, data):
    assert bodies.decode(data, encoding, limit=10_000) == PAYLOAD


def test_decode_refuses_bombs_and_nonsense():
    bomb = gzip.compress(b"0" * 5_000_000)
    with pytest.raises(bodies.BodyError, match="over mock_max_body"):
        bodies.decode(bomb, "gzip", limit=1000)
    with pytest.raises(bodies.BodyError, match="broken compressed body"):
        bodies.decode(b"not gzip", "gzip", limit=1000)
    with pytest.raises(bodies.BodyError, match="unknown content-encoding"):
        bodies.decode(b"x", "snappy", limit=1000)


def test_load_json_reasons():
    assert bodies.load_json(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}  # a BOM is fine
    for body, reason in [
        (b"", "empty"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (b'{"a": ', "broken JSON"),
        (b"[" * 500 + b"]" * 500, "nested"),
        (b"[" * 100_000, "nested too deeply"),
    ]:
        with pytest.raises(bodies.BodyError, match=reason):
            bodies.load_json(body)


# --- redaction ----------------------------------------------------------------------------


def test_redaction_of_headers_query_and_echoes():
    r = redact.Redactor(b"k" * 16)
    hs = r.headers([("Authorization", "Bearer abc"), ("X-Api-Key", "k"), ("Accept", "*/*"), ("X-Session-Token", "t")])
    assert hs == [("Authorization", "Bearer " + r.placeholder("abc")), ("X-Api-Key", r.placeholder("k")),
                  ("Accept", "*/*"), ("X-Session-Token", r.placeholder("t"))]
    q = r.query([("api_key", "1"), ("access_token", "2"), ("page", "3"), ("sig", "4")])
    assert [v for _, v in q] == [r.placeholder("1"), r.placeholder("2"), "3", r.placeholder("4")]
    ex = r.exchange(Exchange(
        Request("GET", "api", "/x", [("key", "zz-998877")], [("Authorization", "Bearer tok-123456")]),
        Response(200, [], b'{"t": "tok-123456", "k": "zz-998877"}'),
    ))
    assert json.loads(ex.response.body) == {"t": r.placeholder("tok-123456"), "k": r.placeholder("zz-998877")}


# --- statistics ---------------------------------------------------------------------------


def test_latency_percentiles_and_draws():
    s = EndpointStats()
    for ms in range(1, 101):
        s.add(200, float(ms))
    s.add(500, 1000.0)
    assert 45 <= s.percentile(50) <= 55
    assert 90 <= s.percentile(95) <= 100
    assert s.percentile(100) >= 950
    assert s.main_status == 200
    assert s.error_rate == pytest.approx(1 / 101)
    draws = [s.draw_latency(random.Random(i)) for i in range(500)]
    assert 1 <= min(draws) and max(draws) <= 1100
    again = EndpointStats.from_json(json.loads(json.dumps(s.to_json())))
    assert again.percentile(95) == s.percentile(95) and again.statuses == s.statuses


# --- the store's writer -------------------------------------------------------------------


def test_writer_batches_and_one_bad_write_loses_nothing_else(tmp_path):
    store = Store(tmp_path / "s.db")
    store.submit(lambda db: db.execute("create table t (x integer)"))
    for i in range(100):
        store.submit(lambda db, i=i: db.execute("insert into t values (?)", [i]))
    store.submit(lambda db: db.execute("insert into nowhere values (1)"))  # fails
    store.submit(lambda db: db.execute("insert into t values (100)"))
    assert store.flush()
    assert store.reader().execute("select count(*) from t").fetchone()[0] == 101
    store.close()


def test_writer_waits_out_a_lock(tmp_path):
    path = tmp_path / "s.db"
    store = Store(path)
    store.submit(lambda db: db.execute("create table t (x)"))
    assert store.flush()
    other = sqlite3.connect(path, timeout=0)
    other.execute("begin exclusive")
    store.submit(lambda db: db.execute("insert into t values (1)"))
    other.rollback()  # released soon: the writer's busy timeout and retries get through
    other.close()
    assert store.flush()
    assert store.reader().execute("select count(*) from t").fetchone()[0] == 1
    store.close()


def test_rows_go_in_as_multi_row_statements_and_all_land(tmp_path):
    """The writer sends runs of rows for one INSERT as statements of 32 rows (fewer GIL
    hand-offs with the event loop), the rest one by one: every row lands, in order."""
    store = Store(tmp_path / "s.db")
    store.submit(lambda db: db.execute("create table t (a integer, b text, c blob)"))
    rows = [(i, f"r{i}", bytes([i % 256]) * 3) for i in range(70)]  # 2 full statements and 6
    for row in rows:
        store.insert("insert into t (a, b, c) values (?, ?, ?)", row)
    store.insert("insert into t (a, b, c) select 1000, 'x', null", ())  # not a VALUES list
    assert store.flush()
    got = store.reader().execute("select a, b, c from t order by rowid").fetchall()
    assert got == rows + [(1000, "x", None)]
    store.close()


def test_corrupt_or_foreign_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open the store"):
        Store(bad)
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "missing" / "x.db")


# --- learning, persisting, answering -------------------------------------------------------


def ex(method, path, status=200, body=None, query=(), req_body=None, ms=5.0):
    req = Request(method, "api.test", path, list(query), [("content-type", "application/json")],
                  json.dumps(req_body).encode() if req_body is not None else b"")
    resp = Response.make_json(status, body) if body is not None else Response(status)
    return Exchange(req, resp, started=1_700_000_000.0, duration_ms=ms)


def user(i):
    return {"id": i, "email": f"u{i}@example.com", "name": f"User {i}", "created_at": "2024-01-01T00:00:00Z"}


@pytest.fixture
def learned(tmp_path):
    store = Store(tmp_path / "m.db")
    model = Model()
    learner = Learner(model, store)
    for i in range(1, 8):
        learner.learn(ex("GET", f"/users/{i}", body=user(i)))
    learner.learn(ex("GET", "/users", body={"page": 1, "users": [user(1)]}, query=[("page", "1")]))
    learner.learn(ex("GET", "/users", body={"page": 2, "users": [user(2)]}, query=[("page", "2")]))
    learner.learn(ex("GET", "/cart", body={"items": []}))
    learner.learn(ex("POST", "/cart", status=201, body={"ok": True}, req_body={"sku": "a"}))
    learner.learn(ex("GET", "/cart", body={"items": ["a"]}))
    store.submit(model.persist())
    assert store.flush()
    yield store, model
    store.close()


def test_an_identical_exchange_learned_again_teaches_what_the_full_path_does(tmp_path):
    """`learn_again` (for an exchange identical to one learned before, by fingerprint) must
    leave the model and the store as `learn` would: same statistics, schemas, recordings and
    rows, but for nothing. Volatile headers (the date, a request id) differ between exchanges
    of one fingerprint and are recorded as they came. A fold of templates in between sends it
    back to the full path."""
    def traffic():
        out = []
        for rnd in range(3):
            for i in range(1, 4):
                e = ex("GET", f"/users/{i}", body=user(i), query=[("expand", "true")], ms=5.0 + rnd)
                e.request.headers += [("authorization", "Bearer s3cret-token"), ("X-Request-Id", f"r{rnd}-{i}")]
                e.response.headers.append(("Date", f"Thu, 23 Nov 2026 10:00:0{rnd // 2} GMT"))
                e.response.body = e.response.body.replace(b"example.com", b"s3cret-token")
                out.append((("users", i), e))
            out.append((("cart", 0), ex("POST", "/cart", status=201, body={"ok": True}, req_body={"sku": "a"}, ms=9)))
            out.append((("page", 0), ex("GET", "/about", body=None, ms=2)))  # no JSON: always the full path
        for name in ("alpha", "beta", "gamma", "delta", "epsilon", "zeta"):  # literals that fold
            out.append(((name, 0), ex("GET", f"/docs/{name}", body={"name": name})))
        out.append((("alpha", 0), ex("GET", "/docs/alpha", body={"name": "alpha"})))
        return out

    results = {}
    for fast in (False, True):
        store = Store(tmp_path / f"{fast}.db")
        store.db.execute("update meta set value = ? where key = 'redact_key'", ["00" * 16])  # same placeholders
        model = Model()
        learner = Learner(model, store)
        again = 0
        for n, (fp, e) in enumerate(traffic()):
            e.started += n
            wire = _wire(e.request.headers), _wire(e.response.headers)
            fingerprint = Fingerprint(hash(fp), hash(wire), *wire)
            ep = learner.learn_again(fingerprint, e.started, e.duration_ms) if fast else None
            if ep is None:
                ep = learner.learn(e, fingerprint=fingerprint if fast else None).endpoint
            else:
                again += 1
            assert ep is model.endpoints[ep.id]
        learner.catch_up()
        store.submit(model.persist())
        assert store.flush()
        rows = [r[1:] for r in store.reader().execute("select * from exchanges order by id")]  # ids are of the clock
        eps = {
            k: (e.count, dict(e.statuses), e.stats.query, e.response_samples(200), e.response_samples(201),
                e.request_samples(), e.response_schema(200), e.stats.percentile(50))
            for k, e in model.endpoints.items()
        }
        results[fast] = (rows, eps, {k: len(model.recorded.get(k)) for k in model.recorded}, again)
        store.close()
    (rows, eps, recorded, again), (rows2, eps2, recorded2, again2) = results[False], results[True]
    assert again == 0 and again2 == 8  # users x3 and the cart, twice each
    assert rows2 == rows and len(rows) == 22
    assert all("s3cret" not in r[7] + r[10] and b"s3cret" not in r[11] for r in rows)
    assert {r[7].count("r2-1") + r[10].count("10:00:01") for r in rows if r[5] == "/users/1"} == {0, 2}
    assert eps2 == eps
    assert recorded2 == recorded


def _wire(headers):
    return tuple((k.encode(), v.encode()) for k, v in headers)


def test_the_response_cache_keeps_the_recent_and_the_used_within_its_size():
    cache = ResponseCache(100)
    first = Response(200, [], b"first")
    cache.put(0, first)
    for i in range(1, 1000):
        cache.put(i, Response(200, [], b"%d" % i))
        if i % 40 == 0:
            assert cache.get(0) is first  # used now and then: stays
    assert len(cache) <= 100
    assert cache.get(999).body == b"999" and cache.get(1) is None
    assert all(cache.get(i) is not None for i in range(950, 1000))  # the newest half, always


def test_volatile_headers_are_never_secrets():
    """A fingerprint leaves volatile headers out: had one carried a secret, two exchanges with
    different secrets would share what `learn_again` redacted from the first."""
    assert not [h for h in VOLATILE_HEADERS if redact.is_secret_header(h.decode())]
    # the spellings a fingerprint compares header names with are of those, and of no other
    assert {h.lower() for h in flows._VOLATILE_SPELLINGS} == VOLATILE_HEADERS


def test_model_survives_a_restart(learned):
    store, model = learned
    again = Model.load(store.reader())
    assert set(again.endpoints) == set(model.endpoints)
    ep = again.endpoints["GET api.test/users/{id}"]
    assert ep.count == 7 and ep.response_samples(200) == 7
    assert ep.response_schema(200) == model.endpoints[ep.id].response_schema(200)
    assert len(again.recorded) == len(model.recorded) == 11  # GET /cart twice: one key
    assert all(again.recorded.get(k) == model.recorded.get(k) for k in model.recorded)
    assert again.endpoints["GET api.test/users"].stats.query["page"]["schema"]["type"] == "integer"


def test_answer_chain(learned):
    store, model = learned
    fresh = Model.load(store.reader())  # nothing in memory but the index: answers read the store
    r = Responder(fresh, store, seed=7, latency=False)

    def get(path, query=()):
        return r.answer(Request("GET", "api.test", path, list(query)))

    a = get("/users/3")
    assert (a.source, a.response.json()) == ("recorded", user(3))
    # a sequence replays in order, then stays on the last
    assert [get("/cart").response.json()["items"] for _ in range(3)] == [[], ["a"], ["a"]]
    # the same resource with another query: the closest recording, the new value carried in (adapted)
    a = get("/users", [("page", "9")])
    assert a.source == "adapted" and a.response.json()["page"] == 9
    # another resource of the template: synthesized, valid, consistent with the path
    a = get("/users/123")
    body = a.response.json()
    assert a.source == "synthesized" and body["id"] == 123
    jsonschema.validate(body, fresh.endpoints["GET api.test/users/{id}"].response_schema(200), format_checker=jsonschema.FormatChecker())
    assert get("/users/123").response.json() == body
    assert Responder(fresh, store, seed=8, latency=False).answer(Request("GET", "api.test", "/users/123")).response.json() != body
    # nothing known
    a = get("/orders/1")
    assert a.source == "not-found" and a.response.status == 404
    assert "GET api.test/users/{id}" in a.response.json()["closest_endpoints"]
    # replay: exact only
    assert r.answer(Request("GET", "api.test", "/users/99"), exact_only=True).source == "not-found"


def test_a_long_sequence_replays_in_order_from_memory_after_each_load(tmp_path):
    """A request recorded 70 times replays its recordings in order. Loading one from the
    store brings the next ones of the sequence along (32 at a time), so the requests after it
    are answered from memory, on the event loop's fast path, not from the store one by one."""
    store = Store(tmp_path / "seq.db")
    learner = Learner(Model(), store)
    for n in range(70):
        learner.learn(ex("GET", "/poll", body={"n": n}))
    store.submit(learner.model.persist())
    assert store.flush()
    fresh = Model.load(store.reader())  # nothing in memory
    r = Responder(fresh, store, latency=False)
    req = Request("GET", "api.test", "/poll")
    key = r.key(req)
    assert r.exact_cached(req, key) is None  # nothing loaded yet: ask the store
    served = []
    for _ in range(75):
        a = r.exact_cached(req, key)
        if a is None:
            served.append(("store", r.answer(req, key).response.json()["n"]))
        else:
            served.append(("memory", a.response.json()["n"]))
    assert [n for _, n in served] == list(range(70)) + [69] * 5
    assert [i for i, (where, _) in enumerate(served) if where == "store"] == [0, 32, 64]
    store.close()


def test_simulated_latency_follows_what_was_learned(learned):
    store, model = learned
    r = Responder(model, store, seed=1, latency=True)
    delays = [r.answer(Request("GET", "api.test", f"/users/{i}")).delay_ms for i in range(1, 8)]
    assert all(4 <= d <= 6 for d in delays)  # every sample was 5 ms
