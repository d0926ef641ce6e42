"""Snapshots, reset, sessions, JWT auth, data aging."""

from __future__ import annotations

import datetime as dt
import time

import httpx
import jwt
import pytest
import yaml

from mockstore.vb import VirtualBackend
from mockstore.vb.snapshots import SnapshotError
from vb_helpers import call, serve

SPEC = "/work/shared/specs/v3.0-petstore-expanded.yaml"


def pets(vb, headers=None):
    return [p["name"] for p in call(vb, "GET", "/v2/pets", headers=headers)[1]]


@pytest.mark.parametrize("storage", ["sqlite", "json", "memory"])
def test_snapshots_round_trip(tmp_path, storage):
    db = str(tmp_path / "s.db")
    opts = {"mock_spec": SPEC, "mock_vb_storage": storage, "mock_vb_sweep": 0}
    vb = VirtualBackend.from_options(opts, db, 1)
    call(vb, "POST", "/v2/pets", {"name": "rex"})
    assert vb.snapshot_create("one", "just rex")["rows"] == 1
    call(vb, "POST", "/v2/pets", {"name": "tom"})
    call(vb, "DELETE", "/v2/pets/1")
    assert pets(vb) == ["tom"]
    vb.snapshot_restore("one")
    assert pets(vb) == ["rex"]
    assert [(s["name"], s["description"], s["rows"]) for s in vb.snapshot_list()] == [("one", "just rex", 1)]

    out = vb.snapshot_save("one", tmp_path / "one.json")
    assert vb.snapshot_load(out, "copy")["name"] == "copy"
    assert vb.snapshot_delete("one") and not vb.snapshot_delete("one")
    with pytest.raises(SnapshotError, match="no snapshot"):
        vb.snapshot_restore("one")
    for bad in ("../x", "a/b", "", ".hidden", "x" * 65):
        with pytest.raises(SnapshotError, match="not allowed"):
            vb.snapshot_create(bad)
    assert "created" in vb.command("snapshot.create", "two", "via", "command")
    assert "two" in vb.command("snapshot.list")
    assert "not allowed" in vb.command("snapshot.restore", "../../etc")

    vb.reset()
    assert pets(vb) == []
    vb.close()
    # a snapshot restored at start
    vb = VirtualBackend.from_options({**opts, "mock_vb_snapshot": "copy"}, db, 1)
    assert pets(vb) == ["rex"]
    vb.close()


def test_sessions_are_isolated_and_expire(tmp_path):
    opts = {"mock_spec": SPEC, "mock_vb_sessions": "X-Session", "mock_vb_session_ttl": 60, "mock_vb_sweep": 0}
    vb = VirtualBackend.from_options(opts, str(tmp_path / "s.db"), 1)
    with serve(vb) as base, httpx.Client(base_url=base + "/v2") as c:
        c.post("/pets", json={"name": "a-pet"}, headers={"X-Session": "alice"})
        c.post("/pets", json={"name": "b-pet"}, headers={"X-Session": "bob"})
        c.post("/pets", json={"name": "cookie-pet"}, headers={"Cookie": "theme=dark; X-Session=carol"})
        assert [p["name"] for p in c.get("/pets", headers={"X-Session": "alice"}).json()] == ["a-pet"]
        assert [p["name"] for p in c.get("/pets", headers={"X-Session": "bob"}).json()] == ["b-pet"]
        assert [p["name"] for p in c.get("/pets", headers={"Cookie": "theme=dark; X-Session=carol"}).json()] == ["cookie-pet"]
        assert c.get("/pets").json() == []  # no session: the shared data
    assert vb.sweep(now=time.time() + 3600) >= 3
    assert pets(vb, [("X-Session", "alice")]) == []  # a fresh copy of the seed
    vb.close()


AUTH = {
    "auth": {"users": "users", "login": "/auth/login", "register": "/auth/register"},
    "resources": {
        "users": {"fields": {"id": "integer", "username": {"type": "string", "required": True, "unique": True},
                             "password": "string!", "role": "string"},
                  "seed": [{"id": 1, "username": "alice", "password": "pw-a", "role": "admin"},
                           {"id": 2, "username": "bob", "password": "pw-b", "role": "user"}]},
        "posts": {"protected": "write", "owner": "author_id", "rules": {"update": "owner", "delete": "owner"},
                  "fields": {"id": "integer", "title": "string!",
                             "author_id": {"type": "integer", "references": {"resource": "users"}}}},
        "secrets": {"protected": True, "rules": {"create": "role:admin"}, "fields": {"id": "integer", "v": "string"}},
    },
}


def test_jwt_protected_resources(tmp_path):
    p = tmp_path / "auth.yaml"
    p.write_text(yaml.safe_dump(AUTH))
    db = str(tmp_path / "s.db")
    vb = VirtualBackend.from_options({"mock_entities": str(p), "mock_vb_sweep": 0}, db, 1)
    with serve(vb) as base, httpx.Client(base_url=base) as c:
        assert c.post("/auth/login", json={"username": "alice", "password": "nope"}).status_code == 401
        r = c.post("/auth/login", json={"username": "alice", "password": "pw-a"})
        assert r.status_code == 200 and "password" not in r.json()["user"]
        alice = {"Authorization": f"Bearer {r.json()['access_token']}"}
        r = c.post("/auth/register", json={"username": "carol", "password": "pw-c"})
        assert r.status_code == 201
        carol = {"Authorization": f"Bearer {r.json()['access_token']}"}
        assert "password" not in c.get("/users/1").json()

        # missing, tampered and expired tokens are refused
        r = c.post("/posts", json={"title": "x"})
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        token = alice["Authorization"].split()[1]
        head, payload, sig = token.split(".")
        tampered = f"{head}.{payload}.{sig[:-4]}{'AAAA' if sig[-4:] != 'AAAA' else 'BBBB'}"
        assert c.post("/posts", json={"title": "x"}, headers={"Authorization": f"Bearer {tampered}"}).status_code == 401
        forged = jwt.encode({"sub": "1", "exp": time.time() + 60}, "a-guessed-secret-that-is-long-enough-for-hs256", algorithm="HS256")
        assert c.post("/posts", json={"title": "x"}, headers={"Authorization": f"Bearer {forged}"}).status_code == 401
        expired = vb.auth.issue({"id": 1}, now=time.time() - 7200, lifetime=60)
        r = c.post("/posts", json={"title": "x"}, headers={"Authorization": f"Bearer {expired}"})
        assert r.status_code == 401 and "expired" in r.json()["error"]

        # the token's user owns what it creates; others get 403
        r = c.post("/posts", json={"title": "mine", "author_id": 2}, headers=alice)
        assert r.status_code == 201 and r.json()["author_id"] == 1
        pid = r.json()["id"]
        assert c.get(f"/posts/{pid}").status_code == 200  # reads are open ("write")
        assert c.patch(f"/posts/{pid}", json={"title": "theirs"}, headers=carol).status_code == 403
        assert c.delete(f"/posts/{pid}", headers=carol).status_code == 403
        assert c.patch(f"/posts/{pid}", json={"title": "still mine"}, headers=alice).status_code == 200

        assert c.get("/secrets").status_code == 401
        assert c.get("/secrets", headers=carol).status_code == 200
        assert c.post("/secrets", json={"v": "x"}, headers=carol).status_code == 403
        assert c.post("/secrets", json={"v": "x"}, headers=alice).status_code == 201
    vb.close()
    # the secret is generated per store, kept, and never a fixed string
    vb2 = VirtualBackend.from_options({"mock_entities": str(p), "mock_vb_sweep": 0}, db, 1)
    other = VirtualBackend.from_options({"mock_entities": str(p), "mock_vb_sweep": 0}, str(tmp_path / "t.db"), 1)
    assert vb2.auth.secret == vb.auth.secret != other.auth.secret and len(vb.auth.secret) >= 32
    vb2.close()
    other.close()


def test_aging_deletes_and_expires(tmp_path):
    now = dt.datetime.now(dt.timezone.utc)
    old, new = (now - dt.timedelta(hours=2)).isoformat(), now.isoformat()
    doc = {
        "resources": {
            "tokens": {"fields": {"id": "integer", "created_at": "string"},
                       "seed": [{"id": 1, "created_at": old}, {"id": 2, "created_at": new}]},
            "offers": {"fields": {"id": "integer", "at": "number"},
                       "seed": [{"id": 1, "at": time.time() - 7200}, {"id": 2, "at": time.time()}]},
        },
        "aging": [{"resource": "tokens", "field": "created_at", "max_age": "1h", "action": "delete"},
                  {"resource": "offers", "field": "at", "max_age": 3600, "action": "expire"}],
    }
    p = tmp_path / "aging.yaml"
    p.write_text(yaml.safe_dump(doc))
    vb = VirtualBackend.from_options({"mock_entities": str(p), "mock_vb_sweep": 0}, str(tmp_path / "s.db"), 1)
    assert [t["id"] for t in call(vb, "GET", "/tokens")[1]] == [2]  # applied on read
    assert call(vb, "GET", "/tokens/1")[0] == 404
    offers = call(vb, "GET", "/offers")[1]
    assert [o.get("expired") for o in offers] == [True, None]
    # and by the sweep, in every namespace
    assert vb.sweep(now=time.time() + 3 * 3600) == 2
    assert vb.dump()["tokens"] == []
    vb.close()
