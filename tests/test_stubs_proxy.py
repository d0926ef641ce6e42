"""Stubs through the real addon (mitmdump -s addons/mockstore.py) in front of a real backend
(tests/backend.py), with a real client, on 127.0.0.1: every operator on every request part,
priorities and ties, templates, delays, chaos on a stub, a stub over a recording, and
stubs files and the store changing under a running proxy."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest
import yaml
from conftest import ADDON, MITMDUMP, ROOT, Proc, free_port

from mockstore import stubs
from mockstore.store import Store

SOURCE = "X-Mockstore-Source"

# operator -> (expectedValue, a value that matches, one that does not). GREATER_THAN's miss
# is "9": as text, "9" > "10"; as numbers it is not. LESS_THAN compares ISO dates.
OPERATORS = {
    "EQUALS": ("gold", "gold", "silver"),
    "NOT_EQUALS": ("gold", "silver", "gold"),
    "CONTAINS": ("old", "golden", "silver"),
    "NOT_CONTAINS": ("old", "silver", "golden"),
    "GREATER_THAN": ("10", "11", "9"),
    "LESS_THAN": ("2026-01-01", "2025-12-31T23:00:00Z", "2026-02-01"),
    "REGEX": ("^ab+c$", "abbbc", "abd"),
}
SOURCES = ("QUERY", "HEADER", "BODY", "PATH")
CASES = [(op, src) for op in OPERATORS for src in SOURCES]


def _route(op: str, src: str) -> dict:
    expected = OPERATORS[op][0]
    name = {"QUERY": "v", "HEADER": "X-Probe-Value", "BODY": "data.items[0].v", "PATH": "v"}[src]
    path = f"/t/{op.lower()}/path/{{v}}" if src == "PATH" else f"/t/{op.lower()}/{src.lower()}"
    return {
        "method": "POST", "path": path, "statusCode": 200,
        "defaultResponse": {"body": {"hit": False}, "headers": {"Content-Type": "application/json"}},
        "conditions": [{"parameterName": name, "parameterSource": src, "operator": op,
                        "expectedValue": expected, "response": {"hit": True}, "statusCode": 201, "priority": 1}],
    }


def _request(client: httpx.Client, op: str, src: str, value: str) -> httpx.Response:
    base = f"/t/{op.lower()}/{src.lower()}"
    if src == "QUERY":
        return client.post(base, params={"v": value})
    if src == "HEADER":
        return client.post(base, headers={"x-probe-VALUE": value})  # another spelling: names are case-insensitive
    if src == "BODY":
        v: object = float(value) if op == "GREATER_THAN" else value  # a JSON number compares as one
        return client.post(base, json={"data": {"items": [{"v": v}]}})
    return client.post(f"/t/{op.lower()}/path/{value}")


STUBS = {
    "mocks": [
        {"name": "operators", "routes": [_route(op, src) for op, src in CASES]},
        {"name": "priorities", "routes": [{
            "method": "GET", "path": "/prio", "defaultResponse": {"body": "default"},
            "conditions": [
                {"parameterName": "q", "parameterSource": "QUERY", "operator": "EQUALS", "expectedValue": "a",
                 "response": "low", "priority": 1},
                {"parameterName": "q", "parameterSource": "QUERY", "operator": "EQUALS", "expectedValue": "a",
                 "response": "high", "priority": 5},
                {"parameterName": "q", "parameterSource": "QUERY", "operator": "CONTAINS", "expectedValue": "a",
                 "response": "tie-declared-second", "priority": 5},
                {"parameterName": "q", "parameterSource": "QUERY", "operator": "REGEX", "expectedValue": "z$",
                 "response": "zero", "priority": 0},
            ],
        }]},
        {"name": "templates", "routes": [{
            "method": "POST", "path": "/tpl/{id}",
            "defaultResponse": {
                "headers": {"Content-Type": "application/json", "X-Trace-Echo": "{{request.headers.x-trace}}"},
                "body": {"id": "{{request.path.id}}", "page": "{{request.query.page}}",
                         "trace": "{{request.headers.X-Trace}}", "name": "{{request.body.user.name}}",
                         "age": "{{request.body.user.age}}", "sku": "{{request.body.items[0].sku}}",
                         "year": "{{now '%Y'}}", "uuid": "{{uuid}}", "email": "{{faker.email}}",
                         "n": "{{counter}}", "greeting": "hello {{request.body.user.name}}"},
            },
        }, {
            "method": "POST", "path": "/form",
            "defaultResponse": {"body": "no"},
            "conditions": [{"parameterName": "plan", "parameterSource": "BODY", "operator": "EQUALS",
                            "expectedValue": "pro", "response": "form {{request.body.plan}}"}],
        }]},
        {"name": "slow", "responseDelay": 300, "routes": [{"method": "GET", "path": "/slow-stub", "defaultResponse": {"body": "late"}}]},
        {"name": "off", "status": "INACTIVE", "routes": [{"method": "GET", "path": "/ok/off", "defaultResponse": {"body": "never"}}]},
        {"name": "chaotic", "routes": [{"method": "GET", "path": "/chaos-stub", "defaultResponse": {"body": "fine"}}]},
    ]
}


@pytest.fixture(scope="module")
def stub_proxy(tmp_path_factory, confdir):
    """A backend, and mitmdump in learn mode with the stubs file and a chaos rule, for the module."""
    tmp = tmp_path_factory.mktemp("stubs")
    (tmp / "stubs.yaml").write_text(yaml.safe_dump(STUBS, sort_keys=False))
    (tmp / "chaos.yaml").write_text("rules:\n  - {id: boom, template: /chaos-stub, effect: error, status: 503}\n")
    api_port, port = free_port(), free_port()
    api = Proc([sys.executable, str(ROOT / "tests" / "backend.py"), str(api_port)], api_port)
    p = Proc([MITMDUMP, "-q", "-s", ADDON, "--listen-host", "127.0.0.1", "--listen-port", str(port),
              "--mode", f"reverse:http://127.0.0.1:{api_port}", "--set", f"mock_db={tmp / 'm.db'}",
              "--set", f"confdir={confdir}", "--set", f"mock_stubs={tmp / 'stubs.yaml'}",
              "--set", f"mock_chaos={tmp / 'chaos.yaml'}"], port)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, trust_env=False) as client:
        yield client, tmp
    out = p.stop()
    api.stop()
    print(f"--- mitmdump ---\n{out[-5000:]}")


@pytest.mark.parametrize("op,src", CASES)
def test_every_operator_on_every_source(stub_proxy, op, src):
    client, _ = stub_proxy
    _, hit, miss = OPERATORS[op]
    r = _request(client, op, src, hit)
    assert (r.status_code, r.json(), r.headers[SOURCE]) == (201, {"hit": True}, "stub"), f"{op} {src} {hit!r}"
    r = _request(client, op, src, miss)
    assert (r.status_code, r.json(), r.headers[SOURCE]) == (200, {"hit": False}, "stub"), f"{op} {src} {miss!r}"


@pytest.mark.parametrize("src", ["QUERY", "HEADER", "BODY"])
def test_a_missing_value_fails_positive_operators_and_passes_negative_ones(stub_proxy, src):
    client, _ = stub_proxy
    for op, want in (("EQUALS", False), ("CONTAINS", False), ("GREATER_THAN", False), ("REGEX", False),
                     ("NOT_EQUALS", True), ("NOT_CONTAINS", True)):
        r = client.post(f"/t/{op.lower()}/{src.lower()}", json={"other": 1})
        assert r.json() == {"hit": want}, (op, src)


def test_highest_priority_answers_and_ties_go_to_the_first_declared(stub_proxy):
    client, _ = stub_proxy
    assert client.get("/prio", params={"q": "a"}).text == "high"  # 5 beats 1; of the two 5s, the first
    assert client.get("/prio", params={"q": "ba"}).text == "tie-declared-second"
    assert client.get("/prio", params={"q": "z"}).text == "zero"
    assert client.get("/prio", params={"q": "y"}).text == "default"


def test_templates_fill_in_every_request_part_and_keep_json_valid(stub_proxy):
    client, _ = stub_proxy
    body = {"user": {"name": 'Ann "Q" O\'Neil\n', "age": 41}, "items": [{"sku": "A-1"}]}
    r = client.post("/tpl/42", params={"page": "3"}, headers={"X-Trace": "t-9"}, json=body)
    assert r.headers[SOURCE] == "stub" and r.headers["X-Trace-Echo"] == "t-9"
    data = r.json()  # valid JSON, whatever the request held
    assert data["id"] == "42" and data["page"] == "3" and data["trace"] == "t-9"
    assert data["name"] == body["user"]["name"] and data["greeting"] == f"hello {body['user']['name']}"
    assert data["age"] == 41 and data["sku"] == "A-1"  # a number from the body stays a number
    assert data["year"] == time.strftime("%Y", time.gmtime())
    assert len(data["uuid"]) == 36 and "@" in data["email"]
    again = client.post("/tpl/42", json=body).json()
    assert int(again["n"]) == int(data["n"]) + 1 and again["uuid"] != data["uuid"]
    assert again["page"] == "" and again["trace"] == ""  # absent: empty


def test_form_fields_are_body_names(stub_proxy):
    client, _ = stub_proxy
    assert client.post("/form", data={"plan": "pro", "x": "1"}).text == "form pro"
    assert client.post("/form", data={"plan": "free"}).text == "no"


def test_delay_and_inactive_and_chaos(stub_proxy):
    client, _ = stub_proxy
    started = time.monotonic()
    r = client.get("/slow-stub")
    assert r.text == "late" and time.monotonic() - started >= 0.3  # the mock's responseDelay
    r = client.get("/ok/off")  # INACTIVE: the request goes on as without stubs, to the real API
    assert r.json() == {"path": "/ok/off"} and SOURCE not in r.headers
    r = client.get("/chaos-stub")  # a chaos rule that fires still applies
    assert r.status_code == 503


def test_unmatched_requests_go_on_as_before(stub_proxy):
    client, _ = stub_proxy
    r = client.get("/users/3")
    assert r.json()["id"] == 3 and SOURCE not in r.headers  # learn mode: the real API
    r = client.get("/prio/extra")  # a longer path than the stub's
    assert r.status_code == 404 and SOURCE not in r.headers


def test_a_store_change_reaches_the_running_proxy_within_a_second(stub_proxy):
    client, tmp = stub_proxy
    assert SOURCE not in client.get("/users/7").headers
    store = Store(tmp / "m.db")
    try:
        stubs.save(store.reader(), stubs.parse({"name": "late-comer", "routes": [
            {"method": "GET", "path": "/users/{id}", "defaultResponse": {"body": "stubbed {{request.path.id}}"}}]}))
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and client.get("/users/7").text != "stubbed 7":
            time.sleep(0.05)
        assert client.get("/users/7").text == "stubbed 7"
        stubs.update(store.reader(), "late-comer", status="INACTIVE")
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and SOURCE in client.get("/users/7").headers:
            time.sleep(0.05)
        assert client.get("/users/7").json()["id"] == 7
    finally:
        store.close()


def test_a_broken_edit_of_the_file_keeps_the_previous_stubs(stub_proxy):
    client, tmp = stub_proxy
    path = tmp / "stubs.yaml"
    good = path.read_text()
    broken = json.loads(json.dumps(STUBS))
    broken["mocks"][1]["routes"][0]["conditions"][0]["operator"] = "SIMILAR"
    broken["mocks"][1]["routes"][0]["conditions"][0]["response"] = "changed"
    try:
        path.write_text(yaml.safe_dump(broken, sort_keys=False))
        time.sleep(1.0)
        assert client.get("/prio", params={"q": "a"}).text == "high"
        fixed = json.loads(json.dumps(STUBS))
        fixed["mocks"][1]["routes"][0]["conditions"][1]["response"] = "edited"
        path.write_text(yaml.safe_dump(fixed, sort_keys=False))
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and client.get("/prio", params={"q": "a"}).text != "edited":
            time.sleep(0.05)
        assert client.get("/prio", params={"q": "a"}).text == "edited"
    finally:
        path.write_text(good)
        time.sleep(0.6)


def test_a_stub_answers_over_a_recording_of_the_same_url(proxy, backend, tmp_path):
    _, api = backend()
    learn = proxy(api, mode="learn")
    with learn.client(trust_env=False) as c:
        assert c.get("/users/5").json()["id"] == 5
        assert c.get("/users/6").json()["id"] == 6
    learn.stop()
    path = tmp_path / "stubs.yaml"
    path.write_text(yaml.safe_dump({"mocks": [{"name": "u", "routes": [{
        "method": "GET", "path": "/users/{id}", "defaultResponse": {"body": {"stub": True}},
        "conditions": [{"parameterName": "id", "parameterSource": "PATH", "operator": "EQUALS",
                        "expectedValue": "6", "response": {"stub": "six"}}]}]}]}))
    for mode in ("replay", "mock"):
        mocked = proxy(api, mode=mode, db=learn.db, mock_stubs=str(path))
        with mocked.client(trust_env=False) as c:
            r = c.get("/users/5")
            assert (r.headers[SOURCE], r.json()) == ("stub", {"stub": True}), mode
            assert c.get("/users/6").json() == {"stub": "six"}
        mocked.stop()
    plain = proxy(api, mode="replay", db=learn.db)
    with plain.client(trust_env=False) as c:
        r = c.get("/users/5")
        assert r.headers[SOURCE] == "recorded" and r.json()["id"] == 5  # the recording, without stubs


def test_a_bad_stubs_file_is_refused_at_start_naming_it(tmp_path, confdir):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"mocks": [{"name": "items", "routes": [{
        "method": "GET", "path": "/items/{id}", "conditions": [{
            "parameterName": "id", "parameterSource": "PATH", "operator": "REGEX", "expectedValue": "([0-9]"}]}]}]}))
    out = subprocess.run([MITMDUMP, "-q", "-s", ADDON, "--listen-port", str(free_port()), "--listen-host", "127.0.0.1",
                          "--set", f"mock_db={tmp_path / 'm.db'}", "--set", f"confdir={confdir}",
                          "--set", f"mock_stubs={path}"], capture_output=True, text=True, timeout=60)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert str(path) in text and "mock 'items'" in text and "route 'GET /items/{id}'" in text and "'expectedValue'" in text
