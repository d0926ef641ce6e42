"""The vb commands, through click's runner against a real store file."""

from __future__ import annotations

import json

import click
import pytest
import yaml
from click.testing import CliRunner

from mockstore.cli.vb import register
from mockstore.vb import VirtualBackend
from vb_helpers import call


@click.group()
def cli():
    pass


register(cli)


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def run(*args, ok=True):
        out = runner.invoke(cli, list(args))
        assert (out.exit_code == 0) == ok, out.output
        return out.output

    return run


def test_entity_create_then_resources(run, tmp_path):
    run("entity", "create", "users", "--fields", "id:string,name:string,email:email")
    run("entity", "create", "notes", "--fields", "id:integer,text:string!")
    doc = yaml.safe_load((tmp_path / "entities.yaml").read_text())
    assert doc["resources"]["users"]["fields"]["email"] == {"type": "string", "format": "email"}
    assert doc["resources"]["users"]["id"] == "uuid"
    assert "already defines" in run("entity", "create", "users", "--fields", "id:string", ok=False)
    assert "not allowed" in run("entity", "create", "a/b", "--fields", "id:string", ok=False)
    assert "not one of" in run("entity", "create", "x", "--fields", "id:blob", ok=False)
    out = run("resources", "list", "--entities", "entities.yaml")
    assert "users\t/users\tpk=id" in out and "notes" in out
    shown = yaml.safe_load(run("resources", "show", "notes", "--entities", "entities.yaml"))
    assert shown["fields"]["text"] == {"type": "string", "required": True}
    assert "no resource" in run("resources", "show", "nope", "--entities", "entities.yaml", ok=False)
    assert "no resources" in run("resources", "list", ok=False)


def test_seed_snapshot_reset(run, tmp_path):
    run("entity", "create", "notes", "--fields", "id:integer,text:string")
    (tmp_path / "seed.yaml").write_text(yaml.safe_dump({"notes": [{"id": 1, "text": "a"}, {"text": "b"}]}))
    assert "2 rows seeded" in run("seed", "seed.yaml", "--entities", "entities.yaml")
    (tmp_path / "bad.json").write_text(json.dumps({"ghosts": [{}]}))
    assert "unknown resource" in run("seed", "bad.json", "--entities", "entities.yaml", ok=False)

    assert "created (2 rows)" in run("snapshot", "create", "two", "--description", "seeded", "--entities", "entities.yaml")
    assert "two\t2 rows\tseeded" in run("snapshot", "list")
    run("snapshot", "save", "two", "two.json")
    assert "loaded (2 rows)" in run("snapshot", "load", "two.json", "--name", "again")
    assert "not allowed" in run("snapshot", "create", "../evil", "--entities", "entities.yaml", ok=False)

    vb = VirtualBackend.from_options({"mock_entities": "entities.yaml", "mock_vb_sweep": 0}, "mockstore.db", 0)
    call(vb, "DELETE", "/notes/1")
    call(vb, "POST", "/notes", {"text": "c"})
    vb.close()
    run("snapshot", "restore", "again", "--entities", "entities.yaml")
    vb = VirtualBackend.from_options({"mock_entities": "entities.yaml", "mock_vb_sweep": 0}, "mockstore.db", 0)
    assert [n["text"] for n in call(vb, "GET", "/notes")[1]] == ["a", "b"]
    call(vb, "DELETE", "/notes/2")
    vb.close()
    run("reset", "--entities", "entities.yaml")  # back to the seeded state, seed file included
    vb = VirtualBackend.from_options({"mock_entities": "entities.yaml", "mock_vb_sweep": 0}, "mockstore.db", 0)
    assert [n["text"] for n in call(vb, "GET", "/notes")[1]] == ["a", "b"]
    vb.close()
    assert "deleted" in run("snapshot", "delete", "two")
    assert "no snapshot" in run("snapshot", "delete", "two", ok=False)
    assert "no snapshot" in run("snapshot", "restore", "two", "--entities", "entities.yaml", ok=False)


def test_snapshot_commands_without_resources_go_through_control(run, tmp_path, monkeypatch):
    """list, delete, save and load need no --spec: they call the same Control functions as
    the admin API and the mitmproxy commands."""
    from mockstore.control import Control

    run("entity", "create", "notes", "--fields", "id:integer,text:string")
    run("snapshot", "create", "one", "--entities", "entities.yaml")
    called = []
    for name in ("read_snapshots", "snapshot_delete", "snapshot_save", "snapshot_load"):
        def spy(self, *args, _name=name, _real=getattr(Control, name)):
            called.append(_name)
            return _real(self, *args)
        monkeypatch.setattr(Control, name, spy)
    assert "one\t" in run("snapshot", "list")
    run("snapshot", "save", "one", "one.json")
    assert "loaded" in run("snapshot", "load", "one.json", "--name", "two")
    assert "deleted" in run("snapshot", "delete", "one")
    assert "no snapshot named 'one'" in run("snapshot", "delete", "one", ok=False)
    assert "not allowed" in run("snapshot", "save", "../x", "x.json", ok=False)
    assert called == ["read_snapshots", "snapshot_save", "snapshot_load", "snapshot_delete", "snapshot_delete",
                      "snapshot_save"]


def test_snapshot_commands_refuse_a_file_that_is_not_a_store(run, tmp_path):
    """An SQLite file of something else is named for what it is; no tables are added to it."""
    import sqlite3

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("create table things (x)")
    for args in (["list"], ["delete", "x"], ["save", "x", "x.json"]):
        assert "not a mockstore store" in run("snapshot", *args, "--db", str(other), ok=False)
    with sqlite3.connect(other) as conn:
        assert [r[0] for r in conn.execute("select name from sqlite_master")] == ["things"]
    assert "no store at" in run("snapshot", "list", "--db", str(tmp_path / "missing.db"), ok=False)
