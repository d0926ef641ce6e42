"""Hostile input: odd names, SQL, path separators, traversal ids, huge and deep bodies."""

from __future__ import annotations

import json
import sqlite3

import httpx
import pytest

from mockstore.vb import VirtualBackend
from vb_helpers import call, serve

SPEC = "/work/shared/specs/v3.0-petstore-expanded.yaml"


@pytest.fixture(params=["sqlite", "json", "memory"])
def vb(request, tmp_path):
    opts = {"mock_spec": SPEC, "mock_vb_storage": request.param, "mock_vb_sweep": 0}
    vb = VirtualBackend.from_options(opts, str(tmp_path / "s.db"), 1)
    assert call(vb, "POST", "/v2/pets", {"name": "rex"})[0] == 201
    yield vb
    vb.close()


def intact(vb):
    status, body, _ = call(vb, "GET", "/v2/pets")
    assert status == 200 and [p["name"] for p in body] == ["rex"]


@pytest.mark.parametrize("raw, status", [
    (b"{not json", 400),
    (b"\xff\xfe\x00binary", 400),
    (b"[1, 2]", 400),
    (b"", 400),
    (b'"just a string"', 400),
    (b"[" * 100_000 + b"]" * 100_000, 400),
])
def test_bad_bodies(vb, raw, status):
    code, body, _ = call(vb, "POST", "/v2/pets", raw=raw)
    assert code == status and body["error"]
    intact(vb)


def test_deep_but_parseable_json(vb):
    nested: dict = {"name": "deep"}
    cur = nested
    for _ in range(200):
        cur["x"] = {}
        cur = cur["x"]
    code, body, _ = call(vb, "POST", "/v2/pets", nested)
    assert code == 400 and "nested deeper" in body["error"]
    intact(vb)


def test_huge_body_over_http(vb):
    with serve(vb) as base:
        r = httpx.post(base + "/v2/pets", content=b'{"name": "' + b"x" * (10 * 1024 * 1024) + b'"}',
                       headers={"content-type": "application/json"}, timeout=30)
        assert r.status_code == 413 and "limit" in r.json()["error"]
    intact(vb)


def test_wrong_content_type(vb):
    code, body, _ = call(vb, "POST", "/v2/pets", raw=b"name=rex",
                         headers=[("content-type", "application/x-www-form-urlencoded")])
    assert code == 415 and "application/json" in body["error"]
    intact(vb)


@pytest.mark.parametrize("path", [
    "/v2/pets/..%2F..%2Fetc%2Fpasswd", "/v2/pets/%27%3B%20DROP%20TABLE%20vb%3B--", "/v2/pets/1%00",
    "/v2/pets/" + "9" * 5000,
])
def test_odd_ids_are_404(vb, path):
    code, body, _ = call(vb, "GET", path)
    assert code == 404 and "not found" in body["error"]
    assert call(vb, "DELETE", path)[0] == 404
    intact(vb)


def test_traversal_paths_are_not_ours(vb):
    assert call(vb, "GET", "/v2/pets/1/../../x/y")[0] is None
    intact(vb)


def test_hostile_field_names_and_values_are_just_data(vb, tmp_path):
    evil = {"name": "'; DROP TABLE exchanges; --", 'we"ird': "x", "../../etc": 1, "a\u202eb": "rtl"}
    code, body, _ = call(vb, "POST", "/v2/pets", evil)
    assert code == 201 and body['we"ird'] == "x"
    code, found, _ = call(vb, "GET", "/v2/pets", query=[("name", evil["name"])])
    assert [p["id"] for p in found] == [body["id"]]
    assert call(vb, "GET", "/v2/pets", query=[("sort", "'; drop table x")])[0] == 200
    conn = sqlite3.connect(tmp_path / "s.db")
    assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
    conn.close()


def test_hostile_resource_names_in_entity_files(tmp_path):
    from mockstore.vb.model import ModelError

    for name in ['x"; drop table meta; --', "a/b", "..", "ü" * 3, ""]:
        p = tmp_path / "e.json"
        p.write_text(json.dumps({"resources": {name: {"fields": {"id": "integer"}}}}))
        with pytest.raises(ValueError, match="not allowed"):
            VirtualBackend.from_options({"mock_entities": str(p)}, str(tmp_path / "s.db"), 1)
    # names that are allowed but differ only in case or punctuation keep separate tables
    from mockstore.vb.storage import table_name

    assert table_name("a-b") != table_name("a_b")
    assert issubclass(ModelError, ValueError)
