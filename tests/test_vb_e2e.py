"""The stateful virtual backend through the real addon: a real mitmdump (`-s
addons/mockstore.py --set mock_spec=FILE --set mock_mode=mock`) and a real `mockstore serve
--spec FILE` (no upstream), a real client, snapshots and reset through the command line
between runs; and resources learned from a real CRUD backend process through the proxy."""

from __future__ import annotations

import httpx
import pytest
from click.testing import CliRunner
from conftest import MOCKSTORE, free_port

from mockstore.cli import cli

SPECS = "/work/shared/specs"
EXPANDED = f"{SPECS}/v3.0-petstore-expanded.yaml"  # servers: https://petstore.swagger.io/v2
PETSTORE3 = f"{SPECS}/swagger-petstore-v3-openapi.yaml"  # servers: .../api/v3
STATE = "state"


@pytest.fixture
def stateful(procs, proxy, confdir, tmp_path):
    """start(spec, runner, db=None) -> (httpx.Client for the spec's base path, db, Proc).

    mitmdump runs as a regular proxy with no real API anywhere (the client asks for the
    spec's own host through it); `mockstore serve --spec` as a server of its own."""
    clients = []

    def start(spec: str, runner: str, db=None):
        db = db or tmp_path / "vb.db"
        base = "/v2" if spec == EXPANDED else "/api/v3"
        if runner == "mitmdump":
            p = proxy(None, mode="mock", db=db, mock_spec=spec)
            c = httpx.Client(base_url=f"http://petstore.example{base}", proxy=p.url, timeout=10, trust_env=False)
            proc = p.proc
        else:
            port = free_port()
            proc = procs([MOCKSTORE, "serve", "--spec", spec, "--db", str(db), "--listen-port", str(port),
                          "--confdir", str(confdir), "--latency", "none"], port)
            c = httpx.Client(base_url=f"http://127.0.0.1:{port}{base}", timeout=10, trust_env=False)
        clients.append(c)
        return c, db, proc

    yield start
    for c in clients:
        c.close()


def state(r: httpx.Response) -> httpx.Response:
    assert r.headers.get("x-mockstore-source") == STATE, (r.status_code, dict(r.headers), r.text)
    return r


def crud_expanded(c: httpx.Client) -> list[int]:
    """Create, read, list with paging and filters, update, delete, 404, 422; the ids left."""
    ids = []
    for name, tag in [("rex", "dog"), ("tom", "cat"), ("fido", "dog"), ("kit", "cat")]:
        r = state(c.post("/pets", json={"name": name, "tag": tag}))
        assert r.status_code == 201 and r.headers["location"] == f"/v2/pets/{r.json()['id']}"
        ids.append(r.json()["id"])
    assert len(set(ids)) == 4
    r = state(c.get(f"/pets/{ids[0]}"))
    assert r.status_code == 200 and r.json() == {"id": ids[0], "name": "rex", "tag": "dog"}
    r = state(c.get("/pets", params={"limit": 2, "offset": 1}))
    assert [p["name"] for p in r.json()] == ["tom", "fido"] and r.headers["x-total-count"] == "4"
    r = state(c.get("/pets", params={"page": 2, "per_page": 3}))
    assert [p["name"] for p in r.json()] == ["kit"]
    r = state(c.get("/pets", params={"tag": "dog", "sort": "-name"}))
    assert [p["name"] for p in r.json()] == ["rex", "fido"] and r.headers["x-total-count"] == "2"
    r = state(c.put(f"/pets/{ids[1]}", json={"name": "tommy", "tag": "cat"}))
    assert r.status_code == 200 and r.json()["name"] == "tommy"
    r = state(c.patch(f"/pets/{ids[1]}", json={"tag": "lion"}))
    assert r.json() == {"id": ids[1], "name": "tommy", "tag": "lion"}
    assert state(c.delete(f"/pets/{ids[1]}")).status_code == 204
    r = state(c.get(f"/pets/{ids[1]}"))
    assert r.status_code == 404 and "not found" in r.json()["error"]
    r = state(c.post("/pets", json={"tag": "dog"}))
    assert r.status_code == 422 and r.json()["field"] == "name"
    assert state(c.get("/pets")).headers["x-total-count"] == "3"
    return [i for i in ids if i != ids[1]]


def crud_petstore3(c: httpx.Client) -> None:
    r = state(c.post("/pet", json={"name": "doggie", "photoUrls": ["a.png"], "status": "available"}))
    assert r.status_code == 201
    pid = r.json()["id"]
    state(c.post("/pet", json={"name": "kitty", "photoUrls": [], "status": "sold"}))
    state(c.post("/pet", json={"name": "birdie", "photoUrls": [], "status": "available"}))
    assert state(c.get(f"/pet/{pid}")).json()["name"] == "doggie"
    r = state(c.get("/pet", params={"status": "available", "limit": 1}))
    assert [p["name"] for p in r.json()] == ["doggie"] and r.headers["x-total-count"] == "2"
    r = state(c.get("/pet", params={"status": "available", "limit": 1, "offset": 1}))
    assert [p["name"] for p in r.json()] == ["birdie"]
    r = state(c.put("/pet", json={"id": pid, "name": "doggo", "photoUrls": [], "status": "pending"}))
    assert r.status_code == 200 and state(c.get(f"/pet/{pid}")).json()["status"] == "pending"
    r = state(c.post("/pet", json={"name": "nophotos"}))
    assert r.status_code == 422 and r.json()["field"] == "photoUrls"
    assert state(c.delete(f"/pet/{pid}")).status_code == 204
    assert state(c.get(f"/pet/{pid}")).status_code == 404
    assert [p["name"] for p in state(c.get("/pet")).json()] == ["kitty", "birdie"]


def vb_cli(*args: str) -> str:
    out = CliRunner().invoke(cli, list(args))
    assert out.exit_code == 0, out.output
    return out.output


@pytest.mark.parametrize("runner", ["mitmdump", "serve"])
def test_petstore_expanded_with_snapshot_and_reset(stateful, runner):
    c, db, proc = stateful(EXPANDED, runner)
    left = crud_expanded(c)
    proc.stop()

    # between runs, from the command line: a snapshot of this state, then back to the seed
    assert "created (3 rows)" in vb_cli("snapshot", "create", "three", "--spec", EXPANDED, "--db", str(db))
    vb_cli("reset", "--spec", EXPANDED, "--db", str(db))
    c, _, proc = stateful(EXPANDED, runner, db=db)
    assert state(c.get("/pets")).json() == [], "reset: the seeded state (no rows in this spec)"
    state(c.post("/pets", json={"name": "lonely"}))
    proc.stop()

    vb_cli("snapshot", "restore", "three", "--spec", EXPANDED, "--db", str(db))
    c, _, _ = stateful(EXPANDED, runner, db=db)
    r = state(c.get("/pets", params={"sort": "id"}))
    assert [p["id"] for p in r.json()] == left and [p["name"] for p in r.json()] == ["rex", "fido", "kit"]


@pytest.mark.parametrize("runner", ["mitmdump", "serve"])
def test_a_first_404_then_everything_works(stateful, runner):
    """A fresh store whose first request is a 404: once, every request after it was a 500
    (`no such table`) until a restart; and deleted ids are not handed out again."""
    c, _, _ = stateful(EXPANDED, runner)
    r = state(c.get("/pets/1"))
    assert r.status_code == 404 and "not found" in r.json()["error"]
    r = state(c.post("/pets", json={"name": "rex"}))
    assert r.status_code == 201, r.text
    assert state(c.get(f"/pets/{r.json()['id']}")).json()["name"] == "rex"
    assert state(c.delete(f"/pets/{r.json()['id']}")).status_code == 204
    assert state(c.post("/pets", json={"name": "tom"})).json()["id"] == r.json()["id"] + 1
    r = state(c.post("/pets", json={"id": 2**63, "name": "huge"}))
    assert (r.status_code, r.json()["field"]) == (422, "id")


@pytest.mark.parametrize("runner", ["mitmdump", "serve"])
def test_petstore3(stateful, runner):
    c, _, _ = stateful(PETSTORE3, runner)
    crud_petstore3(c)
    # a spec path that is not a CRUD route is left to the engine: nothing known, a 404
    r = c.get("/pet/findByStatus")
    assert r.status_code == 404 and r.headers["x-mockstore-source"] == "not-found"


def test_learned_resources_through_the_proxy(backend, proxy):
    """Learn a real CRUD API's /books through mitmdump, stop it, then serve /books statefully."""
    api, url = backend()
    p = proxy(url)
    with p.client() as c:
        assert [b["id"] for b in c.get("/books").json()] == [1, 2, 3]
        assert c.get("/books/1").json()["title"] == "Dune"
        new = c.post("/books", json={"title": "Beloved", "author": "Morrison", "year": 1987})
        assert new.status_code == 201 and new.json()["id"] == 4
        c.post("/books", json={"title": "Middlemarch", "author": "Eliot", "year": 1871})
        assert c.put("/books/4", json={"title": "Beloved", "author": "Toni Morrison", "year": 1987}).status_code == 200
        assert c.patch("/books/2", json={"year": 1816}).json()["year"] == 1816
        assert c.delete("/books/3").status_code == 204
        assert c.get("/books/2").json()["year"] == 1816
        assert c.get("/books").status_code == 200
    p.stop()
    api.kill()

    mock = proxy(url, mode="mock", db=p.db, mock_vb_learned="true")
    with mock.client() as c:
        # the objects seen while learning are there, as last seen
        assert state(c.get("/books/1")).json() == {"id": 1, "title": "Dune", "author": "Herbert", "year": 1965}
        assert state(c.get("/books/2")).json()["year"] == 1816
        assert state(c.get("/books/4")).json()["author"] == "Toni Morrison"
        assert state(c.get("/books/3")).status_code == 404, "deleted while learning"
        # create -> read -> update -> list -> delete, with new ids
        r = state(c.post("/books", json={"title": "Persuasion", "author": "Austen", "year": 1817}))
        assert r.status_code == 201
        bid = r.json()["id"]
        assert bid == 6, "a new id after the ones seen"
        assert state(c.get(f"/books/{bid}")).json()["title"] == "Persuasion"
        r = state(c.patch(f"/books/{bid}", json={"year": 1818}))
        assert r.status_code == 200 and r.json()["year"] == 1818
        r = state(c.get("/books", params={"author": "Austen"}))
        assert [(b["id"], b["year"]) for b in r.json()] == [(2, 1816), (bid, 1818)]
        assert [b["id"] for b in state(c.get("/books", params={"sort": "id"})).json()] == [1, 2, 4, 5, bid]
        assert state(c.delete(f"/books/{bid}")).status_code == 204
        assert state(c.get(f"/books/{bid}")).status_code == 404
        r = state(c.post("/books", json={"author": "nobody", "year": 2000}))
        assert r.status_code == 422 and r.json()["field"] == "title"
        # what is not a virtual resource goes on to the rest of the engine
        r = c.get("/nothing/here")
        assert r.status_code == 404 and r.headers["x-mockstore-source"] == "not-found"


def test_chaos_on_virtual_resources(procs, confdir, tmp_path):
    """Chaos rules written for an endpoint template apply to virtual resources too, though
    nothing was learned for them; the state is untouched by a request chaos answered."""
    rules = tmp_path / "chaos.yaml"
    rules.write_text("rules:\n"
                     "  - {id: boom, endpoint: 'DELETE /v2/pets/{id}', effect: error, status: 503}\n"
                     "  - {id: cut, endpoint: 'PATCH /v2/pets/{id}', effect: reset}\n"
                     "  - {id: lag, endpoint: 'GET /v2/pets', effect: latency, ms: 300}\n")
    port = free_port()
    procs([MOCKSTORE, "serve", "--spec", EXPANDED, "--db", str(tmp_path / "vb.db"), "--listen-port", str(port),
           "--confdir", str(confdir), "--latency", "none", "--set", f"mock_chaos={rules}"], port)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}/v2", timeout=5, trust_env=False) as c:
        pid = state(c.post("/pets", json={"name": "rex"})).json()["id"]
        r = c.delete(f"/pets/{pid}")
        assert r.status_code == 503 and r.headers["x-mockstore-source"] == "chaos"
        assert r.headers["x-mockstore-chaos"] == "error 503; rule=boom"
        with pytest.raises(httpx.TransportError):
            c.patch(f"/pets/{pid}", json={"tag": "cat"})
    with httpx.Client(base_url=f"http://127.0.0.1:{port}/v2", timeout=5, trust_env=False) as c:
        r = state(c.get("/pets"))
        assert r.headers["x-mockstore-chaos"] == "latency 300 ms; rule=lag"
        assert r.json() == [{"id": pid, "name": "rex"}], "neither the DELETE nor the PATCH reached the state"
        assert "x-mockstore-chaos" not in state(c.get(f"/pets/{pid}")).headers
