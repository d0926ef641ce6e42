"""The CRUD suite: both petstore specs, over real HTTP, on every storage backend."""

from __future__ import annotations

import httpx
import pytest

from mockstore.vb import VirtualBackend
from vb_helpers import call, serve

SPECS = "/work/shared/specs"


def open_vb(tmp_path, spec: str, storage: str, **kw) -> VirtualBackend:
    opts = {"mock_spec": f"{SPECS}/{spec}", "mock_vb_storage": storage, "mock_vb_sweep": 0, **kw}
    return VirtualBackend.from_options(opts, str(tmp_path / "store.db"), 7)


@pytest.fixture(params=["sqlite", "json", "memory"])
def storage(request):
    return request.param


def test_petstore_expanded_over_http(tmp_path, storage):
    vb = open_vb(tmp_path, "v3.0-petstore-expanded.yaml", storage)
    with serve(vb) as base, httpx.Client(base_url=base + "/v2") as c:
        ids = []
        for name, tag in [("rex", "dog"), ("tom", "cat"), ("fido", "dog"), ("kit", "cat"), ("ace", "dog")]:
            r = c.post("/pets", json={"name": name, "tag": tag})
            assert r.status_code == 201, r.text
            assert r.headers["location"] == f"/v2/pets/{r.json()['id']}"
            ids.append(r.json()["id"])
        assert len(set(ids)) == 5

        r = c.get(f"/pets/{ids[0]}")
        assert r.status_code == 200 and r.json() == {"id": ids[0], "name": "rex", "tag": "dog"}

        r = c.get("/pets", params={"limit": 2, "offset": 1})
        assert [p["name"] for p in r.json()] == ["tom", "fido"]
        assert r.headers["x-total-count"] == "5"
        r = c.get("/pets", params={"page": 2, "per_page": 2})
        assert [p["name"] for p in r.json()] == ["fido", "kit"]

        r = c.get("/pets", params={"tag": "dog", "sort": "-name"})
        assert [p["name"] for p in r.json()] == ["rex", "fido", "ace"]
        assert r.headers["x-total-count"] == "3"
        r = c.get("/pets", params={"name__contains": "I", "id__gt": ids[0]})
        assert [p["name"] for p in r.json()] == ["fido", "kit"]
        r = c.get("/pets", params={"id__lt": ids[2], "sort": "name"})
        assert [p["name"] for p in r.json()] == ["rex", "tom"]

        r = c.put(f"/pets/{ids[1]}", json={"name": "tommy", "tag": "cat"})
        assert r.status_code == 200 and r.json()["name"] == "tommy"
        r = c.patch(f"/pets/{ids[1]}", json={"tag": "lion"})
        assert r.json() == {"id": ids[1], "name": "tommy", "tag": "lion"}
        assert c.get(f"/pets/{ids[1]}").json()["tag"] == "lion"

        assert c.delete(f"/pets/{ids[1]}").status_code == 204
        r = c.get(f"/pets/{ids[1]}")
        assert r.status_code == 404 and "not found" in r.json()["error"]
        assert c.delete(f"/pets/{ids[1]}").status_code == 404
        assert c.get("/pets").headers["x-total-count"] == "4"

        r = c.post("/pets", json={"tag": "dog"})
        assert r.status_code == 422 and r.json()["field"] == "name"
        r = c.post("/pets", json={"name": 12})
        assert r.status_code == 422 and r.json()["field"] == "name"
        r = c.patch(f"/pets/{ids[0]}", json={"name": None})
        assert r.status_code == 422
        r = c.post("/pets", json={"id": ids[0], "name": "dup"})
        assert r.status_code == 409 and r.json()["field"] == "id"
        r = c.get("/pets", params={"limit": "many"})
        assert r.status_code == 400 and r.json()["field"] == "limit"
        # the base path from `servers` is honoured: without it, the path is not ours
        assert c.get(base + "/pets").status_code == 404
        assert c.get(base + "/pets").json() == {"error": "not a virtual resource"}
    vb.close()


def test_petstore3_over_http(tmp_path, storage):
    vb = open_vb(tmp_path, "swagger-petstore-v3-openapi.yaml", storage)
    with serve(vb) as base, httpx.Client(base_url=base + "/api/v3") as c:
        r = c.post("/pet", json={"name": "doggie", "photoUrls": ["a.png"], "status": "available"})
        assert r.status_code == 201, r.text
        pid = r.json()["id"]
        c.post("/pet", json={"name": "kitty", "photoUrls": [], "status": "sold"})
        c.post("/pet", json={"name": "birdie", "photoUrls": [], "status": "available"})
        assert c.get(f"/pet/{pid}").json()["name"] == "doggie"

        r = c.get("/pet", params={"status": "available", "limit": 1})
        assert [p["name"] for p in r.json()] == ["doggie"] and r.headers["x-total-count"] == "2"

        # petstore's own update: PUT /pet with the id in the body
        r = c.put("/pet", json={"id": pid, "name": "doggo", "photoUrls": [], "status": "pending"})
        assert r.status_code == 200 and c.get(f"/pet/{pid}").json()["status"] == "pending"
        r = c.put("/pet", json={"id": 999, "name": "x", "photoUrls": []})
        assert r.status_code == 404

        r = c.post("/pet", json={"name": "nophotos"})
        assert r.status_code == 422 and r.json()["field"] == "photoUrls"
        r = c.post("/pet", json={"name": "x", "photoUrls": [], "status": "lost"})
        assert r.status_code == 422 and r.json()["field"] == "status"

        assert c.delete(f"/pet/{pid}").status_code == 204
        assert c.get(f"/pet/{pid}").status_code == 404

        # users are keyed by the path parameter, the username
        r = c.post("/user", json={"username": "theUser", "email": "john@email.com"})
        assert r.status_code == 201 and r.headers["location"] == "/api/v3/user/theUser"
        assert c.get("/user/theUser").json()["email"] == "john@email.com"
        assert c.post("/user", json={"username": "theUser"}).status_code == 409

        # orders reference pets by petId: the foreign key is enforced
        r = c.post("/store/order", json={"petId": 424242, "quantity": 1})
        assert r.status_code == 422 and r.json()["field"] == "petId"
        other = c.get("/pet").json()[0]["id"]
        assert c.post("/store/order", json={"petId": other, "quantity": 1}).status_code == 201

        # spec paths that are not CRUD routes are left to the engine
        assert c.get("/pet/findByStatus").json() == {"error": "not a virtual resource"}
        assert c.get("/user/login").json() == {"error": "not a virtual resource"}
    vb.close()


def test_state_survives_a_restart(tmp_path, storage):
    vb = open_vb(tmp_path, "v3.0-petstore-expanded.yaml", storage)
    status, body, _ = call(vb, "POST", "/v2/pets", {"name": "rex"})
    assert status == 201
    vb.close()
    vb = open_vb(tmp_path, "v3.0-petstore-expanded.yaml", storage)
    status, found, _ = call(vb, "GET", "/v2/pets")
    if storage == "memory":
        assert found == []
    else:
        assert [p["name"] for p in found] == ["rex"]
    vb.close()
    vb = open_vb(tmp_path, "v3.0-petstore-expanded.yaml", storage, mock_vb_reset=True)
    assert call(vb, "GET", "/v2/pets")[1] == []
    vb.close()


def test_json_storage_is_a_readable_file(tmp_path):
    path = tmp_path / "data.json"
    vb = open_vb(tmp_path, "v3.0-petstore-expanded.yaml", "json", mock_vb_file=str(path))
    call(vb, "POST", "/v2/pets", {"name": "rex"})
    import json

    doc = json.loads(path.read_text())
    assert doc["namespaces"]["default"]["pets"]["1"] == {"id": 1, "name": "rex"}
    vb.close()


def test_swagger2_base_path(tmp_path):
    vb = open_vb(tmp_path, "v2.0-petstore-expanded.yaml", "memory")
    assert call(vb, "POST", "/api/pets", {"name": "rex"})[0] == 201
    assert call(vb, "GET", "/api/pets/1")[1]["name"] == "rex"
    vb.close()


def test_host_option_limits_serving(tmp_path):
    vb = open_vb(tmp_path, "v3.0-petstore-expanded.yaml", "memory", mock_vb_host="pets.example")
    assert call(vb, "GET", "/v2/pets")[0] is None  # the helper's host is api.test
    vb.close()
