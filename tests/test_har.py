"""HAR 1.2 in and out: a round trip through two real stores, a browser-like HAR with
compressed, binary and broken entries, and the shape validators expect."""

from __future__ import annotations

import base64
import gzip
import io
import json

import jsonschema
import pytest

from mockstore.exchange import Exchange, Request, Response
from mockstore.har import exchanges_from_store, read_entries, read_har, write_har
from mockstore.imports import import_file
from mockstore.store import Store

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)

# The parts of HAR 1.2 (http://www.softwareishard.com/blog/har-12-spec/) that readers rely
# on, as a JSON Schema: every required field, with its type.
_NV = {"type": "object", "required": ["name", "value"],
       "properties": {"name": {"type": "string"}, "value": {"type": "string"}}}
HAR_SCHEMA = {
    "type": "object",
    "required": ["log"],
    "properties": {"log": {
        "type": "object",
        "required": ["version", "creator", "entries"],
        "properties": {
            "version": {"const": "1.2"},
            "creator": {"type": "object", "required": ["name", "version"]},
            "entries": {"type": "array", "items": {
                "type": "object",
                "required": ["startedDateTime", "time", "request", "response", "cache", "timings"],
                "properties": {
                    "startedDateTime": {"type": "string", "format": "date-time"},
                    "time": {"type": "number", "minimum": 0},
                    "request": {
                        "type": "object",
                        "required": ["method", "url", "httpVersion", "cookies", "headers", "queryString",
                                     "headersSize", "bodySize"],
                        "properties": {
                            "url": {"type": "string", "format": "uri"},
                            "headers": {"type": "array", "items": _NV},
                            "queryString": {"type": "array", "items": _NV},
                            "cookies": {"type": "array", "items": _NV},
                            "headersSize": {"type": "integer"},
                            "bodySize": {"type": "integer"},
                            "postData": {"type": "object", "required": ["mimeType"],
                                         "properties": {"mimeType": {"type": "string"}, "text": {"type": "string"}}},
                        },
                    },
                    "response": {
                        "type": "object",
                        "required": ["status", "statusText", "httpVersion", "cookies", "headers", "content",
                                     "redirectURL", "headersSize", "bodySize"],
                        "properties": {
                            "status": {"type": "integer"},
                            "headers": {"type": "array", "items": _NV},
                            "content": {"type": "object", "required": ["size", "mimeType"],
                                        "properties": {"size": {"type": "integer"}, "text": {"type": "string"},
                                                       "encoding": {"const": "base64"}}},
                        },
                    },
                    "cache": {"type": "object"},
                    "timings": {"type": "object", "required": ["send", "wait", "receive"],
                                "properties": {k: {"type": "number", "minimum": -1} for k in ("send", "wait", "receive")}},
                },
            }},
        },
    }},
}


def validate_har(doc: dict) -> None:
    jsonschema.validate(doc, HAR_SCHEMA, format_checker=jsonschema.FormatChecker())


def varied_exchanges() -> list[Exchange]:
    t = 1_700_000_000.123456
    out = []
    for i in range(1, 6):
        out.append(Exchange(
            Request("GET", "api.example.com", f"/users/{i}", [("expand", "orders"), ("page", str(i))],
                    [("accept", "application/json"), ("user-agent", "test")], scheme="https", port=443),
            Response.make_json(200, {"id": i, "name": f"user {i}", "tags": ["a"]}),
            started=t + i, duration_ms=10.5 + i,
        ))
    out.append(Exchange(
        Request("POST", "127.0.0.1", "/users", [], [("content-type", "application/json")],
                json.dumps({"name": "zoë"}).encode(), port=8000),
        Response.make_json(201, {"id": 9, "name": "zoë"}, [("location", "/users/9")]),
        started=t + 10, duration_ms=3.25,
    ))
    out.append(Exchange(  # binary both ways
        Request("PUT", "127.0.0.1", "/avatars/9", [], [("content-type", "image/png")], PNG, port=8000),
        Response(200, [("content-type", "image/png")], PNG),
        started=t + 11, duration_ms=1.0,
    ))
    out.append(Exchange(  # no body, odd status
        Request("DELETE", "127.0.0.1", "/users/9", [], [], port=8000),
        Response(204, [], b""),
        started=t + 12, duration_ms=0.5,
    ))
    out.append(Exchange(  # a percent-encoded path and a query value needing encoding
        Request("GET", "127.0.0.1", "/search/caf%C3%A9", [("q", "a b&c=d"), ("empty", "")], [], port=8000),
        Response(200, [("content-type", "text/plain; charset=utf-8")], "résultat".encode()),
        started=t + 13, duration_ms=2.0,
    ))
    return out


def fill_store(path, exchanges) -> Store:
    from mockstore.learn import Learner
    from mockstore.model import Model

    store = Store(path)
    model = Model.load(store.reader())
    learner = Learner(model, store)
    for ex in exchanges:
        learner.learn(ex)
    store.submit(model.persist())
    assert store.flush()
    return store


def test_write_har_is_valid_har(tmp_path):
    buf = io.StringIO()
    assert write_har(varied_exchanges(), buf) == 9
    doc = json.loads(buf.getvalue())
    validate_har(doc)
    entries = doc["log"]["entries"]
    assert [e["request"]["method"] for e in entries[:6]] == ["GET"] * 5 + ["POST"]
    png = entries[6]
    assert png["response"]["content"]["encoding"] == "base64"
    assert base64.b64decode(png["response"]["content"]["text"]) == PNG
    assert png["request"]["postData"]["encoding"] == "base64"
    assert entries[5]["request"]["postData"] == {"mimeType": "application/json", "text": '{"name": "zo\\u00eb"}'}
    assert entries[5]["response"]["redirectURL"] == "/users/9"
    assert entries[0]["request"]["url"] == "https://api.example.com/users/1?expand=orders&page=1"
    assert entries[5]["request"]["url"] == "http://127.0.0.1:8000/users"
    assert entries[0]["startedDateTime"].startswith("2023-11-14T22:13:21.123456")
    assert "encoding" not in entries[8]["response"]["content"]


def test_write_har_of_nothing_is_valid():
    buf = io.StringIO()
    assert write_har([], buf) == 0
    doc = json.loads(buf.getvalue())
    validate_har(doc)
    assert doc["log"]["entries"] == []


def test_round_trip_through_two_stores(tmp_path):
    first = fill_store(tmp_path / "a.db", varied_exchanges())
    har_path = tmp_path / "out.har"
    with open(har_path, "w", encoding="utf-8") as f:
        assert write_har(exchanges_from_store(first.reader()), f) == 9
    validate_har(json.loads(har_path.read_text("utf-8")))

    second = Store(tmp_path / "b.db")
    assert import_file(second, har_path).count == 9
    a = list(exchanges_from_store(first.reader()))
    b = list(exchanges_from_store(second.reader()))
    assert len(a) == len(b) == 9
    for x, y in zip(a, b):
        assert y.started == pytest.approx(x.started, abs=1e-5)
        y.started = x.started
        assert y == x
    assert b[6].response.body == PNG and b[6].request.body == PNG
    assert b[8].request.path == "/search/caf%C3%A9"
    assert b[8].request.query == [("q", "a b&c=d"), ("empty", "")]
    rows = list(second.reader().execute("select distinct source from exchanges"))
    assert rows == [("import",)]
    first.close()
    second.close()


def test_round_trip_keeps_the_exchanges_themselves(tmp_path):
    """Without a store in between, read(write(x)) is x, except a Content-Type added from
    the HAR's mimeType where the headers had none."""
    exchanges = varied_exchanges()
    p = tmp_path / "x.har"
    with open(p, "w", encoding="utf-8") as f:
        write_har(exchanges, f)
    back = list(read_har(p, limit=1 << 20))
    assert len(back) == len(exchanges)
    for x, y in zip(exchanges, back):
        assert y.request == x.request
        assert y.response.status == x.response.status
        assert y.response.body == x.response.body
        assert y.duration_ms == x.duration_ms


# --- a browser's HAR ------------------------------------------------------------------------


def chrome_like_har() -> dict:
    """Shaped after a Chrome DevTools export: pseudo-headers, decoded text under a gzip
    Content-Encoding, base64 images, aborted requests, private `_` fields; plus damage."""
    users = json.dumps([{"id": 1, "email": "a@example.com"}, {"id": 2, "email": "b@example.com"}])
    raw_gzip = gzip.compress(json.dumps({"id": 3, "gz": True}).encode())

    def entry(method, url, status, content, headers=(), post=None, started="2024-03-01T10:00:00.250Z", time=12.5):
        e = {
            "_initiator": {"type": "script"}, "_priority": "High", "_resourceType": "fetch",
            "cache": {}, "connection": "443", "pageref": "page_1",
            "request": {
                "method": method, "url": url, "httpVersion": "http/2.0",
                "headers": [{"name": ":authority", "value": "api.example.com"}, {"name": ":method", "value": method},
                            {"name": ":path", "value": "/x"}, {"name": "accept", "value": "*/*"},
                            {"name": "authorization", "value": "Bearer secret-token"}],
                "queryString": [], "cookies": [], "headersSize": -1, "bodySize": 0,
            },
            "response": {
                "status": status, "statusText": "", "httpVersion": "http/2.0",
                "headers": [{"name": k, "value": v} for k, v in headers],
                "cookies": [], "content": content, "redirectURL": "", "headersSize": -1, "bodySize": -1,
                "_transferSize": 300, "_error": None,
            },
            "serverIPAddress": "93.184.216.34", "startedDateTime": started, "time": time,
            "timings": {"blocked": 1.0, "dns": -1, "ssl": -1, "connect": -1, "send": 0.1, "wait": 10, "receive": 1.4},
        }
        if post is not None:
            e["request"]["postData"] = post
        return e

    return {"log": {
        "version": "1.2", "creator": {"name": "WebInspector", "version": "537.36"},
        "pages": [{"startedDateTime": "2024-03-01T10:00:00.000Z", "id": "page_1", "title": "app", "pageTimings": {}}],
        "entries": [
            entry("GET", "https://api.example.com/users?page=1", 200,
                  {"size": len(users), "mimeType": "application/json", "compression": 120, "text": users},
                  headers=[("content-type", "application/json"), ("content-encoding", "gzip")]),
            entry("GET", "https://api.example.com/logo.png", 200,
                  {"size": len(PNG), "mimeType": "image/png", "text": base64.b64encode(PNG).decode(), "encoding": "base64"},
                  started="2024-03-01T11:00:00.5+01:00"),
            # a tool that kept the raw gzip bytes, base64'd: decoded on the way in
            entry("GET", "https://api.example.com/users/3", 200,
                  {"size": len(raw_gzip), "mimeType": "application/json",
                   "text": base64.b64encode(raw_gzip).decode(), "encoding": "base64"},
                  headers=[("Content-Encoding", "gzip"), ("content-type", "application/json")]),
            # aborted by the browser: never answered
            entry("GET", "https://api.example.com/slow", 0, {"size": 0, "mimeType": "x-unknown"}),
            # a form post with params only, and no content-type header
            entry("POST", "https://api.example.com/login", 302, {"size": 0, "mimeType": ""},
                  headers=[("location", "/home")],
                  post={"mimeType": "application/x-www-form-urlencoded",
                        "params": [{"name": "user", "value": "ann"}, {"name": "next", "value": "/a b"}]}),
            # damage
            "not an entry",
            {"request": {"method": "GET", "url": "https://api.example.com/x"}},
            entry("GET", "ftp://files.example.com/a", 200, {"size": 0, "mimeType": ""}),
            entry("GET", "https://api.example.com:99999/bad-port", 200, {"size": 0, "mimeType": ""}),
            entry("GET", "https://api.example.com/broken", 200,
                  {"size": 3, "mimeType": "image/png", "text": "%%%not base64", "encoding": "base64"},
                  started="yesterday", time=-1),
        ],
    }}


def test_reading_a_browser_har(tmp_path, caplog):
    p = tmp_path / "chrome.har"
    p.write_text(json.dumps(chrome_like_har()), "utf-8")
    entries = list(read_entries(p, limit=1 << 20))
    assert len(entries) == 10 and all(e.total == 10 for e in entries)
    got = [e.exchange for e in entries if e.exchange is not None]
    skipped = [e.problem for e in entries if e.exchange is None]
    assert len(got) == 5
    assert len(skipped) == 5
    assert any("bad url" in s and "99999" in s for s in skipped)
    assert any("no request or no response" in s for s in skipped)
    assert any("status 0" in s for s in skipped)
    assert any("not an object" in s for s in skipped)
    assert any("not an http(s) url" in s for s in skipped)
    assert all(s.startswith("chrome.har: entry ") for s in skipped)

    users, logo, gz, login, bad_b64 = got
    assert users.request.host == "api.example.com" and users.request.port == 443
    assert users.request.query == [("page", "1")]
    assert not any(k.startswith(":") for k, _ in users.request.headers)
    assert users.response.json() == [{"id": 1, "email": "a@example.com"}, {"id": 2, "email": "b@example.com"}]
    assert users.started == 1709287200.25 and users.duration_ms == 12.5
    assert logo.response.body == PNG and logo.started == 1709287200.5
    assert gz.response.json() == {"id": 3, "gz": True}
    assert login.request.body == b"user=ann&next=%2Fa+b"
    assert login.request.content_type == "application/x-www-form-urlencoded"
    assert login.response.status == 302
    assert bad_b64.response.body == b"" and bad_b64.started == 0.0 and bad_b64.duration_ms == 0.0
    problems = {e.exchange.request.path: e.problem for e in entries if e.exchange is not None}
    assert "not valid base64" in problems["/broken"]
    assert problems["/users"] is None


def test_importing_a_browser_har_learns_and_redacts(tmp_path):
    p = tmp_path / "chrome.har"
    p.write_text(json.dumps(chrome_like_har()), "utf-8")
    store = Store(tmp_path / "s.db")
    assert import_file(store, p).count == 5
    db = store.reader()
    # the body that could not be read is learned for statistics only, not recorded
    assert db.execute("select count(*) from exchanges").fetchone()[0] == 4
    assert db.execute("select count(*) from exchanges where path = '/broken'").fetchone()[0] == 0
    ep = db.execute("select count from endpoints where id like 'GET api.example.com/broken'").fetchone()
    assert ep == (1,)
    headers = db.execute("select req_headers from exchanges where path = '/users'").fetchone()[0]
    assert [v for k, v in json.loads(headers) if k == "authorization"][0].startswith("Bearer REDACTED-")
    assert "secret-token" not in json.dumps([r for r in db.execute("select req_headers from exchanges")])
    schema = json.loads(db.execute("select schema from schemas where endpoint = 'GET api.example.com/users'").fetchone()[0])
    assert schema["type"] == "array"
    assert schema["items"]["properties"]["email"]["format"] == "email"
    store.close()


def test_bodies_over_the_limit_are_dropped(tmp_path):
    big = {"data": "x" * 5000}
    exchanges = [Exchange(Request("GET", "h", "/big"), Response.make_json(200, big), 1.0, 1.0),
                 Exchange(Request("POST", "h", "/up", body=b"y" * 5000), Response(201), 1.0, 1.0)]
    p = tmp_path / "big.har"
    with open(p, "w", encoding="utf-8") as f:
        write_har(exchanges, f)
    entries = list(read_entries(p, limit=1000))
    assert entries[0].exchange.response.body == b""
    assert "over the limit" in entries[0].problem
    assert entries[1].exchange.request.body == b""
    assert "request body" in entries[1].problem
    assert [e.request.body for e in read_har(p, limit=10_000)][1] == b"y" * 5000


@pytest.mark.parametrize(
    "content, why",
    [
        (b"", "broken JSON"),
        (b"{not json", "broken JSON"),
        (b"[1, 2]", 'no "log" object'),
        (b'{"log": {"entries": 3}}', 'no "log.entries" list'),
        (b"\x89PNG\r\n\x1a\n\x00\x00binary\xff\xfe", "not UTF-8 text"),
        (b"\xff\xfe{\x00\x00", "not UTF-16 text"),
        (b"[" * 100_000 + b"]" * 100_000, "too deeply"),
    ],
)
def test_not_a_har_file(tmp_path, content, why):
    p = tmp_path / "x.har"
    p.write_bytes(content)
    with pytest.raises(ValueError) as e:
        list(read_har(p, limit=1000))
    assert str(e.value).startswith("x.har: not a HAR file: ")
    assert why in str(e.value)


def test_utf16_har_with_bom(tmp_path):
    doc = {"log": {"version": "1.2", "entries": [
        {"startedDateTime": "2024-01-01T00:00:00Z", "time": 1,
         "request": {"method": "get", "url": "http://h/ü?x=1", "headers": []},
         "response": {"status": 200, "headers": [], "content": {"mimeType": "text/plain", "text": "hé"}}}]}}
    p = tmp_path / "w.har"
    p.write_bytes(json.dumps(doc, ensure_ascii=False).encode("utf-16"))
    (ex,) = read_har(p, limit=1000)
    assert ex.request.method == "GET" and ex.request.path == "/ü"
    assert ex.response.body == "hé".encode() and ex.response.content_type == "text/plain"


@pytest.mark.parametrize("compress", [gzip.compress, __import__("zlib").compress])
def test_compressed_har(tmp_path, compress):
    from mockstore.imports import detect

    buf = io.StringIO()
    write_har(varied_exchanges(), buf)
    p = tmp_path / "x.zhar"
    p.write_bytes(compress(buf.getvalue().encode()))
    assert detect(p) == "har"
    assert len(list(read_har(p, limit=1 << 20))) == 9
    p.write_bytes(compress(buf.getvalue().encode())[:50])
    with pytest.raises(ValueError, match="x.zhar: not a HAR file: broken compressed file"):
        list(read_har(p, limit=1000))


def test_odd_text_survives_a_round_trip(tmp_path):
    """Header values mitmproxy kept with surrogate escapes, binary that is not UTF-8."""
    ex = Exchange(Request("GET", "h", "/", [], [("x-odd", "a\udcffb")]), Response(200, [("x-name", "é")], b"\xff\xfe\x00"))
    p = tmp_path / "odd.har"
    with open(p, "w", encoding="utf-8") as f:
        write_har([ex], f)
    (back,) = read_har(p, limit=1000)
    assert back.request.headers == [("x-odd", "a\udcffb")]
    assert back.response.body == b"\xff\xfe\x00" and back.response.headers == [("x-name", "é")]
