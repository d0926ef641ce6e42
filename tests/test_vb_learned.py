"""Learned resources: traffic against a real CRUD backend, recorded, backend stopped, served."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from click.testing import CliRunner
from genson import SchemaBuilder

from mockstore.store import Store
from mockstore.vb import VirtualBackend
from mockstore.vb.infer import infer
from vb_helpers import serve

DATA = "/work/shared/data/jsonplaceholder.json"


def crud_backend(data: dict):
    """A small json-server: /<collection> and /<collection>/<id>, ids increment."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status, obj=None):
            body = b"" if obj is None else json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _any(self):
            n = int(self.headers.get("content-length") or 0)
            payload = json.loads(self.rfile.read(n)) if n else None
            parts = [p for p in self.path.split("?")[0].split("/") if p]
            rows = data.get(parts[0]) if parts else None
            if rows is None:
                return self._send(404, {})
            if len(parts) == 1:
                if self.command == "GET":
                    return self._send(200, rows)
                if self.command == "POST":
                    row = {**payload, "id": max(r["id"] for r in rows) + 1}
                    rows.append(row)
                    return self._send(201, row)
            found = next((r for r in rows if str(r["id"]) == parts[1]), None)
            if found is None:
                return self._send(404, {})
            if self.command == "GET":
                return self._send(200, found)
            if self.command in ("PUT", "PATCH"):
                if self.command == "PUT":
                    found.clear()
                    found["id"] = int(parts[1])
                found.update({k: v for k, v in payload.items() if k != "id"})
                return self._send(200, found)
            if self.command == "DELETE":
                rows.remove(found)
                return self._send(200, {})
            return self._send(405, {})

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class Recorder:
    """Records exchanges, endpoints and schemas in the store's core tables, as the proxy does."""

    def __init__(self, store: Store, base: str):
        self.store, self.base, self.client = store, base, httpx.Client(base_url=base)
        self.host = base.split("//")[1]
        self.schemas: dict[tuple, SchemaBuilder] = {}
        self.counts: dict[str, int] = {}

    def __call__(self, method, path, body=None):
        r = self.client.request(method, path, json=body)
        template = re.sub(r"/\d+(?=/|$)", "/{id}", path)
        ep = f"{method} {self.host}{template}"
        self.counts[ep] = self.counts.get(ep, 0) + 1
        for kind, status, obj in (("request", 0, body), ("response", r.status_code, r.json() if r.content else None)):
            if obj is not None:
                self.schemas.setdefault((ep, kind, status), SchemaBuilder()).add_object(obj)
        row = {"ts": time.time(), "scheme": "http", "host": self.host, "port": 0, "method": method,
               "path": path, "query": "[]", "req_headers": "[]",
               "req_body": json.dumps(body).encode() if body is not None else b"",
               "status": r.status_code, "resp_headers": "[]", "resp_body": r.content, "template": template}
        self.store.submit(lambda db: db["exchanges"].insert(row))
        return r

    def save(self):
        def write(db):
            for ep, count in self.counts.items():
                method, rest = ep.split(" ", 1)
                db["endpoints"].insert({"id": ep, "host": self.host, "method": method,
                                        "template": rest[len(self.host):], "count": count, "stats": "{}"},
                                       replace=True)
            for (ep, kind, status), b in self.schemas.items():
                db["schemas"].insert({"endpoint": ep, "kind": kind, "status": status,
                                      "schema": json.dumps(b.to_schema()), "samples": 1}, replace=True)

        self.store.submit(write)
        assert self.store.flush()


@pytest.fixture
def learned_db(tmp_path):
    data = json.loads(open(DATA).read())
    data = {"users": data["users"], "posts": data["posts"][:20]}
    server = crud_backend(data)
    base = f"http://127.0.0.1:{server.server_port}"
    db = tmp_path / "learned.db"
    store = Store(db)
    rec = Recorder(store, base)
    assert rec("GET", "/posts").status_code == 200
    assert rec("GET", "/posts/1").json()["id"] == 1
    new = rec("POST", "/posts", {"title": "learned", "body": "b", "userId": 1}).json()
    assert new["id"] == 21
    rec("PUT", f"/posts/{new['id']}", {"title": "learned 2", "body": "b", "userId": 1})
    rec("PATCH", "/posts/2", {"title": "patched while learning"})
    rec("DELETE", "/posts/3")
    rec("GET", "/users")
    rec("GET", "/users/2")
    rec("POST", "/users", {"name": "New", "username": "new", "email": "new@example.com"})
    rec("GET", "/comments")  # a 404: not a resource
    rec.save()
    store.close()
    server.shutdown()
    server.server_close()  # the real backend is gone from here on
    with pytest.raises(httpx.ConnectError):
        httpx.get(base + "/posts")
    return db


def test_infer_explains(learned_db):
    model, notes = infer(learned_db)
    assert set(model.resources) == {"posts", "users"}
    posts = model.resources["posts"]
    assert posts.pk == "id" and posts.fields["userId"].ref.resource == "users"
    assert {"title", "body", "userId"} <= set(posts.fields)
    assert any("POST" in w for w in posts.why)
    ids = sorted(r["id"] for r in posts.seed_rows)
    assert ids == [1, 2] + list(range(4, 22))  # 3 was deleted while learning, 21 created


def test_learned_crud_with_new_ids(learned_db):
    vb = VirtualBackend.from_options({"mock_vb_learned": True, "mock_vb_sweep": 0}, str(learned_db), 3)
    with serve(vb) as base, httpx.Client(base_url=base) as c:
        # what was seen while learning is there, as last seen
        assert c.get("/posts/1").json()["title"].startswith("sunt aut facere")
        assert c.get("/posts/2").json()["title"] == "patched while learning"
        assert c.get("/posts/21").json()["title"] == "learned 2"
        assert c.get("/posts/3").status_code == 404
        assert c.get("/users/10").json()["username"] == "Moriah.Stanton"
        # create -> read -> update -> list -> delete, with new ids
        r = c.post("/posts", json={"title": "fresh", "body": "x", "userId": 2})
        assert r.status_code == 201
        pid = r.json()["id"]
        assert pid == 22
        assert c.get(f"/posts/{pid}").json()["title"] == "fresh"
        assert c.put(f"/posts/{pid}", json={"title": "fresher", "body": "y", "userId": 2}).status_code == 200
        found = c.get("/posts", params={"userId": 2, "sort": "-id", "limit": 1}).json()
        assert found[0] == {"id": pid, "title": "fresher", "body": "y", "userId": 2}
        assert [p["id"] for p in c.get("/users/2/posts").json()][-1] == pid
        assert c.delete(f"/posts/{pid}").status_code == 204
        assert c.get(f"/posts/{pid}").status_code == 404
        # the learned request schema requires what every real create sent
        r = c.post("/posts", json={"body": "no title", "userId": 1})
        assert r.status_code == 422 and r.json()["field"] == "title"
        assert c.get("/comments").json() == {"error": "not a virtual resource"}
    vb.close()


def test_cli_infer_shows_why(learned_db):
    import click

    from mockstore.cli.vb import register

    @click.group()
    def cli():
        pass

    register(cli)
    out = CliRunner().invoke(cli, ["resources", "infer", "--db", str(learned_db)])
    assert out.exit_code == 0, out.output
    assert "posts (/posts, pk id" in out.output and "objects seen in real responses" in out.output
