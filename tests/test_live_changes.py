"""Changes made by the command line on the store reach a proxy already running on it, within
about a second, and stay: chaos rules (add, disable, enable, rm) and their counters, and the
virtual backend's snapshot restore. Real processes: tests/backend.py, `mitmdump -s
addons/mockstore.py` and `mockstore serve --workers 2` (each request on a new connection, so
the kernel spreads them over both workers)."""

from __future__ import annotations

import json
import sys
import time

import httpx
import pytest
import yaml
from click.testing import CliRunner
from conftest import ROOT, free_port
from live_helpers import Served, eventually, served, statuses  # noqa: F401 (served: a fixture)

from mockstore.cli import cli



def run_cli(*args: str) -> str:
    out = CliRunner().invoke(cli, list(args))
    assert out.exit_code == 0, out.output
    return out.output




@pytest.fixture
def api(procs):
    port = free_port()
    procs([sys.executable, str(ROOT / "tests" / "backend.py"), str(port)], port)
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("runner", ["mitmdump", "serve"])
def test_cli_chaos_changes_reach_a_running_proxy(runner, api, served):
    p = served(runner, upstream=api)
    db, url = p.db, p.url
    assert statuses(url, "/ok/a") == {200}
    run_cli("chaos", "add", "--db", str(db), "--id", "down", "--template", "/ok/*", "--effect", "error",
            "--status", "503")
    eventually(lambda: statuses(url, "/ok/a") == {503}, "a rule added by the CLI fires in every worker")
    run_cli("chaos", "disable", "--db", str(db))
    eventually(lambda: statuses(url, "/ok/a") == {200}, "chaos disabled by the CLI stops in every worker")
    run_cli("chaos", "enable", "--db", str(db))
    eventually(lambda: statuses(url, "/ok/a") == {503}, "chaos enabled again fires again")
    run_cli("chaos", "disable", "down", "--db", str(db))
    eventually(lambda: statuses(url, "/ok/a") == {200}, "one rule switched off by the CLI")
    run_cli("chaos", "enable", "down", "--db", str(db))
    eventually(lambda: statuses(url, "/ok/a") == {503}, "one rule switched on again")
    # counters reach the store without more traffic, and `chaos list` shows them
    sent = 16 * 2  # the 503s seen since the rule came back, at least
    counted = eventually(
        lambda: [r["applied"] for r in json.loads(run_cli("chaos", "list", "--db", str(db), "--json"))["rules"]
                 if r["applied"] >= sent],
        "the applied counter in `chaos list`",
    )
    assert counted
    run_cli("chaos", "rm", "--db", str(db), "down")
    eventually(lambda: statuses(url, "/ok/a") == {200}, "a rule removed by the CLI stops firing")
    # and the proxies' own writes (counters, the next persist) do not bring it back
    time.sleep(1.5)
    assert statuses(url, "/ok/a") == {200}
    assert json.loads(run_cli("chaos", "list", "--db", str(db), "--json"))["rules"] == []


@pytest.mark.parametrize("runner", ["mitmdump", "serve"])
def test_cli_snapshot_restore_reaches_a_running_proxy(runner, tmp_path, served):
    """mitmdump with JSON storage: the proxy keeps the rows in memory and saves the file after
    each write, so without a reload it would answer from the old rows and write them back.
    The workers share the rows in SQLite (JSON storage is one process's)."""
    entities = tmp_path / "entities.yaml"
    entities.write_text(yaml.safe_dump({"resources": {"notes": {"id": "integer", "fields": {"text": "string"}}}}))
    storage = "json" if runner == "mitmdump" else "sqlite"
    p = served(runner, options={"mock_entities": entities, "mock_vb_storage": storage, "mock_mode": "mock"})
    url = p.url
    src = ["--entities", str(entities), "--storage", storage, "--db", str(p.db)]

    def notes() -> list[str]:
        with httpx.Client(base_url=url, timeout=10, trust_env=False) as c:
            r = c.get("/notes")
            assert r.status_code == 200, r.text
            body = r.json()
            rows = body if isinstance(body, list) else next(v for v in body.values() if isinstance(v, list))
            return sorted(n["text"] for n in rows if n.get("text") in ("a", "b", "c"))

    with httpx.Client(base_url=url, timeout=10, trust_env=False) as c:
        assert c.post("/notes", json={"text": "a"}).status_code == 201
    run_cli("snapshot", "create", "one", *src)
    with httpx.Client(base_url=url, timeout=10, trust_env=False) as c:
        assert c.post("/notes", json={"text": "b"}).status_code == 201
    eventually(lambda: all(notes() == ["a", "b"] for _ in range(8)), "both notes, in every worker")
    run_cli("snapshot", "restore", "one", *src)
    eventually(lambda: all(notes() == ["a"] for _ in range(8)), "the restored rows, in every worker")
    with httpx.Client(base_url=url, timeout=10, trust_env=False) as c:
        assert c.post("/notes", json={"text": "c"}).status_code == 201
    # the write after the restore is on the restored rows, not on the ones from before
    eventually(lambda: all(notes() == ["a", "c"] for _ in range(8)), "a write after the restore")


@pytest.mark.parametrize("runner", ["mitmdump", "serve"])
def test_cli_mode_reaches_a_running_proxy(runner, api, served):
    p = served(runner, upstream=api)

    def sources() -> set:
        out = set()
        for _ in range(16):
            with httpx.Client(base_url=p.url, timeout=10, trust_env=False) as c:
                out.add(c.get("/users/2").headers.get("x-mockstore-source"))
        return out

    assert sources() == {None}  # learn: forwarded
    run_cli("mode", "mock", "--db", str(p.db))
    eventually(lambda: None not in sources(), "mock mode, in every worker")
    assert run_cli("mode", "--db", str(p.db)).strip() == "mock"
    run_cli("mode", "learn", "--db", str(p.db))
    eventually(lambda: sources() == {None}, "learn mode again, in every worker")
