"""End to end: a real backend process, a real proxy process (mitmdump with the addon, and the
lean `mockstore serve` master), a real client, over real sockets on 127.0.0.1."""

from __future__ import annotations

import json
import sqlite3
import ssl
import subprocess
import sys

import httpx
import jsonschema
import openapi_spec_validator
import pytest
from conftest import ADDON, MITMDUMP, MOCKSTORE, ROOT, free_port

RUNNERS = ["mitmdump", "serve"]


def learn_traffic(c: httpx.Client) -> list[tuple[str, str, dict | None]]:
    """Send 50+ varied requests; return them for replaying later."""
    calls: list[tuple[str, str, dict | None]] = []
    for i in range(1, 31):
        calls.append(("GET", f"/users/{i}", None))
    for page in (1, 2, 3):
        calls.append(("GET", f"/users?page={page}", None))
    calls += [
        ("GET", "/users/me", None),
        ("GET", "/articles/how-to-train-a-dragon-x1", None),
        ("GET", "/articles/another-slug-y2", None),
        ("GET", "/items", None),
        ("POST", "/items", {"name": "first"}),
        ("GET", "/items", None),
        ("POST", "/items", {"name": "second"}),
        ("GET", "/items", None),
        ("GET", "/status/404", None),
        ("GET", "/status/503", None),
        ("GET", "/gzip", None),
        ("GET", "/html", None),
        ("GET", "/echo?x=1&y=two", None),
    ]
    for i in range(9):
        calls.append(("GET", f"/users/{1000 + i}", None))  # 404s of a learned template
    for method, path, body in calls:
        r = c.request(method, path, json=body)
        assert "x-mockstore-source" not in r.headers, "learn mode must forward"
    return calls


def responses(c: httpx.Client, calls) -> list[tuple[int, bytes]]:
    return [(r.status_code, r.content) for r in (c.request(m, p, json=b) for m, p, b in calls)]


@pytest.mark.parametrize("runner", RUNNERS)
def test_learn_then_stand_in(backend, proxy, runner, tmp_path):
    api, url = backend()
    p = proxy(url, runner=runner)
    with p.client() as c:
        calls = learn_traffic(c)
    assert len(calls) >= 50
    p.stop()
    api.kill()

    with httpx.Client(base_url=url, timeout=5) as real:
        with pytest.raises(httpx.ConnectError):
            real.get("/users/1")  # the real API is gone

    # Learned in the store, templates per host.
    db = sqlite3.connect(p.db)
    templates = {r[0] for r in db.execute("select template from endpoints where method = 'GET'")}
    assert {"/users/{id}", "/users/me", "/articles/{slug}", "/items", "/users"} <= templates
    schema = json.loads(db.execute(
        "select schema from schemas where endpoint like 'GET %/users/{id}' and kind='response' and status=200"
    ).fetchone()[0])
    db.close()

    # what was learned exports as a valid OpenAPI 3.1 document
    spec_file = tmp_path / "learned.json"
    out = subprocess.run([MOCKSTORE, "export-openapi", "--db", str(p.db), "-o", str(spec_file), "--format", "json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    spec = json.loads(spec_file.read_text())
    openapi_spec_validator.validate(spec)
    assert "/users/{id}" in spec["paths"] and "/articles/{slug}" in spec["paths"]

    mock = proxy(url, mode="mock", db=p.db, runner=runner)
    with mock.client() as c:
        # the same requests get the same status and body, sequences in recorded order
        got = responses(c, calls)
        assert [s for s, _ in got] == [_status(calls, i) for i in range(len(calls))]
        items = [json.loads(b) for (m, path, _), (s, b) in zip(calls, got) if path == "/items" and m == "GET"]
        assert [it["count"] for it in items] == [0, 1, 2], "POST-then-GET replays in recorded order"
        # after the sequence, the last recording stays
        assert c.get("/items").json()["count"] == 2

        # an unseen id of a learned template: synthesized, valid, consistent with its path
        r = c.get("/users/4242")
        assert r.status_code == 200
        assert r.headers["x-mockstore-source"] == "synthesized"
        body = r.json()
        jsonschema.validate(body, schema, format_checker=jsonschema.FormatChecker())
        assert body["id"] == 4242
        assert c.get("/users/4242").json() == body, "synthesis is deterministic"

        # nothing known: a 404 that says so and names the closest endpoints
        r = c.get("/nothing/here")
        assert r.status_code == 404
        assert r.headers["x-mockstore-source"] == "not-found"
        assert r.json()["closest_endpoints"]


def _status(calls, i) -> int:
    method, path, _ = calls[i]
    if path.startswith("/users/10") and len(path) > 9:
        return 404
    if path.startswith("/status/"):
        return int(path.rsplit("/", 1)[1])
    if method == "POST":
        return 201
    return 200


def test_same_responses_bytes_equal(backend, proxy):
    """Recorded answers are byte-for-byte the bodies the real API sent."""
    api, url = backend()
    p = proxy(url)
    with p.client() as c:
        real = [c.get(f"/users/{i}").content for i in range(1, 6)] + [c.get("/gzip").content]
    p.stop()
    api.kill()
    mock = proxy(url, mode="mock", db=p.db)
    with mock.client() as c:
        again = [c.get(f"/users/{i}").content for i in range(1, 6)] + [c.get("/gzip").content]
    assert again == real


def test_header_overrides_mode(backend, proxy):
    api, url = backend()
    p = proxy(url)
    with p.client() as c:
        c.get("/users/1")
        r = c.get("/users/1", headers={"X-Mock-Enabled": "true"})
        assert r.headers["x-mockstore-source"] == "recorded"
        r = c.get("/echo", headers={"X-Mock-Enabled": "false"})
        assert "x-mockstore-source" not in r.headers
    p.stop()
    mock = proxy(url, mode="mock", db=p.db)
    with mock.client() as c:
        r = c.get("/echo?from=client", headers={"X-Mock-Enabled": "false"})
        assert "x-mockstore-source" not in r.headers, "false forces forwarding"
        assert r.json()["query"] == {"from": "client"}


def test_mock_header_is_not_forwarded(backend, proxy):
    api, url = backend()
    p = proxy(url)
    with p.client() as c:
        r = c.get("/echo", headers={"X-Mock-Enabled": "false", "X-Other": "1"})
    assert r.status_code == 200
    p.stop()
    db = sqlite3.connect(p.db)
    (headers,) = db.execute("select req_headers from exchanges where path = '/echo'").fetchone()
    names = {k.lower() for k, _ in json.loads(headers)}
    assert "x-other" in names and "x-mock-enabled" not in names


@pytest.mark.parametrize("runner", RUNNERS)
def test_failover_when_backend_dies(backend, proxy, runner):
    api, url = backend()
    p = proxy(url, mode="failover", runner=runner, mock_upstream_timeout=2)
    with p.client() as c:
        for i in range(1, 6):
            r = c.get(f"/users/{i}")
            assert r.status_code == 200 and "x-mockstore-source" not in r.headers
        r = c.get("/status/503")
        assert r.headers["x-mockstore-source"].startswith("failover-"), "a 5xx is answered by mockstore"
        assert c.get("/flaky").status_code == 200
        r = c.get("/flaky?fail=1")
        assert (r.status_code, r.headers["x-mockstore-source"]) == (200, "failover-adapted"), "the last success, not the 5xx"
        assert r.json() == {"flaky": "ok"}
        api.kill()
        for i in list(range(1, 6)) + [77, 78]:
            r = c.get(f"/users/{i}")
            assert r.status_code == 200
            assert r.headers["x-mockstore-source"] in ("failover-recorded", "failover-synthesized")
        assert c.get("/users/3").headers["x-mockstore-source"] == "failover-recorded"
        assert c.get("/users/99").json()["id"] == 99
        r = c.get("/never/seen")
        assert r.status_code == 404 and r.headers["x-mockstore-source"] == "failover-not-found"


def test_failover_on_timeout(backend, proxy):
    api, url = backend()
    p = proxy(url, mode="failover", mock_upstream_timeout=0.5)
    with p.client() as c:
        assert c.get("/slow?s=0").status_code == 200
        r = c.get("/slow?s=3")
        assert r.headers["x-mockstore-source"] == "failover-adapted"  # the closest: another query


def test_https_regular_proxy_with_ca(backend, proxy, confdir, tmp_path):
    """An app pointed at the proxy (regular mode), HTTPS to the real API, trusting our CA."""
    p0 = proxy(None)  # first start writes the CA into confdir
    ca = confdir / "mitmproxy-ca-cert.pem"
    assert ca.exists()
    p0.stop()
    api, url = backend(tls=str(confdir / "mitmproxy-ca.pem"))
    p = proxy(None, ssl_insecure="true")
    with httpx.Client(proxy=p.url, verify=ssl.create_default_context(cafile=str(ca)), timeout=20) as c:
        real = [c.get(f"{url}/users/{i}") for i in range(1, 4)]
        assert all(r.status_code == 200 for r in real)
    p.stop()
    api.kill()
    mock = proxy(None, mode="mock", db=p.db)
    tls = ssl.create_default_context(cafile=str(ca))
    with httpx.Client(proxy=mock.url, verify=tls, timeout=20) as c:
        again = [c.get(f"{url}/users/{i}") for i in range(1, 4)]
        assert [r.content for r in again] == [r.content for r in real]
        assert all(r.headers["x-mockstore-source"] == "recorded" for r in again)
        assert c.get(f"{url}/users/555").json()["id"] == 555


def test_redaction(backend, proxy):
    api, url = backend()
    p = proxy(url)
    with p.client() as c:
        c.get("/echo?api_key=sk-live-123456&q=1", headers={"Authorization": "Bearer tok-abcdef123"})
        c.get("/secret")
    p.stop()
    raw = b"".join(f.read_bytes() for f in p.db.parent.glob(p.db.name + "*"))
    for secret in (b"sk-live-123456", b"tok-abcdef123", b"very-secret-cookie"):
        assert secret not in raw
    db = sqlite3.connect(p.db)
    assert db.execute("select count(*) from exchanges where query like '%redacted%'").fetchone()[0] == 1


BAD = [
    ("/binary", "binary body"),
    ("/broken", "broken JSON"),
    ("/badgzip", "broken gzip"),
    ("/oddenc", "unknown content-encoding"),
    ("/latin1", "not UTF-8"),
    ("/deep", "deep nesting"),
    ("/big?size=3000000", "over mock_max_body"),
    ("/html", "not JSON"),
]


@pytest.mark.parametrize("path,what", BAD, ids=[b[1] for b in BAD])
def test_bad_input_passes_through_and_proxy_keeps_serving(backend, proxy, path, what):
    api, url = backend()
    p = proxy(url)
    with httpx.Client(base_url=url, timeout=20) as direct:
        expected = raw_get(direct, path)
    with p.client() as c:
        assert raw_get(c, path) == expected, "the flow passes through untouched"
        assert c.get("/users/1").status_code == 200, "the proxy still serves the next request"
    log = p.stop()
    assert "Traceback" not in log


def raw_get(c: httpx.Client, path: str) -> tuple[int, bytes]:
    """Status and body bytes as they came over the wire (no decoding of content-encoding)."""
    with c.stream("GET", path) as r:
        return r.status_code, b"".join(r.iter_raw())


def test_bad_request_bodies(backend, proxy):
    api, url = backend()
    p = proxy(url)
    with p.client() as c:
        assert c.post("/items", content=b'{"broken": ', headers={"content-type": "application/json"}).status_code == 400
        assert c.post("/echo", content=bytes(range(256)), headers={"content-type": "application/octet-stream"}).status_code == 200
        assert c.post("/echo", content=b"[" * 3000, headers={"content-type": "application/json"}).status_code == 200
        assert c.get("/users/1").status_code == 200
    assert "Traceback" not in p.stop()


def test_locked_database_does_not_stop_traffic(backend, proxy):
    api, url = backend()
    p = proxy(url)
    with p.client() as c:  # the addon is up and has its store open (mitmproxy may listen sooner)
        assert c.get("/users/8").status_code == 200
    holder = sqlite3.connect(p.db, timeout=5)
    holder.execute("begin exclusive")
    try:
        with p.client() as c:
            for i in range(1, 4):
                assert c.get(f"/users/{i}").status_code == 200
    finally:
        holder.rollback()
        holder.close()
    with p.client() as c:
        assert c.get("/users/9").status_code == 200
    p.stop()
    db = sqlite3.connect(p.db)
    assert db.execute("select count(*) from exchanges").fetchone()[0] == 5, "nothing lost"


def test_bad_options_are_refused_clearly(proxy, tmp_path):
    port = free_port()
    out = subprocess.run(
        [MITMDUMP, "-s", ADDON, "--listen-port", str(port), "--set", "mock_max_body=-1",
         "--set", f"mock_db={tmp_path / 'x.db'}"],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode != 0
    assert "mock_max_body must be a positive number" in out.stdout + out.stderr
    out = subprocess.run(
        [MITMDUMP, "-s", ADDON, "--listen-port", str(port), "--set", f"mock_db={tmp_path / 'nope' / 'x.db'}"],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode != 0
    assert "the folder for the store does not exist" in out.stdout + out.stderr


def test_mitmdump_flow_file_imported_and_replayed(backend, procs, proxy, tmp_path):
    """A file written by plain `mitmdump -w` is imported, then served exactly in replay mode."""
    api, url = backend()
    flows_file = tmp_path / "flows.mitm"
    port = free_port()
    dump = procs([MITMDUMP, "-q", "-w", str(flows_file), "--listen-host", "127.0.0.1",
                  "--listen-port", str(port), "--mode", f"reverse:{url}"], port)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as c:
        real = {path: c.get(path).content for path in ("/users/1", "/users/2", "/users/me", "/gzip", "/echo?a=1")}
        c.post("/items", json={"name": "x"})
        after_post = c.get("/items").content
    dump.stop()
    api.kill()

    db = tmp_path / "replay.db"
    out = subprocess.run([MOCKSTORE, "import", str(flows_file), "--db", str(db)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "7" in out.stdout  # exchanges imported

    p = proxy(url, mode="replay", db=db)
    with p.client() as c:
        for path, body in real.items():
            r = c.get(path)
            assert r.status_code == 200 and r.headers["x-mockstore-source"] == "recorded"
            assert r.content == body
        assert c.get("/items").content == after_post
        miss = c.get("/users/3")  # a learned template, but replay mode never synthesizes
        assert miss.status_code == 404 and miss.headers["x-mockstore-source"] == "not-found"
        assert "replay" in miss.json()["error"]


@pytest.mark.parametrize("mode", ["learn", "mock"])
def test_websockets_pass_through(procs, proxy, mode):
    """A websocket upgrade is never answered or learned by mockstore: it goes through."""
    from websockets.sync.client import connect

    port = free_port()
    procs([sys.executable, str(ROOT / "tests" / "ws_backend.py"), str(port)], port)
    p = proxy(f"http://127.0.0.1:{port}", mode=mode)
    with connect(f"ws://127.0.0.1:{p.port}/chat", open_timeout=10) as ws:
        for text in ("hello", "again"):
            ws.send(text)
            assert ws.recv(timeout=10) == f"echo: {text}"
    with p.client() as c:  # and the proxy goes on serving plain HTTP
        r = c.get("/anything")
        if mode == "learn":  # forwarded: the websocket server's own answer
            assert r.status_code == 426 and "x-mockstore-source" not in r.headers
        else:
            assert r.status_code == 404 and r.headers["x-mockstore-source"] == "not-found"
    assert "Traceback" not in p.stop()
