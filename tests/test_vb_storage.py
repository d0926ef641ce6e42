"""The virtual backend's storage: tables made before any request, ids never handed out
twice, ids outside their declared format refused, seed files checked like HTTP writes,
and writes that wait for (or refuse politely under) another writer's lock."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
import yaml

from mockstore.vb import VirtualBackend
from vb_helpers import call

SPEC = "/work/shared/specs/v3.0-petstore-expanded.yaml"
STORAGES = ["sqlite", "json", "memory"]

ENTITIES = {
    "resources": {
        "users": {"fields": {"id": "integer", "email": {"type": "string", "format": "email", "unique": True}}},
        "notes": {"fields": {"id": "integer", "text": "string!",
                             "user_id": {"type": "integer", "references": "users.id"}}},
        "tickets": {"id": "TCK-{increment:04}", "fields": {"id": "string", "title": "string"}},
        "files": {"id": "uuid", "fields": {"id": "string", "name": "string"}},
        "tokens": {"fields": {"id": "integer", "created_at": "string"}},
    },
    "aging": [{"resource": "tokens", "field": "created_at", "max_age": "1h", "action": "delete"}],
}


@pytest.fixture
def entities(tmp_path):
    p = tmp_path / "entities.yaml"
    p.write_text(yaml.safe_dump(ENTITIES))
    return str(p)


def open_vb(tmp_path, storage="sqlite", **opts):
    base = {"mock_vb_storage": storage, "mock_vb_sweep": 0,
            "mock_vb_file": str(tmp_path / "vb.json") if storage == "json" else ""}
    return VirtualBackend.from_options({**base, **opts}, str(tmp_path / "s.db"), 1)


# --- the first request to a resource fails ------------------------------------------------


@pytest.mark.parametrize("storage", STORAGES)
def test_a_first_404_leaves_the_resource_working(tmp_path, storage):
    """A 404 as the very first request once rolled back the table it had just created,
    while the table stayed cached as made: every request after that was a 500."""
    vb = open_vb(tmp_path, storage, mock_spec=SPEC)
    assert call(vb, "GET", "/v2/pets/1")[0] == 404
    assert call(vb, "DELETE", "/v2/pets/7")[0] == 404
    status, body, _ = call(vb, "POST", "/v2/pets", {"name": "rex"})
    assert status == 201, body
    assert call(vb, "GET", f"/v2/pets/{body['id']}")[1]["name"] == "rex"
    assert [p["name"] for p in call(vb, "GET", "/v2/pets")[1]] == ["rex"]
    vb.close()
    vb = open_vb(tmp_path, storage, mock_spec=SPEC)  # and it was committed
    if storage != "memory":
        assert [p["name"] for p in call(vb, "GET", "/v2/pets")[1]] == ["rex"]
    vb.close()


def test_tables_exist_when_the_backend_opens(tmp_path):
    vb = open_vb(tmp_path, mock_spec=SPEC)
    vb.close()
    conn = sqlite3.connect(tmp_path / "s.db")
    names = {r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")}
    conn.close()
    assert "vb_marks" in names and any(n.startswith("vb_r_pets_") for n in names)


# --- ids are never handed out twice -------------------------------------------------------


@pytest.mark.parametrize("storage", STORAGES)
def test_ids_are_not_reused_after_a_delete(tmp_path, storage, entities):
    vb = open_vb(tmp_path, storage, mock_entities=entities)
    ids = [call(vb, "POST", "/users", {"email": f"u{i}@x.io"})[1]["id"] for i in range(3)]
    assert ids == [1, 2, 3]
    assert call(vb, "DELETE", "/users/3")[0] == 204
    assert call(vb, "POST", "/users", {"email": "d@x.io"})[1]["id"] == 4
    tickets = [call(vb, "POST", "/tickets", {"title": t})[1]["id"] for t in "ab"]
    assert tickets == ["TCK-0001", "TCK-0002"]
    assert call(vb, "DELETE", "/tickets/TCK-0002")[0] == 204
    assert call(vb, "POST", "/tickets", {"title": "c"})[1]["id"] == "TCK-0003"
    # a client's own id counts too once it is gone
    assert call(vb, "POST", "/users", {"id": 50, "email": "own@x.io"})[0] == 201
    assert call(vb, "DELETE", "/users/50")[0] == 204
    assert call(vb, "DELETE", "/users/4")[0] == 204
    assert call(vb, "POST", "/users", {"email": "e@x.io"})[1]["id"] == 51
    vb.close()
    if storage == "memory":
        return
    vb = open_vb(tmp_path, storage, mock_entities=entities)  # the mark outlives the process
    assert call(vb, "DELETE", "/users/51")[0] == 204
    assert call(vb, "POST", "/users", {"email": "f@x.io"})[1]["id"] == 52
    vb.reset()  # back to the seeded state: the counters start again, as they did
    assert call(vb, "POST", "/users", {"email": "g@x.io"})[1]["id"] == 1
    vb.close()


@pytest.mark.parametrize("storage", STORAGES)
def test_ids_are_not_reused_after_aging(tmp_path, storage, entities):
    vb = open_vb(tmp_path, storage, mock_entities=entities)
    now = dt.datetime.now(dt.timezone.utc)
    new, old = now.isoformat(), (now - dt.timedelta(hours=2)).isoformat()
    assert call(vb, "POST", "/tokens", {"created_at": new})[1]["id"] == 1
    assert call(vb, "POST", "/tokens", {"created_at": old})[1]["id"] == 2
    assert [t["id"] for t in call(vb, "GET", "/tokens")[1]] == [1]  # 2 aged out on read
    assert call(vb, "POST", "/tokens", {"created_at": old})[1]["id"] == 3
    assert vb.sweep(now=time.time() + 60) == 1  # and by the sweep
    assert call(vb, "POST", "/tokens", {"created_at": new})[1]["id"] == 4
    vb.close()


def test_a_session_has_its_own_counters(tmp_path, entities):
    vb = open_vb(tmp_path, mock_entities=entities, mock_vb_sessions="X-Session")
    alice = [("X-Session", "alice")]
    assert call(vb, "POST", "/users", {"email": "a@x.io"}, headers=alice)[1]["id"] == 1
    assert call(vb, "DELETE", "/users/1", headers=alice)[0] == 204
    assert call(vb, "POST", "/users", {"email": "b@x.io"}, headers=alice)[1]["id"] == 2
    assert call(vb, "POST", "/users", {"email": "c@x.io"})[1]["id"] == 1  # the shared data's own
    vb.close()


# --- ids outside their declared format ---------------------------------------------------


def test_ids_beyond_their_format_are_refused(tmp_path, entities):
    vb = open_vb(tmp_path, mock_spec=SPEC)
    status, body, _ = call(vb, "POST", "/v2/pets", {"id": 2**63, "name": "big"})  # format: int64
    assert (status, body["field"]) == (422, "id") and "64-bit" in body["error"]
    assert call(vb, "POST", "/v2/pets", {"id": 2**63 - 1, "name": "max"})[0] == 201
    assert [p["name"] for p in call(vb, "GET", "/v2/pets")[1]] == ["max"]
    vb.close()

    vb = open_vb(_sub(tmp_path), mock_entities=entities)
    for path, body in [("/users", {"id": 2**64, "email": "a@x.io"}),  # integer: no format, still int64
                       ("/users", {"id": -(2**63) - 1, "email": "b@x.io"}),
                       ("/tickets", {"id": "nope", "title": "t"}),  # not the declared pattern
                       ("/tickets", {"id": "TCK-" + "9" * 30, "title": "t"}),
                       ("/files", {"id": "not-a-uuid", "name": "f"})]:
        status, out, _ = call(vb, "POST", path, body)
        assert (status, out["field"]) == (422, "id"), (path, out)
    assert call(vb, "GET", "/users")[1] == [] and call(vb, "GET", "/tickets")[1] == []
    assert call(vb, "POST", "/tickets", {"id": "TCK-0042", "title": "t"})[0] == 201
    assert call(vb, "POST", "/tickets", {"title": "next"})[1]["id"] == "TCK-0043"
    vb.close()


def _sub(tmp_path):
    p = tmp_path / "other"
    p.mkdir(exist_ok=True)
    return p


# --- seed files are checked like HTTP writes ---------------------------------------------


def _mockstore(*args, cwd):
    return subprocess.run([sys.executable, "-m", "mockstore", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("storage", ["sqlite", "json"])
def test_seed_validates_rows_and_keeps_nothing_of_a_bad_file(tmp_path, storage, entities):
    common = ["--entities", entities, "--db", str(tmp_path / "s.db"), "--storage", storage,
              "--vb-file", str(tmp_path / "vb.json")]
    good = tmp_path / "good.yaml"
    # children before parents in the file: seeded parents first, as the references need
    good.write_text(yaml.safe_dump({"notes": [{"id": 1, "text": "hi", "user_id": 1}],
                                    "users": [{"id": 1, "email": "a@x.io"}]}, sort_keys=False))
    out = _mockstore("seed", str(good), *common, cwd=tmp_path)
    assert out.returncode == 0 and "2 rows seeded" in out.stdout, out.stderr

    def state():
        vb = open_vb(tmp_path, storage, mock_entities=entities)
        data = vb.dump()
        baseline = json.dumps(vb.baseline, sort_keys=True)
        vb.close()
        return data, baseline

    before = state()
    bad_rows = [
        ({"notes": [{"text": "fine"}, {"text": 5}]}, "notes row 2", "text"),  # a wrong type
        ({"notes": [{"user_id": 1}]}, "notes row 1", "text is required"),
        ({"users": [{"email": "not-an-email"}]}, "users row 1", "email"),
        ({"users": [{"email": "b@x.io"}, {"email": "b@x.io"}]}, "users row 2", "email"),  # unique
        ({"notes": [{"text": "x", "user_id": 99}]}, "notes row 1", "user_id"),  # no such user
        ({"users": [{"id": 2**64, "email": "c@x.io"}]}, "users row 1", "id"),  # beyond int64
        ({"tickets": [{"title": "a"}, {"id": "nope", "title": "b"}]}, "tickets row 2", "id"),
    ]
    for doc, where, field in bad_rows:
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"users": [{"email": "new@x.io"}], **doc}))  # a good row first
        out = _mockstore("seed", str(bad), *common, cwd=tmp_path)
        assert out.returncode != 0, (doc, out.stdout)
        assert where in out.stderr and field in out.stderr and "Traceback" not in out.stderr, out.stderr
        assert state() == before, doc  # all or nothing: data and seeded state unchanged


def test_seeding_twice_replaces_rows(tmp_path, entities):
    vb = open_vb(tmp_path, mock_entities=entities)
    f = tmp_path / "seed.json"
    f.write_text(json.dumps({"users": [{"id": 1, "email": "a@x.io"}]}))
    assert vb.seed_file(f) == 1 and vb.seed_file(f) == 1
    assert call(vb, "GET", "/users")[1] == [{"id": 1, "email": "a@x.io"}]
    vb.close()


# --- another writer on the same store ----------------------------------------------------


def test_writes_wait_for_another_writer_and_lose_nothing(tmp_path, entities):
    """Two backends on one store (two worker processes) and a third connection holding the
    write lock for a while: every POST lands, each with its own id, none is a 500."""
    a = open_vb(tmp_path, mock_entities=entities)
    b = open_vb(tmp_path, mock_entities=entities)
    other = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    other.execute("begin immediate")
    results: list[tuple] = []

    def post(vb, i):
        results.append(call(vb, "POST", "/users", {"email": f"u{i}@x.io"})[:2])

    threads = [threading.Thread(target=post, args=((a, b)[i % 2], i)) for i in range(10)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    other.execute("commit")
    for t in threads:
        t.join(timeout=30)
    other.close()
    assert sorted(s for s, _ in results) == [201] * 10, results
    assert sorted(body["id"] for _, body in results) == list(range(1, 11))
    assert len(call(a, "GET", "/users")[1]) == 10
    a.close()
    b.close()


def test_a_lock_held_too_long_is_a_503_and_nothing_half_done(tmp_path, entities):
    vb = open_vb(tmp_path, mock_entities=entities)
    vb.storage.conn.execute("PRAGMA busy_timeout = 100")
    other = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    other.execute("begin immediate")
    status, body, resp = call(vb, "POST", "/users", {"email": "a@x.io"})
    assert status == 503 and resp.header("retry-after") == "1", body
    other.execute("rollback")
    other.close()
    assert call(vb, "GET", "/users")[1] == []
    assert call(vb, "POST", "/users", {"email": "a@x.io"})[:2] == (201, {"id": 1, "email": "a@x.io"})
    vb.close()


@pytest.mark.parametrize("storage", ["json", "memory"])
def test_a_failed_write_leaves_memory_and_json_unchanged(tmp_path, storage, entities):
    """A transaction that raises puts back every row it touched, in every kind of storage."""
    vb = open_vb(tmp_path, storage, mock_entities=entities)
    for email in ("a@x.io", "b@x.io", "c@x.io"):
        call(vb, "POST", "/users", {"email": email})
    before = vb.dump()
    with pytest.raises(RuntimeError):
        with vb.storage.transaction():
            vb.storage.put("default", "users", "2", {"id": 2, "email": "changed@x.io"})
            vb.crud.remove("default", vb.model.resources["users"], "2")  # back in its place, too
            vb.storage.put("default", "users", "1", {"id": 1, "email": "changed@x.io"})
            vb.storage.put("default", "notes", "9", {"id": 9, "text": "x"})
            vb.storage.drop("default")
            vb.storage.put("default", "users", "7", {"id": 7})
            vb.storage.raise_mark("default", "users", 40)
            raise RuntimeError("boom")
    assert vb.dump() == before and [u["id"] for u in before["users"]] == [1, 2, 3]
    assert call(vb, "POST", "/users", {"email": "d@x.io"})[1]["id"] == 4  # the mark went back too
    vb.close()
    if storage == "json":
        doc = json.loads((tmp_path / "vb.json").read_text())
        assert list(doc["namespaces"]["default"]["users"]) == ["1", "2", "3", "4"]


@pytest.mark.parametrize("storage", ["sqlite", "json"])
def test_a_start_that_fails_changes_nothing(tmp_path, storage):
    """Opening with reset and a snapshot that does not exist: refused, and the data kept
    (the reset once committed on its own before the restore failed)."""
    vb = open_vb(tmp_path, storage, mock_spec=SPEC)
    call(vb, "POST", "/v2/pets", {"name": "rex"})
    vb.close()
    with pytest.raises(ValueError, match="no snapshot"):
        open_vb(tmp_path, storage, mock_spec=SPEC, mock_vb_reset=True, mock_vb_snapshot="missing")
    vb = open_vb(tmp_path, storage, mock_spec=SPEC)
    assert [p["name"] for p in call(vb, "GET", "/v2/pets")[1]] == ["rex"]
    vb.close()


def test_rows_kept_in_memory_follow_every_other_connection(tmp_path):
    """SQLite storage keeps decoded rows between requests: what another connection (a
    worker, the CLI) commits is seen at the next read, and a rolled-back write is not."""
    from mockstore.vb.storage import SqliteStorage

    db = tmp_path / "store.db"
    a, b = SqliteStorage(db, ["posts"]), SqliteStorage(db, ["posts"])
    with a.transaction():
        a.put("default", "posts", "1", {"id": 1, "title": "first"})
    assert [r["title"] for r in a.rows("default", "posts")] == ["first"]  # now kept
    with b.transaction():
        b.put("default", "posts", "2", {"id": 2, "title": "second"})
        b.put("default", "posts", "1", {"id": 1, "title": "first, edited"})
    assert [r["title"] for r in a.rows("default", "posts")] == ["first, edited", "second"]
    with b.transaction():
        b.delete("default", "posts", "2")
    assert a.keys("default", "posts") == {"1"} and a.get("default", "posts", "2") is None

    with pytest.raises(RuntimeError):
        with a.transaction():
            a.put("default", "posts", "3", {"id": 3, "title": "never"})
            assert a.get("default", "posts", "3")["title"] == "never"  # read back inside
            raise RuntimeError("refused")
    assert a.keys("default", "posts") == {"1"}
    assert b.keys("default", "posts") == {"1"}

    row = a.get("default", "posts", "1")
    row["title"] = "changed by a caller"  # a copy: what is kept stays as stored
    assert a.get("default", "posts", "1")["title"] == "first, edited"
    a.close(), b.close()
