"""The stub model and its matching, without a proxy: validation messages, the index with a
thousand stubs, routes' precedence, JSON paths, comparisons, templates, the store's rows."""

from __future__ import annotations

import json

import pytest

from mockstore import stubs
from mockstore.exchange import Request
from mockstore.stubmatch import StubIndex


def mock(name, routes, **kw):
    return {"name": name, "routes": routes, **kw}


def route(method, path, body="", conditions=(), **kw):
    return {"method": method, "path": path, "defaultResponse": {"body": body}, "conditions": list(conditions), **kw}


def index(*mocks) -> StubIndex:
    return StubIndex(stubs.parse({"mocks": list(mocks)}, "t.yaml"))


def test_a_thousand_stubs_each_answer_their_own_path():
    idx = index(*[mock(f"m{i}", [route("GET", f"/svc{i}/items/{{id}}", f"svc{i} {{{{request.path.id}}}}")])
                  for i in range(1000)])
    assert idx.count == 1000
    for i in (0, 1, 500, 999):
        assert idx.answer(Request("GET", "h", f"/svc{i}/items/x{i}")).response.body == f"svc{i} x{i}".encode()
    assert idx.answer(Request("GET", "h", "/svc1000/items/1")) is None
    assert idx.answer(Request("POST", "h", "/svc1/items/1")) is None
    assert idx.answer(Request("GET", "h", "/svc1/items")) is None


def test_literal_segments_win_over_parameters_then_declaration_order():
    idx = index(mock("a", [route("GET", "/users/{id}", "param")]),
                mock("b", [route("GET", "/users/me", "literal")]),
                mock("c", [route("GET", "/users/{other}", "second")]))
    assert idx.answer(Request("GET", "h", "/users/me")).response.body == b"literal"
    assert idx.answer(Request("GET", "h", "/users/7")).response.body == b"param"
    inactive = index(mock("a", [route("GET", "/users/{id}", "param")], status="INACTIVE"),
                     mock("c", [route("GET", "/users/{other}", "second")]))
    assert inactive.answer(Request("GET", "h", "/users/7")).response.body == b"second"
    assert not index(mock("a", [route("GET", "/x")], status="INACTIVE"))  # nothing ACTIVE: falsy
    assert not index(mock("g", [route("POST", "/x")], protocol="GRPC"))  # accepted, not served yet


def test_json_paths():
    assert stubs.json_path("user.age") == ("user", "age")
    assert stubs.json_path("items[0].sku") == ("items", 0, "sku")
    assert stubs.json_path("$.a[2][1]") == ("a", 2, 1)
    for bad in ("", "a..b", "a[x]"):
        with pytest.raises(ValueError):
            stubs.json_path(bad)


@pytest.mark.parametrize("op,expected,value,hit", [
    ("GREATER_THAN", "10", 11, True), ("GREATER_THAN", "10", "9", False), ("GREATER_THAN", "10", 10.5, True),
    ("LESS_THAN", "2026-01-01", "2025-12-31", True), ("LESS_THAN", "2026-01-01T00:00:00Z", "2026-01-01T01:00:00+02:00", True),
    ("LESS_THAN", "2026-01-01", "not a date", False), ("GREATER_THAN", "10", "2026-01-01", False),
    ("EQUALS", "true", True, True), ("EQUALS", "null", None, True), ("EQUALS", "3", 3.0, True),
    ("CONTAINS", "b", ["a", "b"], True), ("NOT_CONTAINS", "c", ["a", "b"], True),
    ("REGEX", r"^\d{3}$", 123, True), ("REGEX", r"^\d{3}$", 1234, False),
])
def test_body_values_compare_as_json_writes_them(op, expected, value, hit):
    idx = index(mock("m", [route("POST", "/x", "miss", [
        {"parameterName": "v", "parameterSource": "BODY", "operator": op, "expectedValue": expected, "response": "hit"}])]))
    req = Request("POST", "h", "/x", headers=[("Content-Type", "application/json")], body=json.dumps({"v": value}).encode())
    assert idx.answer(req).response.body == (b"hit" if hit else b"miss")


def test_a_json_template_stays_json_whatever_the_values():
    idx = index(mock("m", [route("POST", "/x", {"echo": "{{request.body.text}}", "q": "say {{request.query.q}}",
                                                 "n": "{{request.body.n}}", "raw": "{{unknown}}"})]))
    nasty = 'quote " backslash \\ newline \n brace }}'
    req = Request("POST", "h", "/x", query=[("q", '"hi"')], headers=[("content-type", "application/json")],
                  body=json.dumps({"text": nasty, "n": [1, 2]}).encode())
    data = json.loads(idx.answer(req).response.body)
    assert data == {"echo": nasty, "q": 'say "hi"', "n": [1, 2], "raw": "{{unknown}}"}


@pytest.mark.parametrize("doc,fragment", [
    ({"mocks": [mock("m", [route("GET", "/a", conditions=[{"parameterName": "q", "parameterSource": "QUERY",
                                                          "operator": "LIKE", "expectedValue": "x"}])])]},
     "t.yaml: mock 'm': route 'GET /a': condition #1: field 'operator' is unknown: 'LIKE'"),
    ({"mocks": [mock("m", [route("GET", "/a", conditions=[{"parameterName": "q", "parameterSource": "QUERY",
                                                          "operator": "REGEX", "expectedValue": "a("}])])]},
     "t.yaml: mock 'm': route 'GET /a': condition #1: field 'expectedValue' is not a valid regular expression"),
    ({"mocks": [{"name": "m", "conditions": []}]}, "t.yaml: mock 'm': field 'conditions' is outside any route"),
    ({"conditions": [{"parameterName": "q"}]}, "t.yaml: field 'conditions' is outside any route"),
    ({"mocks": [mock("m", []), mock("m", [])]}, "t.yaml: mock 'm': field 'name' is used by two mocks"),
    ({"mocks": [mock("m", [route("GET", "/a/{id}", conditions=[{"parameterName": "nope", "parameterSource": "PATH",
                                                               "operator": "EQUALS", "expectedValue": "1"}])])]},
     "field 'parameterName' names no parameter of the route's path: 'nope' (it has: id)"),
    ({"mocks": [mock("m", [route("GET", "/a", conditions=[{"parameterName": "q", "parameterSource": "COOKIE",
                                                          "operator": "EQUALS", "expectedValue": "1"}])])]},
     "field 'parameterSource' is unknown: 'COOKIE'"),
    ({"mocks": [mock("m", [route("GET", "/a", conditions=[{"parameterName": "q", "parameterSource": "QUERY",
                                                          "operator": "GREATER_THAN", "expectedValue": "big"}])])]},
     "field 'expectedValue' must be a number or an ISO date for GREATER_THAN"),
    ({"mocks": [mock("m", [route("FETCH", "/a")])]}, "t.yaml: mock 'm': route 'FETCH /a': field 'method'"),
    ({"mocks": [mock("m", [route("GET", "/a/{id")])]}, "field 'path' has a segment '{id'"),
])
def test_bad_stubs_name_what_is_wrong(doc, fragment):
    with pytest.raises(stubs.StubError) as e:
        stubs.parse(doc, "t.yaml")
    assert fragment in str(e.value)


def test_the_stored_rows_and_the_counter(store):
    db = store.reader()
    assert stubs.version(db) == 0
    saved = stubs.save(db, stubs.parse({"mocks": [mock("m", [route("GET", "/a/{id}", conditions=[
        {"parameterName": "id", "parameterSource": "PATH", "operator": "EQUALS", "expectedValue": "1", "priority": 2}])])]}))
    assert stubs.version(db) == 1
    (m,) = stubs.load(db)
    assert m.id == saved[0].id and len(m.id) == 36 and m.created_at.endswith("Z")
    assert m.routes[0].conditions[0].priority == 2
    indexes = {r[0] for r in db.execute("select name from sqlite_master where type = 'index' and name like 'stub_%'")}
    assert indexes == {"stub_mocks_name", "stub_mocks_status", "stub_routes_mock", "stub_conditions_route"}
    with pytest.raises(stubs.StubError, match="already used"):
        stubs.save(db, stubs.parse({"mocks": [mock("m", [])]}))
    assert stubs.version(db) == 1  # a refused save changes nothing, the counter included
    stubs.update(db, "m", response_delay=250)
    assert stubs.load(db)[0].response_delay == 250 and stubs.version(db) == 2
    stubs.remove(db, m.id)
    assert stubs.load(db) == [] and db.execute("select count(*) from stub_conditions").fetchone()[0] == 0


def test_a_stubs_file_is_written_when_its_content_changes_not_at_every_start(store, tmp_path):
    from mockstore.stubwatch import StubWatch

    path = tmp_path / "s.yaml"
    path.write_text("mocks: [{name: m, routes: [{method: GET, path: /a, defaultResponse: {body: one}}]}]\n")
    first = StubWatch(store, str(path))
    assert first.index.answer(Request("GET", "h", "/a")).response.body == b"one"
    stubs.update(store.reader(), "m", status="INACTIVE")  # the CLI, or a scenario
    second = StubWatch(store, str(path))  # another worker, or a restart: the file is as it was
    assert second.index is None and [m.status for m in second.mocks] == ["INACTIVE"]
    path.write_text("mocks: [{name: m, routes: [{method: GET, path: /a, defaultResponse: {body: two}}]}]\n")
    import os

    os.utime(path, (1, 1))  # a changed mtime, whatever the clock's resolution
    assert second.poll()
    assert second.index.answer(Request("GET", "h", "/a")).response.body == b"two"
    other = tmp_path / "other.yaml"
    other.write_text("mocks: [{name: o, routes: [{method: GET, path: /o}]}]\n")
    third = StubWatch(store, str(other))  # a proxy with another file answers only with its own
    assert [m.name for m in third.mocks] == ["o"] and third.index.answer(Request("GET", "h", "/a")) is None
