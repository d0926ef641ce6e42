"""The command line as a thin adapter over the library's one surface (`mockstore.control`),
against real `mockstore serve` processes and real store files: `serve --stubs`, `mode` while a
proxy runs, and `import` into a store a proxy is learning into."""

from __future__ import annotations

import httpx
import yaml
from click.testing import CliRunner
from conftest import MOCKSTORE, free_port

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
