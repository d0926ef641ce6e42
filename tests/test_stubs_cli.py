"""`mockstore stub ...` on a real store file: adding, listing, exporting and importing back,
bad stubs refused with the store unchanged, stubs written from recordings, and a change made
by the CLI reaching a running proxy within a second."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import yaml
from click.testing import CliRunner
from conftest import MOCKSTORE, cli_group

from mockstore.cli import stubs as stub_cli
from mockstore.store import connect

SOURCE = "X-Mockstore-Source"

ITEMS = """
mocks:
  - name: items
    protocol: REST
    status: ACTIVE
    responseDelay: 0
    routes:
      - method: GET
        path: /api/items/{id}
        statusCode: 200
        defaultResponse: {body: '{"kind": "default"}', headers: {Content-Type: application/json}}
        conditions:
          - {parameterName: tier, parameterSource: QUERY, operator: EQUALS, expectedValue: gold,
             response: '{"kind": "gold", "id": "{{request.path.id}}"}', statusCode: 200, priority: 10}
"""


def run(*args, input=None):
    result = CliRunner().invoke(cli_group(stub_cli.register), ["stub", *args], input=input, catch_exceptions=False)
    return result


def dump(db) -> list:
    """Every row of the stub tables and the change counter: what 'unchanged' means."""
    conn = connect(db)
    try:
        rows = [conn.execute(f"select * from {t} order by id").fetchall() for t in ("stub_mocks", "stub_routes", "stub_conditions")]
        rows.append(conn.execute("select value from meta where key = 'stubs_version'").fetchall())
        return rows
    finally:
        conn.conn.close()


def test_add_list_show_export_import(tmp_path):
    db = str(tmp_path / "m.db")
    (tmp_path / "items.yaml").write_text(ITEMS)
    r = run("add", "--db", db, str(tmp_path / "items.yaml"))
    assert r.exit_code == 0 and "added mock items" in r.output
    r = run("add", "--db", db, "--name", "ping", "--route", "GET /ping", "--body", '{"ok": true}',
            "--header", "Content-Type: application/json", "--delay", "5")
    assert r.exit_code == 0, r.output
    listed = json.loads(run("list", "--db", db, "--json").output)
    assert [m["name"] for m in listed] == ["items", "ping"]
    items = listed[0]
    assert len(items["id"]) == 36 and items["createdAt"] and items["updatedAt"]
    cond = items["routes"][0]["conditions"][0]
    assert cond["operator"] == "EQUALS" and cond["priority"] == 10 and len(cond["id"]) == 36
    shown = yaml.safe_load(run("show", "--db", db, "items").output)
    assert shown["mocks"][0]["routes"][0]["path"] == "/api/items/{id}"

    exported = run("export", "--db", db, "--format", "json").output
    other = str(tmp_path / "other.db")
    (tmp_path / "all.json").write_text(exported)
    assert run("import", "--db", other, str(tmp_path / "all.json")).exit_code == 0
    assert run("export", "--db", other, "--format", "json").output == exported  # a round trip

    assert "INACTIVE" in run("disable", "--db", db, "items").output
    assert json.loads(run("list", "--db", db, "--json").output)[0]["status"] == "INACTIVE"
    assert "ACTIVE" in run("enable", "--db", db, "items").output
    created = items["createdAt"]
    assert run("import", "--db", db, str(tmp_path / "items.yaml")).exit_code == 0  # replaces, keeps id
    again = json.loads(run("list", "--db", db, "--json").output)[0]
    assert (again["id"], again["createdAt"]) == (items["id"], created)
    assert run("rm", "--db", db, "ping").exit_code == 0
    assert [m["name"] for m in json.loads(run("list", "--db", db, "--json").output)] == ["items"]
    conn = connect(db)
    assert conn.execute("select count(*) from stub_routes").fetchone()[0] == 1  # ping's route went with it
    conn.conn.close()


BAD = {
    "unknown operator": (ITEMS.replace("operator: EQUALS", "operator: LIKE"),
                         ["mock 'items'", "route 'GET /api/items/{id}'", "'operator'", "LIKE"]),
    "bad regex": (ITEMS.replace("operator: EQUALS, expectedValue: gold", "operator: REGEX, expectedValue: '[gold'"),
                  ["mock 'items'", "route 'GET /api/items/{id}'", "'expectedValue'", "regular expression"]),
    "condition without a route": (
        "mocks:\n  - name: loose\n    conditions:\n      - {parameterName: a, parameterSource: QUERY, operator: EQUALS, expectedValue: b}\n",
        ["mock 'loose'", "'conditions'", "route"]),
    "duplicate name in the file": (ITEMS + ITEMS.replace("mocks:\n", ""), ["mock 'items'", "'name'"]),
    "duplicate of a stored name": (ITEMS.replace("name: items", "name: kept"), ["mock 'kept'", "'name'", "already"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_stubs_are_refused_naming_them_and_the_store_is_unchanged(tmp_path, case):
    db = str(tmp_path / "m.db")
    (tmp_path / "kept.yaml").write_text(ITEMS.replace("name: items", "name: kept").replace("/api/items", "/api/kept"))
    assert run("add", "--db", db, str(tmp_path / "kept.yaml")).exit_code == 0
    before = dump(db)
    text, names = BAD[case]
    # a good mock first in the same file: all or nothing, it is not saved either
    good = "mocks:\n  - name: innocent\n    routes: [{method: GET, path: /fine}]\n"
    path = tmp_path / "bad.yaml"
    path.write_text(good + text.replace("mocks:\n", "", 1))
    for verb in ("add", "import"):
        r = run(verb, "--db", db, str(path), *(["--no-replace"] if verb == "import" else []))
        assert r.exit_code != 0, (verb, r.output)
        assert all(n in r.output for n in names), (verb, r.output)
        if case != "duplicate of a stored name":
            assert str(path) in r.output
        assert dump(db) == before


def test_from_endpoint_writes_an_editable_stub_from_recordings(proxy, backend, tmp_path):
    _, api = backend()
    p = proxy(api, mode="learn")
    with p.client(trust_env=False) as c:
        for uid in (1, 2, 1, 1000):
            c.get(f"/users/{uid}")
    p.stop()
    out = tmp_path / "users.yaml"
    r = run("from-endpoint", "--db", str(p.db), "GET /users/{id}", "-o", str(out), "--add")
    assert r.exit_code == 0, r.output
    mock = yaml.safe_load(out.read_text())["mocks"][0]
    route = mock["routes"][0]
    assert route["path"] == "/users/{id}" and json.loads(route["defaultResponse"]["body"])["id"] == 1  # the last 2xx
    conds = {c["expectedValue"]: c for c in route["conditions"]}
    assert set(conds) == {"1", "2", "1000"}
    assert conds["1000"]["statusCode"] == 404 and json.loads(conds["1"]["response"])["id"] == 1
    assert all(c["parameterSource"] == "PATH" and c["operator"] == "EQUALS" for c in conds.values())
    mocked = proxy(api, mode="mock", db=p.db)
    with mocked.client(trust_env=False) as c:
        r = c.get("/users/1000")
        assert (r.status_code, r.headers[SOURCE]) == (404, "stub")
    bad = run("from-endpoint", "--db", str(p.db), "GET /nothing/{x}")
    assert bad.exit_code != 0 and "no recordings of GET /nothing/{x}" in bad.output


def test_a_cli_change_reaches_a_running_proxy_within_a_second(proxy, backend, tmp_path):
    _, api = backend()
    p = proxy(api, mode="learn")
    (tmp_path / "items.yaml").write_text(ITEMS)
    with p.client(trust_env=False) as c:
        assert c.get("/api/items/3").status_code == 404  # the real API has none
        for args, check in (
            (["add", str(tmp_path / "items.yaml")], lambda r: r.json() == {"kind": "gold", "id": "3"}),
            (["disable", "items"], lambda r: r.status_code == 404 and SOURCE not in r.headers),
            (["enable", "items"], lambda r: r.headers.get(SOURCE) == "stub"),
            (["rm", "items"], lambda r: r.status_code == 404 and SOURCE not in r.headers),
        ):
            subprocess.run([MOCKSTORE, "stub", *args, "--db", str(p.db)], check=True, capture_output=True)
            done = time.monotonic()
            while not check(c.get("/api/items/3", params={"tier": "gold"})) and time.monotonic() - done < 1.0:
                time.sleep(0.02)
            assert check(c.get("/api/items/3", params={"tier": "gold"})), args
