"""The command line as a thin adapter over the library's one surface (`mockstore.control`),
against real `mockstore serve` processes and real store files: `serve --stubs`, `mode` while a
proxy runs, and `import` into a store a proxy is learning into."""

from __future__ import annotations

import os
import signal
import sqlite3

import httpx
import pytest
import yaml
from click.testing import CliRunner
from conftest import MOCKSTORE, free_port
from live_helpers import eventually, served  # noqa: F401 (served: a fixture)

from mockstore.cli import cli


def run_cli(*args: str, ok: bool = True) -> str:
    out = CliRunner().invoke(cli, list(args))
    assert (out.exit_code == 0) == ok, out.output
    return out.output


def test_serve_answers_with_the_stubs_file_given_by_flag(procs, tmp_path, confdir):
    stubs = tmp_path / "stubs.yaml"
    stubs.write_text(yaml.safe_dump({"mocks": [{"name": "ping", "routes": [{
        "method": "GET", "path": "/ping", "statusCode": 200,
        "defaultResponse": {"body": {"pong": True}, "headers": {"Content-Type": "application/json"}}}]}]}))
    port = free_port()
    procs([MOCKSTORE, "serve", "--listen-host", "127.0.0.1", "--listen-port", str(port), "--db", str(tmp_path / "m.db"),
           "--confdir", str(confdir), "--mode", "mock", "--upstream", "http://127.0.0.1:9", "--stubs", str(stubs),
           "--set", "mock_admin=off"], port)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, trust_env=False) as c:
        r = c.get("/ping")
    assert r.json() == {"pong": True} and r.headers["x-mockstore-source"] == "stub"
    assert "ping" in run_cli("stub", "list", "--db", str(tmp_path / "m.db"))  # saved into the store


def test_serve_refuses_a_stubs_path_that_does_not_exist(tmp_path):
    out = run_cli("serve", "--db", str(tmp_path / "m.db"), "--stubs", str(tmp_path / "nope.yaml"), ok=False)
    assert "--stubs" in out and "does not exist" in out
    assert not (tmp_path / "m.db").exists()


def _har(path, n: int) -> None:
    from mockstore.exchange import Exchange, Request, Response
    from mockstore.har import write_har

    with open(path, "w", encoding="utf-8") as f:
        write_har([Exchange(Request("GET", "api.example.com", f"/items/{i}", [], scheme="https", port=443),
                            Response.make_json(200, {"id": i}), started=1_700_000_000 + i, duration_ms=5)
                   for i in range(n)], f)


def _counted_and_recorded(db) -> tuple[int, int]:
    """What the stored model counted, and how many exchanges the store holds."""
    with sqlite3.connect(db) as conn:
        counted = conn.execute("select coalesce(sum(count), 0) from endpoints").fetchone()[0]
        return counted, conn.execute("select count(*) from exchanges").fetchone()[0]


def _stored_not_counted(p, path: str) -> bool:
    """Send a request through the proxy; freeze the proxy (SIGSTOP) once its exchange is stored
    and before the model that counted it is persisted (the counted mark of its slot is below
    its id). False, and the proxy running again, if the persist came first."""
    with httpx.Client(base_url=p.url, timeout=10, trust_env=False) as c:
        assert c.get(path).status_code == 200
    with sqlite3.connect(p.db) as conn:
        row = eventually(lambda: conn.execute("select id from exchanges where path = ?", [path]).fetchone(),
                         "the exchange stored")
        os.kill(p.proc.pid, signal.SIGSTOP)
        mark = conn.execute("select value from meta where key = 'counted.0'").fetchone()
    if mark is None or int(mark[0]) < row[0]:
        return True
    os.kill(p.proc.pid, signal.SIGCONT)
    return False


@pytest.mark.parametrize("then", ["resumed", "killed"])
def test_import_while_a_proxy_learns_into_the_same_store(then, backend, served, tmp_path):
    """The import's exchanges and the proxy's are each counted once, whichever persists last
    and even if the proxy is killed before it persists: the import has a slot of its own, so
    the counted mark of the proxy's slot (what a restart learns again after) is the proxy's alone."""
    _, api = backend()
    p = served("serve", upstream=api, workers=1)
    with httpx.Client(base_url=p.url, timeout=10, trust_env=False) as c:
        assert c.get("/users/1").status_code == 200
    for i in range(2, 30):
        if _stored_not_counted(p, f"/users/{i}"):
            break
    else:
        pytest.fail("the proxy persisted each request before its exchange could be seen stored")
    _har(tmp_path / "in.har", 40)
    try:
        assert "imported 40 exchanges" in run_cli("import", str(tmp_path / "in.har"), "--db", str(p.db))
    finally:
        os.kill(p.proc.pid, signal.SIGCONT if then == "resumed" else signal.SIGKILL)
    p.stop()
    served("serve", upstream=api, workers=1).stop()  # a restart learns again what was stored, not counted
    counted, recorded = _counted_and_recorded(p.db)
    assert counted == recorded


def test_mode_says_what_the_running_proxy_uses_beside_what_is_stored(backend, served):
    import json

    _, api = backend()
    first = served("serve", upstream=api, workers=1)
    run_cli("mode", "learn", "--db", str(first.db))  # stored on the store, followed by the proxy running
    first.stop()
    p = served("serve", upstream=api, workers=2, admin="127.0.0.1:0", options={"mock_mode": "mock"})
    admin, _ = p.admin_url()
    out = run_cli("mode", "--db", str(p.db))
    assert out.startswith("mock (the proxy running on this store") and "stored: learn" in out
    assert json.loads(run_cli("mode", "--json", "--db", str(p.db))) == {"stored": "learn", "running": "mock",
                                                                        "admin": admin}
    run_cli("mode", "failover", "--db", str(p.db))
    eventually(lambda: run_cli("mode", "--db", str(p.db)) == "failover\n", "the switch, as the proxy says it")
    p.stop()
    assert json.loads(run_cli("mode", "--json", "--db", str(p.db))) == {"stored": "failover", "running": None,
                                                                        "admin": None}


ADAPTERS = ["mockstore/cli/__init__.py", "mockstore/cli/chaos.py", "mockstore/cli/drift.py", "mockstore/cli/files.py",
            "mockstore/cli/scenarios.py", "mockstore/cli/stubs.py", "mockstore/cli/vb.py", "mockstore/admin/api.py"]


@pytest.mark.parametrize("path", ADAPTERS)
def test_the_adapters_hold_no_sql_and_read_no_store_themselves(path):
    """The command line and the admin API call the library (`mockstore.control`, or the module
    that owns what they touch); SQL, connections and models are the library's."""
    from conftest import ROOT

    text = (ROOT / path).read_text()
    for word in ("execute(", ".query(", "db[", "conn.", "Model.load", "sqlite3", "connect("):
        assert word not in text, f"{path}: {word}"


def test_the_controls_the_adapters_call(tmp_path):
    """What moved behind Control: rewind, an endpoint with its drift statistics, the import's
    summary; and an entity added to an entity file (mockstore.vb.entities)."""
    import yaml as yaml_

    from mockstore.control import Control, ControlError
    from mockstore.sessions import read_rewinds
    from mockstore.store import Store
    from mockstore.vb.entities import add_entity
    from mockstore.vb.model import ModelError

    _har(tmp_path / "in.har", 3)
    c = Control.open(Store(tmp_path / "m.db"))
    try:
        assert c.import_file(str(tmp_path / "in.har")) == {"imported": 3, "learned": [
            {"method": "GET", "host": "api.example.com", "template": "/items/{id}", "added": 3}]}
        with pytest.raises(ControlError, match="neither a HAR file"):
            c.import_file(str(tmp_path / "m.db"))
        assert c.rewind() and read_rewinds(c.store.reader()) == 1
        detail = c.endpoint("GET /items/{id}", with_drift=True)
        assert detail["count"] == 3 and detail["drift"]["endpoint"] == "GET api.example.com/items/{id}"
        assert "drift" not in c.endpoint("GET /items/{id}")
    finally:
        c.close()

    add_entity(tmp_path / "e.yaml", "notes", "id:integer,text:string")
    assert yaml_.safe_load((tmp_path / "e.yaml").read_text())["resources"]["notes"]["fields"]["text"] == {"type": "string"}
    with pytest.raises(ModelError, match="already defines"):
        add_entity(tmp_path / "e.yaml", "notes", "id:integer")


def test_two_imports_into_one_store_take_turns(tmp_path):
    """Imports share a worker slot, so two at once would give their exchanges the same ids
    (the store keeps one row per id): the second waits for the first, says so, and each
    reports only what it learned."""
    import subprocess
    import time

    from mockstore.imports import one_at_a_time
    from mockstore.store import Store

    db = tmp_path / "m.db"
    for name in ("a", "b"):  # the same times in both: the same ids, were they not taken in turn
        from mockstore.exchange import Exchange, Request, Response
        from mockstore.har import write_har

        with open(tmp_path / f"{name}.har", "w", encoding="utf-8") as f:
            write_har([Exchange(Request("GET", "api.example.com", f"/{name}/{i}", [], scheme="https", port=443),
                                Response.make_json(200, {"id": i}), started=1_700_000_000 + i, duration_ms=5)
                       for i in range(300)], f)
    store = Store(db)
    outs, procs = [], []
    with one_at_a_time(store):  # an import running: both wait
        for name in ("a", "b"):
            out = tmp_path / f"{name}.out"
            outs.append(out)
            with open(out, "w") as f:
                procs.append(subprocess.Popen([MOCKSTORE, "import", str(tmp_path / f"{name}.har"), "--db", str(db)],
                                              stdout=f, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 30
        while not all("waiting for it to end" in o.read_text() for o in outs):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), [o.read_text() for o in outs]
            time.sleep(0.1)
    store.close()
    for p in procs:
        assert p.wait(timeout=60) == 0
    for name, out in zip("ab", outs):
        text = out.read_text()
        assert "imported 300 exchanges" in text and f"/{name}/{{id}}  (+300)" in text, text
        assert f"/{'b' if name == 'a' else 'a'}/" not in text.split("endpoints learned:")[1], text
    assert _counted_and_recorded(db) == (600, 600)
    assert not list(tmp_path.glob("*.lock"))
