"""A small real API for the end-to-end tests: run as a process, killed when a test wants the
real API gone.

    python tests/backend.py PORT [--tls CERT_AND_KEY.pem] [--variant NAME]

`--variant` changes the contract (for drift tests): the same routes, other shapes.
"""

from __future__ import annotations

import gzip
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

VARIANT = "base"
ITEMS: list[dict] = []
# /books: a small CRUD resource (ids increment), for learning a stateful resource from traffic
BOOKS: dict[int, dict] = {
    1: {"id": 1, "title": "Dune", "author": "Herbert", "year": 1965},
    2: {"id": 2, "title": "Emma", "author": "Austen", "year": 1815},
    3: {"id": 3, "title": "Ulysses", "author": "Joyce", "year": 1922},
}

TWIN: dict = {"accounts": [], "posts": [{"slug": "welcome", "title": "Welcome", "owner": "admin", "likes": 3}], "visits": 0}

# A login and what it hands out: fixed, so a test can look for each one in what was stored.
PASSWORD = "correct-horse-battery-staple-42"
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhZGEiLCJpYXQiOjE3MDAwMDAwMDB9"
       ".Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5")
ACCESS_TOKEN = "at_9fQ2mZ8pL4vR7tY1wB3nC6xK0dS5gH"
REFRESH_TOKEN = "rt-Q4w8E2r6T0y3U7i1O5p9A2s6D0f4G8h"
ID_TOKEN = ("eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJiYWNrZW5kIiwiYXVkIjoiYXBwIiwic3ViIjoiYWRhIn0"
            ".c2lnbmF0dXJlLW9mLXRoZS1pZC10b2tlbi0xMjM0NQ")
SESSION = "s3ss10n-7Hq2Lm9Xv4Rb8Nc1"


def user(uid: int) -> dict:
    u = {
        "id": uid,
        "user_id": uid,
        "username": f"user{uid}",
        "email": f"user{uid}@example.com",
        "name": f"User Number {uid}",
        "created_at": f"2024-01-{uid % 28 + 1:02d}T10:00:00Z",
        "active": uid % 2 == 0,
        "score": uid * 1.5,
        "tags": ["a", "b"][: uid % 3],
    }
    if uid % 3 == 0:
        u["nickname"] = f"nick{uid}"  # optional: absent in most samples
    if VARIANT == "renamed":
        u["userId"] = u.pop("user_id")
    elif VARIANT == "retyped":
        u["created_at"] = 1700000000 + uid
    elif VARIANT == "added":
        u["extra"] = "new"
    return u


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

    def log_message(self, *args):
        pass

    def send(self, status: int, body: bytes, ctype: str = "application/json", headers: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, value, headers: dict | None = None):
        self.send(status, json.dumps(value).encode(), headers=headers)

    def body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_PUT(self):
        self.route("PUT")

    def do_DELETE(self):
        self.route("DELETE")

    def do_PATCH(self):
        self.route("PATCH")

    def route(self, method: str):
        url = urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        body = self.body()
        if parts == ["users"] and method == "GET":
            page = int(q.get("page", 1))
            return self.send_json(200, {"page": page, "users": [user(i) for i in range(page, page + 3)]})
        if parts == ["users", "me"]:
            return self.send_json(200, {"id": 0, "username": "me", "email": "me@example.com", "roles": ["admin"]})
        if len(parts) == 2 and parts[0] == "users":
            if parts[1].isdigit():
                uid = int(parts[1])
                if VARIANT == "gone":  # the API moved away: every user is 410 Gone
                    return self.send_json(410, {"error": "gone", "see": f"/v2/users/{uid}"})
                if uid >= 1000:
                    return self.send_json(404, {"error": "no such user", "id": uid})
                return self.send_json(200, user(uid))
            return self.send_json(200, {"id": parts[1], "username": parts[1], "email": "x@example.com"})
        if len(parts) == 2 and parts[0] == "articles":
            slug = parts[1]
            return self.send_json(200, {"slug": slug, "title": slug.replace("-", " ").title(), "url": f"https://blog.example.com/{slug}"})
        if parts == ["items"]:
            if method == "POST":
                try:
                    item = json.loads(body or b"{}")
                except ValueError:
                    return self.send_json(400, {"error": "bad json"})
                item["id"] = len(ITEMS) + 1
                ITEMS.append(item)
                return self.send_json(201, item, {"Location": f"/items/{item['id']}"})
            return self.send_json(200, {"items": ITEMS, "count": len(ITEMS)})
        if parts and parts[0] == "books":
            return self.books(method, parts[1:], body)
        if parts and parts[0] == "twin":
            return self.twin(method, parts[1:], q, body)
        if parts and parts[0] == "ok":  # any path under /ok: 200, for chaos tests
            return self.send_json(200, {"path": url.path})
        if parts == ["login"] and method == "POST":  # JSON or form: a password for tokens
            ctype = self.headers.get("Content-Type", "")
            form = parse_qs(body.decode()) if "form" in ctype else {}
            data = {k: v[0] for k, v in form.items()} if form else json.loads(body or b"{}")
            if data.get("password") != PASSWORD:
                return self.send_json(401, {"error": "bad credentials"})
            return self.send_json(200, {"token": JWT, "access_token": ACCESS_TOKEN, "refreshToken": REFRESH_TOKEN,
                                        "id_token": ID_TOKEN, "user": {"id": 7, "name": "Ada"}},
                                  {"Set-Cookie": f"session={SESSION}; Path=/; HttpOnly"})
        if parts == ["me"]:  # the profile of whoever presents the token or the session cookie
            if self.headers.get("Authorization") == f"Bearer {JWT}" or f"session={SESSION}" in self.headers.get("Cookie", ""):
                return self.send_json(200, {"id": 7, "name": "Ada", "email": "ada@example.com"})
            return self.send_json(401, {"error": "login first"})
        if parts == ["oauth", "token"] and method == "POST":  # a form: client secret, refresh token
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            if form.get("refresh_token") != REFRESH_TOKEN:
                return self.send_json(400, {"error": "invalid_grant"})
            return self.send_json(200, {"access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 3600})
        if len(parts) == 2 and parts[0] in ("reset", "verify"):  # a token in the path
            return self.send_json(200, {"ok": True, "for": "ada"})
        if parts == ["secret"]:
            return self.send_json(200, {"ok": True}, {"Set-Cookie": "session=very-secret-cookie"})
        if parts == ["gzip"]:
            raw = json.dumps({"compressed": True, "n": 42}).encode()
            return self.send(200, gzip.compress(raw), headers={"Content-Encoding": "gzip"})
        if parts == ["badgzip"]:
            return self.send(200, b"this is not gzip at all", headers={"Content-Encoding": "gzip"})
        if parts == ["oddenc"]:
            return self.send(200, b"\x00\x01\x02", headers={"Content-Encoding": "snappy-ish"})
        if parts == ["binary"]:
            return self.send(200, bytes(range(256)) * 4, "application/octet-stream")
        if parts == ["broken"]:
            return self.send(200, b'{"a": 1, "b": [1, 2', "application/json")
        if parts == ["latin1"]:
            return self.send(200, '{"name": "Jos\xe9"}'.encode("latin-1"), "application/json")
        if parts == ["deep"]:
            return self.send(200, b"[" * 5000 + b"]" * 5000, "application/json")
        if parts == ["big"]:
            n = int(q.get("size", 2_000_000))
            return self.send_json(200, {"blob": "x" * n})
        if parts == ["html"]:
            return self.send(200, b"<html><body>hello</body></html>", "text/html")
        if parts == ["slow"]:
            time.sleep(float(q.get("s", 1)))
            return self.send_json(200, {"slow": True})
        if parts == ["flaky"]:  # fails when asked to: a 5xx for a resource that worked before
            if q.get("fail"):
                return self.send_json(503, {"error": "overloaded"})
            return self.send_json(200, {"flaky": "ok"})
        if len(parts) == 2 and parts[0] == "status":
            code = int(parts[1])
            return self.send_json(code, {"status": code, "error": "as asked"})
        if parts == ["echo"]:
            return self.send_json(200, {"method": method, "query": q, "body": body.decode("utf-8", "replace")})
        return self.send_json(404, {"error": "not found", "path": url.path})

    def twin(self, method: str, rest: list[str], q: dict, body: bytes):
        """/twin: accounts, a form login, posts filtered by owner (an envelope and a count),
        a visit counter whose answer changes every time (a recorded sequence)."""
        if rest == ["accounts"] and method == "POST":
            account = json.loads(body)["account"]
            n = len(TWIN["accounts"]) + 1
            TWIN["accounts"].append(account["username"])
            return self.send_json(201, {"account": {"id": n, "username": account["username"], "email": account["email"],
                                                    "bio": "", "createdAt": "2024-05-01T10:00:00Z"}})
        if rest == ["login"] and method == "POST":
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            return self.send_json(200, {"user": {"username": form["username"], "remember": int(form.get("remember", 0))}})
        if rest == ["posts"] and method == "POST":
            post = json.loads(body)["post"]
            post = {"slug": post["title"].lower().replace(" ", "-"), "title": post["title"], "owner": post["owner"], "likes": 0}
            TWIN["posts"].append(post)
            return self.send_json(201, {"post": post})
        if rest == ["posts"]:
            posts = [p for p in TWIN["posts"] if "owner" not in q or p["owner"] == q["owner"]]
            return self.send_json(200, {"posts": posts, "postsCount": len(posts)})
        if rest == ["visits"]:
            TWIN["visits"] += 1
            return self.send_json(200, {"visits": TWIN["visits"]})
        return self.send_json(404, {"error": "not found"})

    def books(self, method: str, rest: list[str], body: bytes):
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            return self.send_json(400, {"error": "bad json"})
        if not rest:
            if method == "POST":
                book = {**data, "id": max(BOOKS, default=0) + 1}
                BOOKS[book["id"]] = book
                return self.send_json(201, book, {"Location": f"/books/{book['id']}"})
            return self.send_json(200, list(BOOKS.values()))
        book = BOOKS.get(int(rest[0])) if rest[0].isdigit() else None
        if book is None:
            return self.send_json(404, {"error": "no such book"})
        if method in ("PUT", "PATCH"):
            if method == "PUT":
                book.clear()
                book["id"] = int(rest[0])
            book.update({k: v for k, v in data.items() if k != "id"})
        elif method == "DELETE":
            del BOOKS[book["id"]]
            return self.send(204, b"")
        return self.send_json(200, book)


def main(argv: list[str]) -> None:
    global VARIANT
    port = int(argv[0])
    tls = None
    if "--tls" in argv:
        tls = argv[argv.index("--tls") + 1]
    if "--variant" in argv:
        VARIANT = argv[argv.index("--variant") + 1]
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    if tls:
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
