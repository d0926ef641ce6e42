"""OpenAPI 3.1 export of a learned model: valid for openapi-spec-validator, and saying what
was learned (templates, parameter types, bodies, statuses, latency)."""

from __future__ import annotations

import json
import uuid

import pytest
from openapi_spec_validator import validate

from mockstore.exchange import Exchange, Request, Response
from mockstore.learn import Learner
from mockstore.model import Model
from mockstore.openapi import to_openapi

API = "api.example.com"


def user(i: int) -> dict:
    return {"id": i, "name": f"User {i}", "email": f"u{i}@example.com", "active": i % 2 == 0}


def exchanges() -> list[Exchange]:
    out: list[Exchange] = []
    t = 1_700_000_000.0

    def add(method, path, status, body=None, query=(), req_body=None, ms=20.0, host=API, scheme="https", port=443):
        req_headers = [("content-type", "application/json")] if req_body is not None else []
        req = Request(method, host, path, list(query), req_headers,
                      json.dumps(req_body).encode() if req_body is not None else b"", scheme=scheme, port=port)
        resp = Response.make_json(status, body) if body is not None else Response(status)
        out.append(Exchange(req, resp, started=t + len(out), duration_ms=ms))

    for i in range(1, 16):
        add("GET", f"/users/{i}", 200, user(i), ms=10 + i)
    for i in (900, 901, 902):
        add("GET", f"/users/{i}", 404, {"error": "not found", "code": 404}, ms=5)
    for _ in range(4):
        add("GET", "/users/me", 200, {**user(1), "roles": ["admin"]}, ms=8)
    for page in range(1, 7):
        add("GET", "/users", 200, [user(page), user(page + 1)], query=[("page", str(page)), ("sort", "name")], ms=30)
    for i in range(5):
        add("POST", "/users", 201, user(100 + i), req_body={"name": f"New {i}", "email": f"n{i}@example.com"}, ms=40)
    add("POST", "/users", 422, {"error": "email is required"}, req_body={"name": "x"}, ms=12)
    for i in range(3):
        add("DELETE", f"/users/{i + 1}", 204, ms=9)
    for _ in range(5):
        oid = str(uuid.uuid4())
        add("GET", f"/orders/{oid}", 200, {"id": oid, "total": 9.5, "items": [{"sku": "a", "qty": 1}]}, ms=50)
    for i in range(3):
        add("PATCH", f"/users/{i + 1}/settings", 200, {"theme": "dark"}, req_body={"theme": "dark"}, ms=15)
    for d in ("2024-01-01", "2024-02-01"):
        add("GET", f"/reports/{d}", 200, {"day": d, "visits": 3})
    # a second host, served over plain http, sharing one path shape with the first
    for i in range(1, 4):
        add("GET", f"/users/{i}", 200, {"id": i}, host="127.0.0.1", scheme="http", port=8000, ms=1)
    add("GET", "/health", 200, {"ok": True}, host="127.0.0.1", scheme="http", port=8000, ms=1)
    # something OpenAPI has no place for
    add("PROPFIND", "/dav", 207, {"x": 1}, host="127.0.0.1", scheme="http", port=8000)
    return out


@pytest.fixture(scope="module")
def learned():
    model = Model()
    learner = Learner(model, None)
    exs = exchanges()
    assert len(exs) >= 50
    for ex in exs:
        learner.learn(ex)
    seen = [(ex.request.authority, ex.request.path) for ex in exs]
    return model, seen


@pytest.fixture(scope="module")
def doc(learned):
    model, seen = learned
    d = to_openapi(model, title="Test API", version="2.0.0", schemes={"127.0.0.1:8000": "http"}, seen_paths=seen)
    validate(d)
    return d


def test_validates_and_survives_json(doc):
    validate(json.loads(json.dumps(doc)))
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["title"] == "Test API" and doc["info"]["version"] == "2.0.0"


def test_servers_one_per_host(doc):
    assert doc["servers"] == [{"url": "http://127.0.0.1:8000"}, {"url": "https://api.example.com"}]
    # with several hosts, each path names its own
    assert doc["paths"]["/health"]["servers"] == [{"url": "http://127.0.0.1:8000"}]
    assert doc["paths"]["/users/me"]["servers"] == [{"url": "https://api.example.com"}]
    assert len(doc["paths"]["/users/{id}"]["servers"]) == 2


def test_paths_and_path_parameters(doc):
    paths = doc["paths"]
    assert {"/users", "/users/me", "/users/{id}", "/orders/{id}", "/users/{id}/settings", "/reports/{date}", "/health"} <= set(paths)
    (uid,) = paths["/users/{id}"]["parameters"]
    assert uid == {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}, "example": 1}
    (oid,) = paths["/orders/{id}"]["parameters"]
    assert oid["schema"] == {"type": "string", "format": "uuid"} and oid["required"] is True
    (day,) = paths["/reports/{date}"]["parameters"]
    assert day["schema"] == {"type": "string", "format": "date"}
    assert "parameters" not in paths["/users/me"]
    assert set(paths["/users/{id}"]) >= {"get", "delete"}


def test_query_parameters(doc):
    params = {p["name"]: p for p in doc["paths"]["/users"]["get"]["parameters"]}
    assert params["page"]["in"] == "query" and params["page"]["schema"] == {"type": "integer"}
    assert params["sort"]["schema"] == {"type": "string"}
    assert params["page"]["required"] is False


def test_request_bodies(doc):
    body = doc["paths"]["/users"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    assert schema["type"] == "object"
    assert set(schema["properties"]) == {"name", "email"}
    assert schema["required"] == ["name"]  # one request had no email
    assert body["required"] is True
    assert "requestBody" not in doc["paths"]["/users/{id}"]["get"]


def test_responses_per_status(doc):
    get = doc["paths"]["/users/{id}"]["get"]
    assert set(get["responses"]) == {"200", "404"}
    ok = get["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["properties"]["email"]["format"] == "email"
    missing = get["responses"]["404"]["content"]["application/json"]["schema"]
    assert set(missing["properties"]) == {"error", "code"}
    assert "seen 3 times" in get["responses"]["404"]["description"]
    post = doc["paths"]["/users"]["post"]["responses"]
    assert set(post) == {"201", "422"}
    deleted = doc["paths"]["/users/{id}"]["delete"]["responses"]["204"]
    assert "content" not in deleted
    assert doc["paths"]["/users"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["type"] == "array"


def test_descriptions_and_operation_ids(doc):
    ops = [op for item in doc["paths"].values() for k, op in item.items() if k in ("get", "post", "put", "patch", "delete")]
    ids = [op["operationId"] for op in ops]
    assert len(ids) == len(set(ids))
    get = doc["paths"]["/users/{id}"]["get"]
    assert get["operationId"] == "get_users_by_id"
    assert "18 samples" in get["description"]  # 15 + 3 404s on api.example.com
    assert "p50" in get["description"] and "p95" in get["description"]
    assert "Also seen on 127.0.0.1:8000 (3 samples)" in get["description"]
    assert get["x-mockstore"]["samples"] == 18 and get["x-mockstore"]["p95_ms"] >= get["x-mockstore"]["p50_ms"]
    assert "PROPFIND 127.0.0.1:8000/dav" in doc["info"]["description"]


def test_without_seen_paths_parameters_are_strings(learned):
    model, _ = learned
    d = to_openapi(model)
    validate(d)
    assert d["paths"]["/users/{id}"]["parameters"][0]["schema"] == {"type": "string"}
    assert d["paths"]["/reports/{date}"]["parameters"][0]["schema"] == {"type": "string", "format": "date"}
    assert {"url": "https://api.example.com"} in d["servers"]
    assert {"url": "http://127.0.0.1:8000"} in d["servers"]  # guessed: a local host


def test_empty_model_is_a_valid_document():
    d = to_openapi(Model())
    validate(d)
    assert d["paths"] == {}


def test_odd_paths_stay_valid():
    model = Model()
    learner = Learner(model, None)
    for path in ("/", "/a{b}/c", "/weird path/ü", "/x/1/y/2/z/3"):
        learner.learn(Exchange(Request("GET", "h.example", path), Response(999)))
        learner.learn(Exchange(Request("GET", "h.example", path), Response.make_json(200, {"v": None})))
    d = to_openapi(model, seen_paths=[("h.example", "/x/1/y/2/z/3")])
    validate(d)
    assert "/a%7Bb%7D/c" in d["paths"]
    assert d["paths"]["/"]["get"]["operationId"] == "get_root"
    names = [p["name"] for p in d["paths"]["/x/{id}/y/{y_id}/z/{z_id}"]["parameters"]]
    assert len(names) == len(set(names)) == 3
    # status 999 has no place among OpenAPI's response codes; 200 is kept
    assert set(d["paths"]["/"]["get"]["responses"]) == {"200"}


def test_real_data_set():
    """jsonplaceholder's resources, listed and fetched one by one."""
    data = json.loads(open("/work/shared/data/jsonplaceholder.json", encoding="utf-8").read())
    model, seen = Model(), []
    learner = Learner(model, None)
    host = "jsonplaceholder.typicode.com"
    for name, rows in data.items():
        learner.learn(Exchange(Request("GET", host, f"/{name}", scheme="https", port=443), Response.make_json(200, rows)))
        for row in rows[:20]:
            path = f"/{name}/{row['id']}"
            seen.append((host, path))
            learner.learn(Exchange(Request("GET", host, path, scheme="https", port=443), Response.make_json(200, row)))
    d = to_openapi(model, seen_paths=seen)
    validate(d)
    assert set(d["paths"]) == {f"/{n}" for n in data} | {f"/{n}/{{id}}" for n in data}
    user = d["paths"]["/users/{id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert user["properties"]["address"]["properties"]["geo"]["type"] == "object"
    assert user["properties"]["email"]["format"] == "email"


def test_non_json_responses_keep_their_media_type():
    model = Model()
    learner = Learner(model, None)
    for _ in range(2):
        learner.learn(Exchange(Request("GET", "h.example", "/page"), Response(200, [("content-type", "text/html")], b"<p>hi</p>")))
    d = to_openapi(model)
    validate(d)
    assert d["paths"]["/page"]["get"]["responses"]["200"]["content"] == {"text/html": {}}
