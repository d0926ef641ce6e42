"""Nothing learned is lost to odd bytes, and nothing learned grows without bound.

Odd bytes: a raw byte that is not UTF-8 in a path or a header is a lone surrogate in the
str mitmproxy gives, which SQLite would not bind: the row, and the batch with it, failed.
Bounds: query parameter names and the recorded-response cache have a size limit whatever
traffic comes (their cost per request is measured in scripts/bench_bounds.py, not here).
"""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time

import pytest
from openapi_spec_validator import validate

from mockstore import har
from mockstore.exchange import Exchange, Request, Response
from mockstore.learn import INSERT_EXCHANGE, Learner
from mockstore.model import Model, ResponseCache
from mockstore.openapi import to_openapi
from mockstore.sqltext import from_column, to_column
from mockstore.stats import OTHER, QUERY_NAMES, EndpointStats

ODD_PATH = "/caf\udce9/1"  # GET /caf\xe9/1 as mitmproxy decodes it
ODD_VALUE = "caf\udce9\udcff"  # a header value of bytes caf\xe9\xff


# --- odd bytes ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["/plain", "/café", ODD_PATH, ODD_VALUE, "\udcff", "lone \ud800 surrogate", ""])
def test_text_round_trips_through_sqlite(text):
    db = sqlite3.connect(":memory:")
    db.execute("create table t (v text)")
    db.execute("insert into t values (?)", [to_column(text)])
    (stored,) = db.execute("select v from t").fetchone()
    if text == "lone \ud800 surrogate":  # no wire byte makes it: kept as bytes, not dropped
        assert stored == text.encode("utf-8", "surrogatepass")
        return
    assert from_column(stored) == text
    # valid text stays TEXT (the store reads as before); only what text cannot hold is a BLOB
    assert isinstance(stored, bytes) == (text in (ODD_PATH, ODD_VALUE, "\udcff"))
    # a lookup bound the same way finds it
    assert db.execute("select count(*) from t where v = ?", [to_column(text)]).fetchone()[0] == 1


def exchange(path: str, *, headers=(), query=(), status: int = 200, body: bytes = b'{"ok": true}', at: float = 1.7e9) -> Exchange:
    return Exchange(
        Request("GET", "api.example.com", path, list(query), list(headers), scheme="https", port=443),
        Response(status, [("content-type", "application/json"), *headers], body),
        started=at, duration_ms=5,
    )


def test_odd_rows_are_stored_with_their_neighbours(store):
    """One batch: plain exchanges around one whose path and headers hold raw bytes. Every
    one is stored, and read back as the str it was made of."""
    learner = Learner(Model(), store)
    learner.learn(exchange("/before"))
    learner.learn(exchange(ODD_PATH, headers=[("x-odd", ODD_VALUE)], query=[("q", "\udcff")]))
    learner.learn(exchange("/after"))
    assert store.flush()
    rows = store.reader().execute("select path, template from exchanges order by id").fetchall()
    assert [from_column(p) for p, _ in rows] == ["/before", ODD_PATH, "/after"]
    exported = list(har.exchanges_from_store(store.reader()))
    odd = exported[1]
    assert odd.request.path == ODD_PATH and odd.request.method == "GET"
    assert ("x-odd", ODD_VALUE) in odd.request.headers and ("x-odd", ODD_VALUE) in odd.response.headers
    assert odd.request.query == [("q", "\udcff")]


def test_a_failing_row_costs_only_that_row(store):
    """A row SQLite refuses (a text id in an integer primary key) is dropped alone: the rows
    queued around it, odd bytes included, are stored."""
    row = (1.7e9, "https", "api.example.com", 443, "GET", "/x", "[]", "[]", b"", 200, "[]", b"", 1.0, "/x", 1, "proxy")
    store.insert(INSERT_EXCHANGE, (1, *row))
    store.insert(INSERT_EXCHANGE, ("not an id", *row))
    odd = list(row)
    odd[5], odd[13] = to_column(ODD_PATH), to_column(ODD_PATH)
    store.insert(INSERT_EXCHANGE, (3, *odd))
    store.insert(INSERT_EXCHANGE, (4, *row))
    assert store.flush()
    rows = store.reader().execute("select id, path from exchanges order by id").fetchall()
    assert [(i, from_column(p)) for i, p in rows] == [(1, "/x"), (3, ODD_PATH), (4, "/x")]


def test_odd_endpoints_are_persisted(store):
    model = Model()
    learner = Learner(model, store)
    learner.learn(exchange(ODD_PATH))
    learner.learn(exchange("/plain"))
    store.submit(model.persist())
    assert store.flush()
    loaded = Model.load(store.reader())
    assert {ep.template for ep in loaded.endpoints.values()} == {"/plain", "/caf\udce9/{id}"}


class RawBackend:
    """An API that answers every request with the raw request line it got, as hex, and a
    header of bytes that are not UTF-8: real sockets, no HTTP library to tidy the bytes."""

    ODD_HEADER = b"X-Odd: caf\xe9\xff"

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                # the request line as latin-1 text (hex would look like a token to redaction)
                body = json.dumps({"line": head.split(b"\r\n")[0].decode("latin-1")}).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + self.ODD_HEADER
                             + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

    def close(self):
        self.sock.close()


def raw_get(port: int, target: bytes, *extra: bytes) -> tuple[int, list[bytes], bytes]:
    """GET `target` as raw bytes; (status, header lines, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as c:
        c.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: api\r\nX-Req: \xfe\r\nConnection: close\r\n"
                  + b"".join(e + b"\r\n" for e in extra) + b"\r\n")
        data = b""
        while chunk := c.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    return int(lines[0].split()[1]), lines[1:], body


ODD_TARGET = b"/caf\xe9/1?q=\xff"


def test_odd_bytes_recorded_and_replayed_through_a_real_proxy(proxy, tmp_path):
    api = RawBackend()
    try:
        p = proxy(api.url)
        odd = raw_get(p.port, ODD_TARGET)
        plain = raw_get(p.port, b"/plain")
        assert odd[0] == 200 and json.loads(odd[2])["line"].encode("latin-1") == b"GET " + ODD_TARGET + b" HTTP/1.1"
        assert RawBackend.ODD_HEADER in odd[1]
        # the row is in the store: the same process answers from it, the closest recording of
        # the same odd path (another query) found by SQL
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with sqlite3.connect(f"file:{p.db}?mode=ro", uri=True) as db:
                if db.execute("select count(*) from exchanges").fetchone()[0] == 2:
                    break
            time.sleep(0.05)
        status, headers, body = raw_get(p.port, b"/caf\xe9/1?q=other", b"X-Mock-Enabled: true")
        # (another query: the recording's values may be carried in, so the JSON is compared)
        assert (status, json.loads(body)) == (200, json.loads(odd[2])), headers
        assert b"X-Mockstore-Source: adapted" in headers and RawBackend.ODD_HEADER in headers
        p.stop()
    finally:
        api.close()
    with sqlite3.connect(p.db) as db:
        paths = [from_column(r[0]) for r in db.execute("select path from exchanges order by id")]
    assert paths == [ODD_PATH, "/plain"]  # the answered one is not recorded
    for mode, runner in (("mock", "mitmdump"), ("replay", "serve")):
        q = proxy(api.url, mode=mode, runner=runner, db=p.db)
        for target, (status, headers, body) in ((ODD_TARGET, odd), (b"/plain", plain)):
            got = raw_get(q.port, target)
            assert (got[0], got[2]) == (status, body), (mode, target)
            assert RawBackend.ODD_HEADER in got[1], (mode, target)  # the same bytes, not UTF-8 of them
            assert b"X-Mockstore-Source: recorded" in got[1]
        q.stop()


# --- bounds ------------------------------------------------------------------------------


def test_query_names_are_bounded_per_endpoint():
    """600 requests of 1,000 new names each keep at most QUERY_NAMES names, and a few
    patterns; every occurrence is still counted."""
    model = Model()
    learner = Learner(model, None)
    for i in range(60):
        names = [(f"f{i}_{j}", str(j)) for j in range(1000)]
        learner.learn(exchange("/search", query=[("page", "1"), *names]))
    (ep,) = model.endpoints.values()
    s = ep.stats
    assert len(s.query) <= QUERY_NAMES and "page" in s.query and s.query["page"]["count"] == 60
    assert set(s.query_patterns) == {OTHER}
    assert s.query_patterns[OTHER]["schema"] == {"type": "integer"}
    assert sum(e["count"] for e in s.query.values()) + s.query_patterns[OTHER]["count"] == 60 * 1001
    assert len(json.dumps(s.to_json())) < 20_000


def test_generated_names_fold_by_shape_and_keep_their_room():
    s = EndpointStats()
    s.add_query([("page", "2"), ("123", "x"), ("8c4f1f2e-1a2b-4c3d-9e8f-0123456789ab", "1"),
                 ("d41d8cd98f00b204e9800998ecf8427e", "y"), ("2024-05-01", "z"),
                 ("aZ3kLm9QxR2vBn8TyU1wq7", "t"), ("sort-by", "name")])
    assert set(s.query) == {"page", "sort-by"}
    assert s.query_patterns["{id}"]["count"] == 3 and s.query_patterns["{date}"]["count"] == 1
    assert s.query_patterns["{token}"]["count"] == 1
    for i in range(10_000):  # ids never take a name's room
        s.add_query([(str(i), "v")])
    s.add_query([("limit", "10")])
    assert "limit" in s.query and s.query_patterns["{id}"]["count"] == 10_003


def test_merge_and_load_keep_the_bound():
    a, b = EndpointStats(), EndpointStats()
    a.add_query([(f"a{i}", "1") for i in range(50)])
    b.add_query([(f"b{i}", "x") for i in range(50)] + [("a0", "2"), ("7", "1")])
    a.merge(b)
    assert len(a.query) == QUERY_NAMES and a.query["a0"]["count"] == 2
    assert a.query_patterns[OTHER]["count"] == 100 - QUERY_NAMES and a.query_patterns["{id}"]["count"] == 1
    # a store written before names were bounded: folded on load, the most counted kept
    old = {"count": 1, "query": {f"n{i}": {"schema": {"type": "string"}, "count": 1} for i in range(5000)}}
    old["query"]["busy"] = {"schema": {"type": "integer"}, "count": 99}
    loaded = EndpointStats.from_json(json.loads(json.dumps(old)))
    assert len(loaded.query) == QUERY_NAMES and loaded.query["busy"]["count"] == 99
    assert loaded.query_patterns[OTHER]["count"] == 5000 - QUERY_NAMES + 1
    again = EndpointStats.from_json(json.loads(json.dumps(loaded.to_json())))
    assert (again.query, again.query_patterns) == (loaded.query, loaded.query_patterns)


def test_openapi_export_of_folded_names_is_bounded_and_valid():
    model = Model()
    learner = Learner(model, None)
    for i in range(20):
        learner.learn(exchange("/search", query=[("page", "1"), *((f"f{i}_{j}", "x") for j in range(200)),
                                                 (str(1000 + i), "1")]))
    doc = to_openapi(model)
    validate(doc)
    params = doc["paths"]["/search"]["get"]["parameters"]
    assert len(params) <= QUERY_NAMES + 1
    other = params[-1]
    assert other["style"] == "form" and other["schema"]["type"] == "object"
    assert "{id}" in other["description"] and "other names" in other["description"]


def test_response_cache_is_bounded_by_bytes():
    limit = 8 * 1024 * 1024
    cache = ResponseCache(4096, max_bytes=limit)
    body = b"x" * 370_000
    for i in range(1500):
        cache.put(i, Response(200, [], body))
        held = {**cache.old, **cache.young}
        assert cache.bytes <= limit and sum(len(r.body) for r in held.values()) <= limit
    assert cache.get(1499) is not None and cache.get(0) is None  # the newest are kept
    cache.put(5000, Response(200, [], b"y" * (limit // 4)))  # too big for the cache at all
    assert cache.get(5000) is None and cache.get(1499) is not None
    small = ResponseCache(4)  # still bounded by count
    for i in range(100):
        small.put(i, Response(200, [], b"z"))
    assert len(small) <= 4


def test_a_long_request_line_is_not_kept_for_learning_again():
    """What `learn_again` keeps holds the parsed query: an exchange with a request line of
    1,000 names is learned the full way each time, not kept (1,024 of them held 250 MB)."""
    from mitmproxy.test import tflow

    from mockstore import flows

    f = tflow.tflow(resp=True)
    assert flows.fingerprint(f, 65536) is not None
    f.request.path = "/search?" + "&".join(f"f{j}=1" for j in range(1000))
    assert flows.fingerprint(f, 65536) is None
