"""Synthesis from what was learned (issue 13, items 3 and 4): each field's values (enums,
ranges, lengths, the ids seen), kept with bounded memory, merged across processes and kept
over a restart; the request's own values carried in; every body valid for the learned schema
read strictly."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jsonschema
import pytest

from mockstore import synth, values
from mockstore.exchange import Exchange, Request, Response
from mockstore.learn import Learner
from mockstore.model import Model
from mockstore.stats import EndpointStats
from mockstore.store import Store
from mockstore.synth import synthesize

HOST = "api.test"
STATUSES = ["pending", "paid", "shipped"]


# --- a small API: users' orders, accounts, posts by slug ------------------------------------

def orders(uid: int) -> dict:
    items = [
        {"id": uid * 10 + i, "user_id": uid, "status": STATUSES[(uid + i) % 3], "currency": "EUR",
         "amount": round(5 + (uid * 7 + i * 3) % 75 + 0.5, 2), "code": f"C{uid:02d}{i:03d}"}
        for i in range(1 + uid % 3)
    ]
    return {"orders": items, "ordersCount": len(items)}


def post(slug: str, title: str, body: str = "Some text.") -> dict:
    return {"post": {"slug": slug, "title": title, "body": body, "author": {"username": "alice"}, "likesCount": 0}}


def account(username: str, email: str) -> dict:
    return {"account": {"username": username, "email": email, "token": "tok-" + username, "bio": ""}}


def slugify(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


TITLES = ["How to train a dragon", "Another fine day", "Notes on tea", "Why we sleep"]


def answer(method: str, path: str, body: dict | None) -> tuple[int, dict]:
    parts = path.strip("/").split("/")
    if method == "GET" and len(parts) == 3 and parts[0] == "users" and parts[2] == "orders":
        return 200, orders(int(parts[1]))
    if method == "POST" and parts == ["accounts"]:
        a = (body or {}).get("account", {})
        return 201, account(a.get("username", ""), a.get("email", ""))
    if method in ("GET", "PUT") and len(parts) == 2 and parts[0] == "posts":
        title = ((body or {}).get("post") or {}).get("title") or parts[1].replace("-", " ").capitalize()
        return 200, post(parts[1], title)
    return 404, {"error": "not found"}


def traffic_a() -> list[tuple[str, str, dict | None]]:
    calls = [("GET", f"/users/{uid}/orders", None) for uid in (1, 2, 3, 4, 5, 6)]
    calls.append(("POST", "/accounts", {"account": {"username": "alice", "email": "alice@example.com", "password": "pw-a"}}))
    for t in TITLES:
        calls.append(("GET", f"/posts/{slugify(t)}", None))
    calls.append(("PUT", f"/posts/{slugify(TITLES[0])}", {"post": {"title": "How to train a dragon, again"}}))
    calls.append(("PUT", f"/posts/{slugify(TITLES[1])}", {"post": {"title": "Another fine day, again"}}))
    return calls


def learn_in_memory(calls) -> Model:
    model = Model()
    learner = Learner(model, None)
    for method, path, body in calls:
        status, out = answer(method, path, body)
        req = Request(method, HOST, path, [], [("content-type", "application/json")] if body else [],
                      json.dumps(body).encode() if body else b"", port=80)
        learner.learn(Exchange(req, Response(status, [("content-type", "application/json")], json.dumps(out).encode()),
                               started=1_700_000_000.0, duration_ms=3.0))
    return model


def strict(schema):
    """The learned schema read strictly: no object may have a field that was never seen."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if "properties" in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(x) for x in schema]
    return schema


def validate_strictly(schema: dict, value) -> None:
    jsonschema.Draft202012Validator(strict(schema), format_checker=jsonschema.FormatChecker()).validate(value)


def endpoint(model: Model, method: str, path: str):
    ep, params = model.find_endpoint(method, f"{HOST}", path)
    if ep is None:  # the authority as the model keys it
        ep, params = model.find_endpoint(method, f"{HOST}:80", path)
    assert ep is not None, (method, path, list(model.endpoints))
    return ep, params


# --- values: learned with bounded memory ---------------------------------------------------

def test_values_are_kept_bounded_per_field():
    v: dict = {}
    for i in range(100):
        values.observe(v, 200, {"id": i, "status": STATUSES[i % 3], "currency": "EUR", "text": "x" * (70 + i % 5),
                                "code": "A" * (4 + i % 3), "items": [{"n": j} for j in range(100)]})
    f = v["200"]
    assert f["id"]["v"] is None and (f["id"]["lo"], f["id"]["hi"]) == (0, 99), "over KEEP distinct: many, with a range"
    assert f["status"]["v"] == {json.dumps(s): n for s, n in zip(STATUSES, (34, 33, 33))}
    assert f["currency"]["v"] == {'"EUR"': 100}
    assert f["text"]["v"] is None and f["text"]["ln"] == [70, 74], "long strings are text, not a set"
    assert f["code"]["ln"] == [4, 6]
    assert f["items[].n"]["n"] == 100 * values.ITEMS, "only the first ITEMS items of an array are walked"
    ids: dict = {}
    for uid in range(1, 9):
        values.observe(ids, 200, {"user": {"id": uid, "likes": 1}}, {"id": str(uid)})
    assert values.carriers(ids["200"], "id") == ["user.id"], "once is a coincidence (likes 1 at /users/1)"
    wide: dict = {}
    values.observe(wide, 200, {f"k{i}": i for i in range(1000)})
    assert len(wide["200"]) == values.FIELDS


def test_values_add_up_across_processes_and_survive_a_restart(tmp_path):
    path = tmp_path / "m.db"
    calls = [("GET", f"/users/{uid}/orders", None) for uid in range(1, 11)]

    def exchanges(cs):
        out = []
        for method, p, body in cs:
            status, b = answer(method, p, body)
            out.append(Exchange(Request(method, HOST, p, [], port=80),
                                Response(status, [("content-type", "application/json")], json.dumps(b).encode()),
                                started=1_700_000_000.0, duration_ms=2.0))
        return out

    procs = []
    for slot in (0, 1):
        store = Store(path)
        model = Model.load(store.db, slot=slot)
        procs.append((store, model, Learner(model, store)))

    def persist(store, model):
        store.submit(model.persist())
        assert store.flush()
        model.apply_synced()

    (sa, ma, la), (sb, mb, lb) = procs
    for ex in exchanges(calls[:3]):
        la.learn(ex)
    persist(sa, ma)
    for ex in exchanges(calls[3:7]):
        lb.learn(ex)
    persist(sb, mb)
    for ex in exchanges(calls[7:]):
        la.learn(ex)
    persist(sa, ma)
    persist(sb, mb)
    persist(sa, ma)
    for store, _, _ in procs:
        store.close()

    alone = learn_in_memory(calls)
    store = Store(path)
    try:
        restarted = Model.load(store.db)  # a new process: what it knows comes from the store
        for model in (ma, mb, restarted):
            (ep_id,) = [e for e in model.endpoints if "orders" in e]
            got = model.endpoints[ep_id].stats.values["200"]
            want = next(e for e in alone.endpoints.values() if "orders" in e.id).stats.values["200"]
            assert set(got["orders[].user_id"]["v"]) == {str(u) for u in range(1, 11)}
            assert set(got["orders[].status"]["v"]) == {json.dumps(s) for s in STATUSES}
            assert got["orders[].currency"]["v"] == want["orders[].currency"]["v"] == {"\"EUR\"": 20}
            for field in want:
                if field == values.PARAMS:
                    continue
                for k in ("lo", "hi", "ln", "n"):
                    assert got[field].get(k) == want[field].get(k), (field, k)
                assert (got[field]["v"] is None) == (want[field]["v"] is None), field
            assert values.carriers(got, "id") == ["orders[].user_id"], "the path's id was carried by user_id"
    finally:
        store.close()


def test_stats_values_round_trip_and_take_away():
    a = EndpointStats()
    a.add_values(200, {"s": "x", "n": 3})
    a.add_values(200, {"s": "y", "n": 9})
    earlier = a.copy()
    a.add_values(200, {"s": "x", "n": 1})
    delta = a.minus(earlier)
    assert delta.values["200"]["s"]["v"] == {'"x"': 1} and delta.values["200"]["s"]["n"] == 1
    back = EndpointStats.from_json(json.loads(json.dumps(a.to_json())))
    assert back.values == a.values
    assert earlier.plus(delta).values == a.values
    assert EndpointStats.from_json({"values": {"200": {"bad": 3, "s": {"n": "x"}}}}).values == {}, "damage is left out"
    odd = EndpointStats.from_json({"values": {"200": {"a": {"n": 2, "lo": 1}, "b": {"n": 1, "ln": 7}, "c": {"n": 1}}}})
    odd.add_values(200, {"a": 5, "b": "xy", "c": "q"})  # a half-damaged entry goes on learning
    assert odd.values["200"]["a"]["lo"] == odd.values["200"]["a"]["hi"] == 5 and odd.values["200"]["b"]["ln"] == [2, 2]


# --- synthesis from the learned values -----------------------------------------------------

def test_synthesis_takes_learned_values_and_the_paths_id():
    model = learn_in_memory(traffic_a())
    ep, params = endpoint(model, "GET", "/users/77/orders")
    assert params == {"id": "77"}
    schema = ep.response_schema(200)
    seen_status, seen_ids = set(), set()
    for i in range(30):
        body = synth.learned(ep, 200, seed=1, key=f"k{i}", params={"id": "77"})
        validate_strictly(schema, body)
        for o in body["orders"]:
            assert o["user_id"] == 77, "the path's id goes into the field that carried it, in every item"
            assert o["currency"] == "EUR"
            assert o["status"] in STATUSES
            assert 5.5 <= o["amount"] <= 79.5
            assert len(o["code"]) == 6
            seen_status.add(o["status"])
            seen_ids.add(o["id"])
        assert "id" not in body, "never a new top-level field"
        ids = [o["id"] for o in body["orders"]]
        assert len(ids) == len(set(ids)), "items are told apart by their ids"
    assert len(seen_status) > 1, "drawn from the learned set, not one value"
    assert synth.learned(ep, 200, seed=1, key="k3", params={"id": "77"}) == synth.learned(ep, 200, seed=1, key="k3", params={"id": "77"})


def test_synthesis_carries_the_request_into_the_envelope():
    model = learn_in_memory(traffic_a())
    ep, params = endpoint(model, "PUT", "/posts/bobs-first-post")
    req = {"post": {"title": "Bob's first post", "body": "Hello from Bob"}}
    body = synth.learned(ep, 200, key="x", params=params, body=json.dumps(req).encode(), content_type="application/json")
    validate_strictly(ep.response_schema(200), body)
    assert body["post"]["slug"] == "bobs-first-post", "the path's slug, where the learned bodies carried it"
    assert body["post"]["title"] == "Bob's first post" and body["post"]["body"] == "Hello from Bob"
    assert body["post"]["author"]["username"] == "alice", "a field the request has not: learned"
    assert set(body) == {"post"}

    ep, params = endpoint(model, "POST", "/accounts")
    req = {"account": {"username": "bob", "email": "bob@example.org", "password": "secret"}}
    body = synth.learned(ep, 201, key="y", params=params, body=json.dumps(req).encode(), content_type="application/json")
    validate_strictly(ep.response_schema(201), body)
    assert (body["account"]["username"], body["account"]["email"]) == ("bob", "bob@example.org")
    assert "password" not in body["account"], "a request field the response never had stays out"


def test_overrides_never_add_a_field_the_schema_lacks():
    schema = {"type": "object", "properties": {"post": {"type": "object", "properties": {"id": {"type": "integer"}}}}}
    v = synthesize(schema, overrides={"id": "12", "nope": "x"})
    assert v == {"post": {"id": 12}}


# --- through a real proxy ------------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    def _serve(self):
        n = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(n) if n else b""
        status, out = answer(self.command, self.path.split("?")[0], json.loads(raw) if raw else None)
        data = json.dumps(out).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = _serve

    def log_message(self, *a):
        pass


@pytest.fixture
def api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_mock_mode_synthesizes_from_learned_values(api, proxy):
    p = proxy(api, mode="learn", runner="serve")
    with p.client() as c:
        for method, path, body in traffic_a():
            r = c.request(method, path, json=body)
            assert r.status_code < 300 and "x-mockstore-source" not in r.headers
    p.stop()

    store = Store(p.db)
    try:
        model = Model.load(store.db)
    finally:
        store.close()
    orders_schema = next(e for e in model.endpoints.values() if e.template.endswith("/orders")).response_schema(200)
    post_schema = next(e for e in model.endpoints.values() if e.method == "PUT").response_schema(200)

    mock = proxy(api, mode="mock", db=p.db, runner="serve")  # a new process: values from the store
    with mock.client() as c:
        for uid in (41, 42, 43):
            r = c.get(f"/users/{uid}/orders")
            assert r.headers["x-mockstore-source"] == "synthesized"
            body = r.json()
            validate_strictly(orders_schema, body)
            assert body["orders"] and all(o["user_id"] == uid and o["currency"] == "EUR" and o["status"] in STATUSES
                                          for o in body["orders"])
        r = c.put("/posts/bobs-first-post", json={"post": {"title": "Bob's first post"}})
        assert r.headers["x-mockstore-source"] == "synthesized"
        body = r.json()
        validate_strictly(post_schema, body)
        assert (body["post"]["slug"], body["post"]["title"]) == ("bobs-first-post", "Bob's first post")
        r2 = c.put("/posts/bobs-first-post", json={"post": {"title": "Bob's second title"}})
        assert r2.json()["post"]["title"] == "Bob's second title", "another body: another answer"
