"""The admin API over real HTTP: every route against `mitmdump -s addons/mockstore.py` and
`mockstore serve --workers 2` (one API for the pool), the same change through the CLI and the
API, the live stream, and the security checks (token, Host, Origin, binding beyond loopback)."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import subprocess
import time
from urllib.parse import quote, urlsplit

import httpx
import pytest
import websockets
import yaml
from click.testing import CliRunner
from conftest import ADDON, MITMDUMP, free_port
from live_helpers import Served, eventually, served, statuses  # noqa: F401 (served: a fixture)

from mockstore.admin.api import ROUTES
from mockstore.cli import cli

ENTITIES = {"resources": {"notes": {"id": "integer", "fields": {"text": "string"}}}}


def run_cli(*args: str) -> str:
    out = CliRunner().invoke(cli, list(args))
    assert out.exit_code == 0, out.output
    return out.output


class Admin:
    """A client of the admin API with the token."""

    def __init__(self, base: str, token: str):
        self.base, self.token = base, token
        self.c = httpx.Client(base_url=base, timeout=20, trust_env=False,
                              headers={"Authorization": f"Bearer {token}"})

    def __getattr__(self, method):
        def call(path, *, ok: int | None = 200, **kw):
            r = self.c.request(method.upper(), path, **kw)
            if ok is not None:
                assert r.status_code == ok, f"{method.upper()} {path}: {r.status_code} {r.text}"
            return r
        return call




def learn_users(url: str, ids) -> None:
    with httpx.Client(base_url=url, timeout=10, trust_env=False) as c:
        for i in ids:
            assert c.get(f"/users/{i}").status_code == 200


@pytest.mark.parametrize("runner", ["mitmdump", "serve"])
def test_every_route(backend, served, tmp_path, runner):
    """Every route, on `mitmdump -s` and on `serve --workers 2` (the API on worker 0; requests
    through the proxy, one connection each, reach either worker)."""
    api_proc, api = backend()
    entities = tmp_path / "entities.yaml"
    entities.write_text(yaml.safe_dump(ENTITIES))
    p = served(runner, upstream=api, admin="127.0.0.1:0", options={"mock_entities": entities})
    base, token = p.admin_url()
    a = Admin(base, token)
    covered: set[tuple[str, str]] = set()

    def in_effect(check, what: str):
        """In one process a change holds from the next request on; in a pool the other worker
        takes it from the store within about a second."""
        if runner == "serve":
            return eventually(check, what)
        value = check()
        assert value, what
        return value

    def hit(method, route, path=None, **kw):
        covered.add((method, route))
        return getattr(a, method.lower())(path or route, **kw)

    learn_users(p.url, range(1, 9))
    eps = eventually(lambda: [e for e in hit("GET", "/admin/endpoints").json()
                              if e["template"] == "/users/{id}" and e["count"] >= 8], "the learned endpoint")
    ep = eps[0]
    assert ep["method"] == "GET" and ep["statuses"] == {"200": 8} and ep["p50_ms"] is not None and ep["ema_ms"] is not None
    eid = quote(ep["id"], safe="")
    one = hit("GET", "/admin/endpoints/{id}", f"/admin/endpoints/{eid}").json()
    assert one["schemas"]["responses"]["200"]["properties"]["username"]["type"] == "string"
    assert sum(b["count"] for b in one["latency_histogram"]) == 8
    def newest_samples():
        found = hit("GET", "/admin/endpoints/{id}/samples", f"/admin/endpoints/{eid}/samples?limit=2").json()
        return found if found and json.loads(found[0]["response_body"])["id"] == 8 else None

    samples = eventually(newest_samples, "the last recorded samples (written within a fraction of a second)")
    assert len(samples) == 2 and json.loads(samples[1]["response_body"])["id"] == 7
    def drift_stats():
        found = hit("GET", "/admin/endpoints/{id}/drift-stats", f"/admin/endpoints/{eid}/drift-stats").json()
        return found if found["checked"] >= 1 else None

    stats = in_effect(drift_stats, "the responses checked (by either worker), counted")
    assert stats["endpoint"] == ep["id"] and stats["drifted"] == 0
    missing = a.get("/admin/endpoints/GET%20%2Fnope", ok=404).json()
    assert "no endpoint 'GET /nope'" in missing["error"]

    # drift: the API changes under the running proxy; one alert resolved by the API, one by the CLI
    if runner == "serve":  # the worker that learned nothing yet takes the baseline from the store
        time.sleep(2)
    api_proc.stop()
    api_proc, _ = backend("renamed", port=urlsplit(api).port)
    learn_users(p.url, [1])
    alert = eventually(lambda: [x for x in hit("GET", "/admin/drift-alerts", "/admin/drift-alerts?unresolved_only=true")
                                .json() if x["id"] is not None], "a drift alert in the API, numbered by the store")[0]
    assert alert["endpoint"] == ep["id"] and not alert["resolved"]
    done = hit("POST", "/admin/drift-alerts/{alert}/resolve", f"/admin/drift-alerts/{alert['id']}/resolve",
               json={"accept": True}).json()
    assert done["resolved"] and done["resolution"] == "accepted"
    assert a.get("/admin/drift-alerts?unresolved_only=true").json() == []
    assert "no drift alert with id 999" in a.post("/admin/drift-alerts/999/resolve", ok=404).json()["error"]
    api_proc.stop()
    api_proc, _ = backend("retyped", port=urlsplit(api).port)
    learn_users(p.url, [2])
    second = eventually(lambda: [x for x in a.get("/admin/drift-alerts?unresolved_only=true").json()
                                 if x["id"] is not None], "a second alert")[0]
    run_cli("drift", "resolve", str(second["id"]), "--keep-old", "--db", str(p.db))
    eventually(lambda: a.get("/admin/drift-alerts?unresolved_only=true").json() == [],
               "the CLI's resolve, seen by the running proxy")
    kept = [x for x in a.get("/admin/drift-alerts").json() if x["id"] == second["id"]][0]
    assert kept["resolution"] == "kept"

    # chaos: CRUD, switches, counters; each change in effect on the next request
    rule = hit("POST", "/admin/chaos/rules", json={"id": "down", "template": "/ok/*", "effect": "error",
                                                    "status": 503}, ok=201).json()
    assert rule["source"] == "api" and rule["enabled"] is True
    in_effect(lambda: statuses(p.url, "/ok/a", 3) == {503}, "the rule added")
    assert [r["id"] for r in hit("GET", "/admin/chaos/rules").json()] == ["down"]
    assert hit("GET", "/admin/chaos/rules/{rule}", "/admin/chaos/rules/down").json()["status"] == 503
    assert hit("PUT", "/admin/chaos/rules/{rule}", "/admin/chaos/rules/down",
               json={"template": "/ok/*", "effect": "error", "status": 502}).json()["status"] == 502
    in_effect(lambda: statuses(p.url, "/ok/a", 3) == {502}, "the rule replaced")
    assert hit("POST", "/admin/chaos/rules/{rule}/disable", "/admin/chaos/rules/down/disable").json()["enabled"] is False
    in_effect(lambda: statuses(p.url, "/ok/a", 3) == {200}, "the rule switched off")
    hit("POST", "/admin/chaos/rules/{rule}/enable", "/admin/chaos/rules/down/enable")
    in_effect(lambda: statuses(p.url, "/ok/a", 3) == {502}, "the rule switched on")
    if runner == "mitmdump":  # in a pool, the waits above make more faults than 3 a change
        state = hit("GET", "/admin/chaos").json()
        assert state["enabled"] is True and state["rules"][0]["applied"] == 9
    else:  # every worker's faults: in the store and in worker 0's API, within about a second
        def counted() -> bool:
            with sqlite3.connect(p.db) as conn:
                (stored,) = conn.execute("select applied from chaos_rules where id = 'down'").fetchone()
            return stored >= 9 and hit("GET", "/admin/chaos").json()["rules"][0]["applied"] == stored
        eventually(counted, "the pool's faults, counted alike in the store and the API")
    assert hit("PUT", "/admin/chaos", json={"enabled": False}).json() == {"enabled": False}
    in_effect(lambda: statuses(p.url, "/ok/a", 3) == {200}, "chaos switched off")
    a.put("/admin/chaos", json={"enabled": True})
    bad = a.post("/admin/chaos/rules", json={"effect": "explode"}, ok=400).json()
    assert "field 'effect' is unknown" in bad["error"]
    assert "not JSON" in a.post("/admin/chaos/rules", content=b"{nope", ok=400).json()["error"]
    hit("DELETE", "/admin/chaos/rules/{rule}", "/admin/chaos/rules/down")
    in_effect(lambda: statuses(p.url, "/ok/a", 3) == {200}, "the rule removed")
    assert "no chaos rule with id 'down'" in a.get("/admin/chaos/rules/down", ok=404).json()["error"]
    # the counters the CLI shows are at most a second behind
    eventually(lambda: json.loads(run_cli("chaos", "list", "--db", str(p.db), "--json"))["rules"] == [],
               "the removal in the store")

    # mode
    assert hit("GET", "/admin/mode").json() == {"mode": "learn"}
    assert hit("PUT", "/admin/mode", json={"mode": "mock"}).json() == {"mode": "mock"}
    in_effect(lambda: None not in sources(p.url, "/users/3"), "answered by mockstore now")
    assert "mode must be one of" in a.put("/admin/mode", json={"mode": "chaos"}, ok=400).json()["error"]
    a.put("/admin/mode", json={"mode": "learn"})

    # the virtual backend
    assert [r["name"] for r in hit("GET", "/admin/resources").json()] == ["notes"]
    rows = hit("GET", "/admin/resources/{name}/rows", "/admin/resources/notes/rows").json()
    hit("POST", "/admin/snapshots", json={"name": "seeded"}, ok=201)
    assert [s["name"] for s in hit("GET", "/admin/snapshots").json()] == ["seeded"]
    a.put("/admin/mode", json={"mode": "mock"})
    in_effect(lambda: None not in sources(p.url, "/users/3"), "mock mode again")
    with httpx.Client(base_url=p.url, timeout=10, trust_env=False) as c:
        assert c.post("/notes", json={"text": "new"}).status_code == 201
    in_effect(lambda: len(a.get("/admin/resources/notes/rows").json()) == len(rows) + 1, "the new row")
    hit("POST", "/admin/snapshots/{name}/restore", "/admin/snapshots/seeded/restore")
    assert a.get("/admin/resources/notes/rows").json() == rows
    with httpx.Client(base_url=p.url, timeout=10, trust_env=False) as c:
        c.post("/notes", json={"text": "again"})
    hit("POST", "/admin/reset")
    assert a.get("/admin/resources/notes/rows").json() == rows
    hit("DELETE", "/admin/snapshots/{name}", "/admin/snapshots/seeded")
    assert a.get("/admin/snapshots").json() == []
    assert "no snapshot named 'seeded'" in a.delete("/admin/snapshots/seeded", ok=404).json()["error"]
    assert "not allowed" in a.post("/admin/snapshots", json={"name": "../x"}, ok=400).json()["error"]
    assert "no virtual resource 'ghosts'" in a.get("/admin/resources/ghosts/rows", ok=404).json()["error"]
    a.put("/admin/mode", json={"mode": "learn"})

    # stubs: added, switched and removed through the API, in effect in the running proxy
    mock = {"name": "items", "routes": [{"method": "GET", "path": "/stubbed/{id}", "statusCode": 200,
            "defaultResponse": {"body": '{"id": "{{request.path.id}}"}'}}]}
    assert hit("POST", "/admin/stubs", json=mock, ok=201).json() == {"added": ["items"]}

    def stubbed() -> tuple:
        with httpx.Client(base_url=p.url, timeout=10, trust_env=False) as c:
            r = c.get("/stubbed/7")
        return r.status_code, r.headers.get("x-mockstore-source"), r.content

    eventually(lambda: stubbed() == (200, "stub", b'{"id": "7"}'), "the stub, answering")
    listed = hit("GET", "/admin/stubs").json()
    assert [m["name"] for m in listed] == ["items"] and listed[0]["id"]
    hit("POST", "/admin/stubs/{name}/disable", "/admin/stubs/items/disable")
    eventually(lambda: stubbed()[1] != "stub", "the stub switched off")
    hit("POST", "/admin/stubs/{name}/enable", "/admin/stubs/items/enable")
    eventually(lambda: stubbed()[1] == "stub", "the stub switched on again")
    bad = a.post("/admin/stubs", json={"name": "x", "routes": [{"method": "GET", "path": "/x", "conditions": [
        {"parameterName": "a", "parameterSource": "QUERY", "operator": "LIKE", "expectedValue": "b"}]}]}, ok=400)
    assert "operator" in bad.json()["error"]
    hit("DELETE", "/admin/stubs/{name}", "/admin/stubs/items")
    assert a.get("/admin/stubs").json() == []
    assert "items" in a.delete("/admin/stubs/items", ok=404).json()["error"]

    # recordings, documents
    traffic = hit("GET", "/admin/traffic", "/admin/traffic?limit=5").json()
    assert len(traffic) == 5 and traffic[0]["id"] > traffic[-1]["id"]
    assert "limit must be 1-1000" in a.get("/admin/traffic?limit=0", ok=400).json()["error"]
    doc = hit("GET", "/admin/openapi.json").json()
    assert "/users/{id}" in doc["paths"] and doc["servers"][0]["url"] == p.url
    har = hit("GET", "/admin/har").json()
    assert len(har["log"]["entries"]) >= 10
    own = hit("GET", "/admin/api.json").json()
    assert own["openapi"].startswith("3.") and "/admin/stream" in own["paths"]
    assert {(r.method, r.path) for r in ROUTES} <= {(m.upper(), path) for path, item in own["paths"].items()
                                                   for m in item}
    assert a.get("/admin/nothing", ok=404).json()["error"].startswith("no admin route GET /admin/nothing")
    assert "not allowed here" in a.patch("/admin/mode", ok=405).json()["error"]
    assert covered == {(r.method, r.path) for r in ROUTES}, "a route without a test"


def sources(url: str, path: str, n: int = 16) -> set:
    """The X-Mockstore-Source of n answers, each on its own connection (None: forwarded)."""
    out = set()
    for _ in range(n):
        with httpx.Client(base_url=url, timeout=10, trust_env=False) as c:
            out.add(c.get(path).headers.get("x-mockstore-source"))
    return out


def exchanges(batch: dict) -> list[dict]:
    """A batch's exchanges (rows of its "fields") as objects."""
    return [{"type": "exchange", **dict(zip(batch["fields"], row))} for row in batch["exchanges"]]


def test_the_stream_shows_each_exchange(backend, served):
    _, api = backend()
    p = served("mitmdump", upstream=api, admin="127.0.0.1:0")
    base, token = p.admin_url()
    ws_url = base.replace("http://", "ws://") + "/admin/stream"

    async def watch():
        async with websockets.connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            hello = json.loads(await ws.recv())
            assert hello["type"] == "hello" and hello["mode"] == "learn"
            await asyncio.to_thread(learn_users, p.url, [1, 2])
            events = []
            while len([e for e in events if e["type"] == "exchange"]) < 2:
                batch = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert batch["type"] == "batch" and "lost" not in batch
                events += exchanges(batch) + batch["events"]
            with httpx.Client(base_url=base, trust_env=False, headers={"Authorization": f"Bearer {token}"}) as c:
                c.put("/admin/mode", json={"mode": "mock"})
            while not [e for e in events if e["type"] == "mode"]:
                events += json.loads(await asyncio.wait_for(ws.recv(), 5))["events"]
            return events

    events = asyncio.run(watch())
    ex = [e for e in events if e["type"] == "exchange"]
    assert [e["path"] for e in ex] == ["/users/1", "/users/2"]
    assert ex[0]["method"] == "GET" and ex[0]["status"] == 200 and ex[0]["source"] == "real"
    assert ex[0]["latency_ms"] >= 0 and ex[0]["drift"] is False
    assert [e["mode"] for e in events if e["type"] == "mode"] == ["mock"]


def test_a_slow_subscriber_loses_events_and_is_told(monkeypatch):
    """The hub alone (no sockets): a subscriber whose last batch has not left gets nothing
    more written; what does not fit its queue is counted and reported in its next batch."""
    from mockstore.admin import stream

    monkeypatch.setattr(stream, "MAX_PENDING", 3)
    sent = []

    class Pending:
        done_ = False

        def done(self):
            return self.done_

    writing = Pending()

    def send(text):
        sent.append(json.loads(text))
        return writing

    hub = stream.Hub()
    s = stream.Subscriber(send)
    hub.subscribers.add(s)
    for i in range(2):
        hub.publish({"type": "n", "n": i})
    hub.flush(s)
    assert sent == [{"type": "batch", "fields": list(stream.EXCHANGE_FIELDS), "exchanges": [],
                     "events": [{"type": "n", "n": 0}, {"type": "n", "n": 1}]}]
    for i in range(2, 10):
        hub.publish((i,) * len(stream.EXCHANGE_FIELDS))  # the socket is still busy with the first batch
    hub.flush(s)
    assert len(sent) == 1, "nothing written while the last batch has not left"
    writing.done_ = True
    hub.flush(s)
    assert sent[1]["exchanges"] == [[i] * len(stream.EXCHANGE_FIELDS) for i in (2, 3, 4)] and sent[1]["lost"] == 5


def test_workers_share_one_api(backend, served):
    _, api = backend()
    p = served("serve", upstream=api, admin="127.0.0.1:0", workers=2)
    base, token = p.admin_url()
    a = Admin(base, token)
    assert p.output().count("dashboard and admin API at") == 1, "only worker 0 serves it"
    # both workers learn; worker 0's API counts everyone's traffic
    for i in range(16):
        learn_users(p.url, [i % 4 + 1])
    eventually(lambda: sum(e["count"] for e in a.get("/admin/endpoints").json() if "/users" in e["template"]) == 16,
               "every worker's requests in the one API")
    # a change through the API reaches both workers
    a.post("/admin/chaos/rules", json={"id": "down", "template": "/ok/*", "effect": "error", "status": 503}, ok=201)
    eventually(lambda: statuses(p.url, "/ok/a") == {503}, "a rule added through the API, in both workers")
    a.post("/admin/chaos/rules/down/disable")
    eventually(lambda: statuses(p.url, "/ok/a") == {200}, "a rule switched off through the API, in both workers")
    # one stream for the pool: every worker's exchanges reach worker 0's subscribers
    base_ws = base.replace("http://", "ws://") + "/admin/stream"

    async def all_arrive(tag: str) -> bool:
        async with websockets.connect(base_ws, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            await ws.recv()  # hello
            await asyncio.sleep(2)  # the other worker learns within about a second that someone watches
            paths = {f"/ok/{tag}-{i}" for i in range(16)}
            for path in sorted(paths):
                await asyncio.to_thread(statuses, p.url, path, 1)
            seen = set()
            try:
                while paths - seen:
                    batch = json.loads(await asyncio.wait_for(ws.recv(), 3))
                    seen |= {e["path"] for e in exchanges(batch)}
            except asyncio.TimeoutError:
                return False
            return True

    assert asyncio.run(all_arrive("a")), "an exchange of some worker never reached the stream"
    a.put("/admin/mode", json={"mode": "mock"})
    eventually(lambda: None not in sources(p.url, "/users/2"), "mock mode in both workers")
    a.put("/admin/mode", json={"mode": "learn"})
    eventually(lambda: sources(p.url, "/users/2") == {None}, "learn mode again in both workers")


# --- security ---------------------------------------------------------------------------


def test_security(served):
    p = served("mitmdump", admin="127.0.0.1:0", options={"mock_mode": "mock"})
    base, token = p.admin_url()
    port = urlsplit(base).port
    with httpx.Client(base_url=base, timeout=10, trust_env=False) as c:
        assert c.get("/admin/mode").status_code == 401
        assert c.get("/").status_code == 401
        assert c.get("/admin/mode", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/admin/mode?token=wrong").status_code == 401
        assert c.get(f"/admin/mode?token={token}").json() == {"mode": "mock"}
        auth = {"Authorization": f"Bearer {token}"}
        r = c.get("/admin/mode", headers={**auth, "Host": f"evil.example:{port}"})
        assert r.status_code == 403 and "Host" in r.json()["error"]
        r = c.put("/admin/mode", json={"mode": "learn"}, headers={**auth, "Origin": "http://evil.example"})
        assert r.status_code == 403 and "Origin" in r.json()["error"]
        assert c.get("/admin/mode", headers=auth).json() == {"mode": "mock"}, "the refused POST changed nothing"
        r = c.put("/admin/mode", json={"mode": "learn"}, headers={**auth, "Origin": f"http://127.0.0.1:{port}"})
        assert r.json() == {"mode": "learn"}
        # the page keeps the token in a cookie for its own calls
        page = c.get(f"/?token={token}")
        assert page.status_code == 200 and "mockstore_admin" in page.headers["set-cookie"]
        assert "httponly" in page.headers["set-cookie"].lower()
        assert c.get("/admin/mode", cookies={"mockstore_admin": token}).status_code == 200

    ws_url = f"ws://127.0.0.1:{port}/admin/stream"

    async def ws_status(**headers) -> int:
        try:
            async with websockets.connect(ws_url, additional_headers=headers, open_timeout=5) as ws:
                await ws.recv()
                return 101
        except websockets.InvalidStatus as e:
            return e.response.status_code

    assert asyncio.run(ws_status()) == 401
    assert asyncio.run(ws_status(Authorization=f"Bearer {token}", Origin="http://evil.example")) == 403
    assert asyncio.run(ws_status(Authorization=f"Bearer {token}", Origin=f"http://127.0.0.1:{port}")) == 101

    # "try it out" (Swagger UI) goes on to the proxy, with the page's cookie; the tried API's own
    # Authorization header goes on with it
    with httpx.Client(base_url=base, timeout=10, trust_env=False) as c:
        assert c.get("/admin/try/users/1").status_code == 401
        r = c.get("/admin/try/users/1?x=1", cookies={"mockstore_admin": token},
                  headers={"Authorization": "Bearer the-apis-own"})
        # the proxy (in learn mode by now, nothing upstream) answered: mitmproxy's 502, not the admin's JSON
        assert r.status_code == 502 and "mitmproxy" in r.headers.get("server", "") and "error" not in r.text[:20]

    # the admin port does not proxy, the proxy port does not serve the admin API
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n")
        assert b" 403 " in s.recv(4096).split(b"\r\n")[0] + b" "
    with httpx.Client(base_url=p.url, timeout=10, trust_env=False) as c:
        r = c.get(f"/admin/mode?token={token}")  # learn mode, nothing upstream: mitmproxy's 502
        assert r.status_code == 502 and "mode" not in r.text


def test_binding_beyond_loopback_needs_a_token(tmp_path, confdir):
    port = free_port()
    out = subprocess.run(
        [MITMDUMP, "-s", ADDON, "--listen-host", "127.0.0.1", "--listen-port", str(port),
         "--set", f"mock_db={tmp_path / 'm.db'}", "--set", f"confdir={confdir}", "--set", "mock_admin=0.0.0.0:0"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode != 0
    assert "refusing to serve the admin API on 0.0.0.0" in out.stdout + out.stderr


def test_a_taken_admin_port_is_a_warning(served):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        p = served("mitmdump", admin=f"127.0.0.1:{busy}", options={"mock_mode": "mock"})
        p.wait_for("the admin API cannot listen")
        with httpx.Client(base_url=p.url, timeout=10, trust_env=False) as c:
            assert c.get("/anything").status_code > 0  # the proxy runs on


def test_the_same_change_through_cli_command_and_api(served, tmp_path):
    """One rule and one mode switch, made three ways on three stores: the same rows result."""
    from mitmproxy.test import taddons

    from mockstore.addon import MockStore

    rule = {"id": "r", "endpoint": "GET /users/{id}", "effect": "error", "status": 503, "probability": 0.5}
    by_cli = tmp_path / "cli.db"
    run_cli("chaos", "add", "--db", str(by_cli), "--id", "r", "--endpoint", "GET /users/{id}", "--effect", "error",
            "--status", "503", "-p", "0.5")
    run_cli("chaos", "disable", "r", "--db", str(by_cli))
    run_cli("mode", "mock", "--db", str(by_cli))

    by_command = tmp_path / "command.db"
    addon = MockStore()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, mock_db=str(by_command), mock_admin="off")
        addon.commands.chaos_add(json.dumps(rule))
        addon.commands.chaos_enable(False, "r")
        addon.commands.mode("mock")
        addon.commands.flush()
        addon.done()

    p = served("mitmdump", admin="127.0.0.1:0")
    a = Admin(*p.admin_url())
    a.post("/admin/chaos/rules", json=rule, ok=201)
    a.post("/admin/chaos/rules/r/disable")
    a.put("/admin/mode", json={"mode": "mock"})

    def stored(db) -> tuple:
        state = json.loads(run_cli("chaos", "list", "--db", str(db), "--json"))
        rules = [{k: v for k, v in r.items() if k != "source"} for r in state["rules"]]
        return state["enabled"], rules, run_cli("mode", "--db", str(db)).strip()

    want = stored(by_cli)
    assert want == (True, [{"id": "r", "method": "GET", "template": "/users/{id}", "probability": 0.5, "effect": "error",
                            "status": 503, "enabled": False, "applied": 0, "skipped": 0}], "mock")
    assert stored(by_command) == want
    eventually(lambda: stored(p.db) == want, "the API's change in the store")


def test_mitmweb_serves_it_beside_its_own_ui(tmp_path, confdir):
    """In mitmweb, mitmproxy's own tornado app and ours share the event loop, each on its port."""
    from conftest import BIN, wait_port

    port, web = free_port(), free_port()
    log = tmp_path / "mitmweb.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(BIN / "mitmweb"), "-s", ADDON, "--listen-host", "127.0.0.1", "--listen-port", str(port),
             "--web-port", str(web), "--no-web-open-browser", "--set", f"mock_db={tmp_path / 'm.db'}",
             "--set", f"confdir={confdir}", "--set", "mock_admin=127.0.0.1:0", "--set", "mock_mode=mock"],
            stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc, timeout=60)
        import re

        # (mitmweb 12 prints its own URL with a token of its own too)
        found = eventually(lambda: re.findall(r"admin API at (http://127\.0\.0\.1:\d+)/\?token=([\w-]+)",
                                              log.read_text()), "the admin URL", deadline=30)
        a = Admin(*found[0])
        assert a.get("/admin/mode").json() == {"mode": "mock"}
        assert a.put("/admin/mode", json={"mode": "learn"}).json() == {"mode": "learn"}
        own = re.findall(rf"(http://127\.0\.0\.1:{web}/(?:\?token=[\w-]+)?)", log.read_text())
        with httpx.Client(timeout=10, trust_env=False) as c:
            assert c.get(own[0] if own else f"http://127.0.0.1:{web}/").status_code == 200  # mitmweb's own UI
    finally:
        proc.terminate()
        proc.wait(timeout=20)
