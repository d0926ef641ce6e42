"""Entity files: users, posts (1:N), tags (N:N); cascade, restrict, nullify; routes; 409s."""

from __future__ import annotations

import httpx
import pytest
import yaml

from mockstore.vb import VirtualBackend, validate_options
from mockstore.vb.entities import model_from_entities
from mockstore.vb.model import ModelError
from mockstore.vb.seed import build_seed
from vb_helpers import call, serve

ENTITIES = {
    "resources": {
        "orgs": {"fields": {"id": "integer", "name": "string!"}, "seed": [{"id": 1, "name": "acme"}, {"id": 2, "name": "empty"}]},
        "users": {
            "fields": {
                "id": "integer",
                "username": {"type": "string", "required": True, "unique": True, "generate": "username"},
                "email": {"type": "string", "format": "email", "unique": True, "generate": "email"},
                "org_id": {"type": "integer", "references": {"resource": "orgs", "onDelete": "restrict"}},
            },
            "seed": [{"id": 1, "username": "alice", "email": "alice@example.com", "org_id": 1},
                     {"id": 2, "username": "bob", "email": "bob@example.com", "org_id": 1}],
        },
        "posts": {
            "fields": {
                "id": "integer",
                "title": "string!",
                "author_id": {"type": "integer", "required": True, "references": {"resource": "users", "onDelete": "cascade"}},
            },
        },
        "comments": {
            "fields": {
                "id": "integer",
                "body": "string",
                "post_id": {"type": "integer", "references": {"resource": "posts", "field": "id", "onDelete": "cascade"}},
                "author_id": {"type": "integer", "references": {"resource": "users", "onDelete": "nullify"}},
            },
        },
        "tags": {"id": "TAG-{increment:04}", "fields": {"id": "string", "label": {"type": "string", "unique": True}}},
    },
    "relations": [{"many_to_many": ["posts", "tags"], "junction": "post_tags"}],
}


@pytest.fixture
def entity_file(tmp_path):
    p = tmp_path / "entities.yaml"
    p.write_text(yaml.safe_dump(ENTITIES))
    return p


@pytest.fixture(params=["sqlite", "memory"])
def vb(request, tmp_path, entity_file):
    opts = {"mock_entities": str(entity_file), "mock_vb_storage": request.param, "mock_vb_sweep": 0}
    vb = VirtualBackend.from_options(opts, str(tmp_path / "s.db"), 1)
    yield vb
    vb.close()


def test_relations_and_deletes_over_http(vb):
    with serve(vb) as base, httpx.Client(base_url=base) as c:
        p1 = c.post("/users/1/posts", json={"title": "hello"}).json()  # 1:N route sets the key
        assert p1["author_id"] == 1
        p2 = c.post("/posts", json={"title": "bob's", "author_id": 2}).json()
        assert [p["id"] for p in c.get("/users/1/posts").json()] == [p1["id"]]
        assert c.get("/users/99/posts").status_code == 404

        # N:N both ways; the tag ids follow the pattern
        t1 = c.post("/tags", json={"label": "news"}).json()
        assert t1["id"] == "TAG-0001"
        assert c.post(f"/posts/{p1['id']}/tags", json={"id": t1["id"]}).status_code == 201
        t2 = c.post(f"/posts/{p1['id']}/tags", json={"label": "tech"})
        assert t2.status_code == 201 and t2.json()["id"] == "TAG-0002"
        assert c.put(f"/posts/{p2['id']}/tags/TAG-0001").status_code == 201
        assert [t["label"] for t in c.get(f"/posts/{p1['id']}/tags").json()] == ["news", "tech"]
        assert sorted(p["id"] for p in c.get("/tags/TAG-0001/posts").json()) == [p1["id"], p2["id"]]
        assert c.delete(f"/posts/{p1['id']}/tags/TAG-0002").status_code == 204
        assert [t["label"] for t in c.get(f"/posts/{p1['id']}/tags").json()] == ["news"]
        assert c.get(f"/posts/{p1['id']}/tags/TAG-0002").status_code == 404

        # unique and foreign keys
        r = c.post("/users", json={"username": "alice", "email": "x@example.com"})
        assert r.status_code == 409 and r.json()["field"] == "username"
        r = c.patch("/users/2", json={"email": "alice@example.com"})
        assert r.status_code == 409 and r.json()["field"] == "email"
        r = c.post("/posts", json={"title": "orphan", "author_id": 42})
        assert r.status_code == 422 and r.json()["field"] == "author_id"
        r = c.post("/users", json={"username": "carol", "email": "not-an-email"})
        assert r.status_code == 422 and r.json()["field"] == "email"

        # comments: alice comments on bob's post, bob on alice's
        ca = c.post("/comments", json={"body": "nice", "post_id": p2["id"], "author_id": 1}).json()
        cb = c.post("/comments", json={"body": "thanks", "post_id": p1["id"], "author_id": 2}).json()

        # restrict: an org with users cannot go; one without can
        r = c.delete("/orgs/1")
        assert r.status_code == 409 and r.json()["field"] == "org_id"
        assert c.get("/orgs/1").status_code == 200
        assert c.delete("/orgs/2").status_code == 204

        # cascade: deleting bob takes his post and the comments on it (and its tag links);
        # nullify: bob's comment on alice's post stays, without an author
        assert c.delete("/users/2").status_code == 204
        assert c.get(f"/posts/{p2['id']}").status_code == 404
        assert c.get(f"/comments/{ca['id']}").status_code == 404
        assert c.get(f"/comments/{cb['id']}").json()["author_id"] is None
        assert [p["id"] for p in c.get("/tags/TAG-0001/posts").json()] == [p1["id"]]
        assert c.get(f"/posts/{p1['id']}").status_code == 200


def test_restrict_inside_a_cascade_blocks_the_whole_delete(tmp_path):
    doc = {"resources": {
        "a": {"fields": {"id": "integer"}, "seed": [{"id": 1}]},
        "b": {"fields": {"id": "integer", "a_id": {"type": "integer", "references": {"resource": "a", "onDelete": "cascade"}}},
              "seed": [{"id": 1, "a_id": 1}]},
        "c": {"fields": {"id": "integer", "b_id": {"type": "integer", "references": {"resource": "b", "onDelete": "restrict"}}},
              "seed": [{"id": 1, "b_id": 1}]},
    }}
    p = tmp_path / "e.json"
    p.write_text(__import__("json").dumps(doc))
    vb = VirtualBackend.from_options({"mock_entities": str(p), "mock_vb_sweep": 0}, str(tmp_path / "s.db"), 1)
    assert call(vb, "DELETE", "/a/1")[0] == 409
    assert call(vb, "GET", "/a/1")[0] == 200 and call(vb, "GET", "/b/1")[0] == 200
    vb.close()


def test_generation_is_deterministic_and_keeps_references():
    doc = {"resources": {
        "users": {"count": 20, "id": {"prefix": "cus_", "length": 14}, "fields": {
            "id": "string",
            "username": {"type": "string", "unique": True, "generate": "username"},
            "email": {"type": "string", "generate": "email"},
            "name": {"type": "string", "generate": "name"},
            "joined": {"type": "string", "format": "date", "generate": {"date": {"from": "-30d", "to": "now"}}},
            "age": {"type": "integer", "generate": {"number": {"min": 18, "max": 30}}},
            "role": {"type": "string", "generate": {"pickOne": ["admin", "user"], "weights": [0, 1]}},
        }},
        "orders": {"count": 30, "id": "ORD-{increment:06}", "fields": {
            "id": "string", "user_id": {"type": "string", "references": {"resource": "users"}}}},
    }}
    model = model_from_entities(doc)
    a, b = build_seed(model, 5), build_seed(model, 5)
    assert a == b and a != build_seed(model, 6)
    users = a["users"]
    assert len(users) == 20 and len({u["username"] for u in users}) == 20
    assert all(u["id"].startswith("cus_") and len(u["id"]) == 18 for u in users)
    assert all("@" in u["email"] and 18 <= u["age"] <= 30 and u["role"] == "user" for u in users)
    ids = {u["id"] for u in users}
    assert all(o["user_id"] in ids for o in a["orders"])
    assert a["orders"][0]["id"] == "ORD-000001" and a["orders"][-1]["id"] == "ORD-000030"


@pytest.mark.parametrize("doc, message", [
    ({"resources": {"a'; drop table x; --": {}}}, "not allowed"),
    ({"resources": {"a/../b": {}}}, "not allowed"),
    ({"resources": {"a": {"path": "/../etc"}}}, "not allowed"),
    ({"resources": {"a": {"fields": {"x": "varchar"}}}}, "type 'varchar'"),
    ({"resources": {"a": {"fields": {"x": {"references": {"resource": "nope"}}}}}}, "unknown resource 'nope'"),
    ({"resources": {"a": {"id": "weird"}}}, "id rule"),
    ({"resources": {"a": {"fields": {"x": {"references": {"resource": "a", "onDelete": "explode"}}}}}}, "onDelete"),
    ({"nothing": 1}, "resources"),
])
def test_bad_entity_files_are_explained(doc, message):
    with pytest.raises(ModelError, match=message):
        model_from_entities(doc)


def test_validate_options_messages(tmp_path):
    with pytest.raises(ValueError, match="mock_spec: file not found: x.yaml"):
        validate_options({"mock_spec": "x.yaml"})
    with pytest.raises(ValueError, match="mock_vb_storage"):
        validate_options({"mock_vb_storage": "redis"})
    with pytest.raises(ValueError, match="a name, not a path"):
        validate_options({"mock_vb_snapshot": "../etc/passwd"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("resources: [\n")
    with pytest.raises(ValueError, match="not readable YAML"):
        validate_options({"mock_entities": str(bad)})
    assert VirtualBackend.from_options({}, str(tmp_path / "s.db"), 0) is None
