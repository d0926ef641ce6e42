"""The pytest plugin as a user uses it: the `mockstore_proxy` fixture comes from the installed
`pytest11` entry point (nothing imported here), a session proxy with a stubs file and a
virtual backend from an OpenAPI document, stubs added inline, the spy, and the reset
between tests (the tests below depend on running in file order, as pytest runs them)."""

from __future__ import annotations

import pytest
import yaml

SPEC = "/work/shared/specs/v3.0-petstore-expanded.yaml"


@pytest.fixture(scope="session")
def mockstore_settings(tmp_path_factory):
    """Overridden, as a user would, to choose the proxy's settings in code."""
    stubs = tmp_path_factory.mktemp("plugin-stubs") / "stubs.yaml"
    stubs.write_text(yaml.safe_dump({"mocks": [{"name": "health", "routes": [
        {"method": "GET", "path": "/health", "defaultResponse": {"body": {"status": "up"}}}]}]}))
    return {"mode": "mock", "stubs": str(stubs), "spec": SPEC}


def test_an_inline_stub_answers_and_the_spy_sees_it(mockstore_proxy):
    mockstore_proxy.stub("GET /api/items/{id}", body={"kind": "default"}, conditions=[
        {"parameterName": "tier", "parameterSource": "QUERY", "operator": "EQUALS", "expectedValue": "gold",
         "response": {"kind": "gold", "id": "{{request.path.id}}"}, "priority": 1}])
    client = mockstore_proxy.client
    assert client.get("/api/items/7", params={"tier": "gold"}).json() == {"kind": "gold", "id": "7"}
    assert client.get("/api/items/8").json() == {"kind": "default"}
    seen = mockstore_proxy.requests
    assert [(r["method"], r["path"], r["query"], r["source"]) for r in seen] == [
        ("GET", "/api/items/7", {"tier": "gold"}, "stub"), ("GET", "/api/items/8", {}, "stub")]
    assert mockstore_proxy.url.startswith("http://127.0.0.1:")


def test_the_previous_tests_stub_and_requests_are_gone(mockstore_proxy):
    r = mockstore_proxy.client.get("/api/items/7", params={"tier": "gold"})
    assert r.status_code == 404 and r.headers.get("X-Mockstore-Source") != "stub"
    assert [x["path"] for x in mockstore_proxy.requests] == ["/api/items/7"]


def test_the_stubs_file_is_loaded(mockstore_proxy):
    r = mockstore_proxy.client.get("/health")
    assert r.json() == {"status": "up"} and r.headers["X-Mockstore-Source"] == "stub"


def test_a_posted_body_is_in_the_spy(mockstore_proxy):
    r = mockstore_proxy.client.post("/v2/pets", json={"name": "rex", "tag": "dog"})
    assert r.status_code in (200, 201) and r.headers["X-Mockstore-Source"] == "state"
    assert mockstore_proxy.client.get("/v2/pets").json()[0]["name"] == "rex"
    sent = mockstore_proxy.requests[0]
    assert sent["method"] == "POST" and '"rex"' in sent["body"] and sent["source"] == "state"


def test_the_virtual_backend_is_reset_between_tests(mockstore_proxy):
    assert mockstore_proxy.client.get("/v2/pets").json() == []


def test_a_whole_mock_with_a_delay(mockstore_proxy):
    name = mockstore_proxy.stub({"name": "slow", "responseDelay": 200, "routes": [
        {"method": "POST", "path": "/orders", "statusCode": 201,
         "defaultResponse": {"body": '{"for": "{{request.body.user}}"}', "headers": {"Content-Type": "application/json"}}}]})
    assert name == "slow"
    r = mockstore_proxy.client.post("/orders", json={"user": "ann"})
    assert (r.status_code, r.json()) == (201, {"for": "ann"}) and r.elapsed.total_seconds() >= 0.2
