"""A real-world style API for the twin tests: token auth, resources keyed by slug and username,
envelopes and counts. Our own design (not a public demo app's), so tuning to it hides nothing.

    python tests/realworld_backend.py PORT

Accounts sign up (`POST /accounts {"account": {...}}`) or sign in (`POST /accounts/login`) and
get a token; requests send it as `Authorization: Token ...`. Posts are keyed by a slug the
server derives from the title; they can be liked, replied to, listed with filters. Members can
be subscribed to. Everything lives in memory: a restart is a fresh API.
"""

from __future__ import annotations

import json
import re
import secrets
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

LOCK = threading.Lock()
ACCOUNTS: dict[str, dict] = {}  # username -> {"username", "email", "password", "bio"}
TOKENS: dict[str, str] = {}  # token -> username
POSTS: dict[str, dict] = {}  # slug -> stored post (likers, replies kept inside)
SUBSCRIPTIONS: set[tuple[str, str]] = set()  # (subscriber, member)
CLOCK = [0]


def now() -> str:
    CLOCK[0] += 1
    return f"2026-01-01T00:{CLOCK[0] // 60 % 60:02d}:{CLOCK[0] % 60:02d}Z"


def slugify(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "post"


def account_view(username: str, token: str | None = None) -> dict:
    a = ACCOUNTS[username]
    out = {"username": username, "email": a["email"], "bio": a["bio"]}
    if token is not None:
        out["token"] = token
    return out


def member_view(username: str, viewer: str | None) -> dict:
    return {"username": username, "bio": ACCOUNTS[username]["bio"],
            "subscribed": (viewer, username) in SUBSCRIPTIONS}


def post_view(p: dict, viewer: str | None) -> dict:
    return {
        "slug": p["slug"], "title": p["title"], "body": p["body"], "labels": list(p["labels"]),
        "owner": p["owner"], "createdAt": p["createdAt"], "liked": viewer in p["likers"],
        "likesCount": len(p["likers"]), "repliesCount": len(p["replies"]),
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def send_json(self, status: int, value=None) -> None:
        body = b"" if value is None else json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def error(self, status: int, message: str) -> None:
        self.send_json(status, {"errors": {"body": [message]}})

    def body(self) -> dict:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            value = json.loads(raw) if raw else {}
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def viewer(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        return TOKENS.get(auth[6:]) if auth.startswith("Token ") else None

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_PUT(self):
        self.route("PUT")

    def do_DELETE(self):
        self.route("DELETE")

    def route(self, method: str) -> None:
        url = urlsplit(self.path)
        segs = [s for s in url.path.split("/") if s]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        data = self.body() if method in ("POST", "PUT") else {}
        with LOCK:
            self.dispatch(method, segs, query, data, self.viewer())

    def dispatch(self, method: str, segs: list[str], query: dict, data: dict, viewer: str | None) -> None:
        match method, segs:
            case "POST", ["accounts"]:
                return self.sign_up(data.get("account") or {})
            case "POST", ["accounts", "login"]:
                return self.sign_in(data.get("account") or {})
            case "GET", ["me"]:
                if viewer is None:
                    return self.error(401, "sign in first")
                return self.send_json(200, {"account": account_view(viewer)})
            case "GET", ["members", name]:
                if name not in ACCOUNTS:
                    return self.error(404, "no such member")
                return self.send_json(200, {"member": member_view(name, viewer)})
            case ("PUT" | "DELETE"), ["members", name, "subscription"]:
                if viewer is None:
                    return self.error(401, "sign in first")
                if name not in ACCOUNTS:
                    return self.error(404, "no such member")
                (SUBSCRIPTIONS.add if method == "PUT" else SUBSCRIPTIONS.discard)((viewer, name))
                return self.send_json(200, {"member": member_view(name, viewer)})
            case "GET", ["posts"]:
                return self.list_posts(query, viewer)
            case "POST", ["posts"]:
                if viewer is None:
                    return self.error(401, "sign in first")
                return self.create_post(data.get("post") or {}, viewer)
        if len(segs) >= 2 and segs[0] == "posts":
            post = POSTS.get(segs[1])
            if post is None:
                return self.error(404, "no such post")
            return self.post_routes(method, post, segs[2:], data, viewer)
        self.error(404, "no such route")

    def sign_up(self, a: dict) -> None:
        username, email, password = a.get("username"), a.get("email"), a.get("password")
        if not all(isinstance(v, str) and v for v in (username, email, password)):
            return self.error(422, "username, email and password are required")
        if username in ACCOUNTS:
            return self.error(422, "username is taken")
        ACCOUNTS[username] = {"email": email, "password": password, "bio": ""}
        token = secrets.token_hex(16)
        TOKENS[token] = username
        self.send_json(201, {"account": account_view(username, token)})

    def sign_in(self, a: dict) -> None:
        found = next((u for u, acc in ACCOUNTS.items() if acc["email"] == a.get("email")), None)
        if found is None or ACCOUNTS[found]["password"] != a.get("password"):
            return self.error(401, "wrong email or password")
        token = secrets.token_hex(16)
        TOKENS[token] = found
        self.send_json(200, {"account": account_view(found, token)})

    def create_post(self, p: dict, viewer: str) -> None:
        title, body, labels = p.get("title"), p.get("body"), p.get("labels") or []
        if not isinstance(title, str) or not title or not isinstance(body, str):
            return self.error(422, "title and body are required")
        slug = slugify(title)
        if slug in POSTS:
            return self.error(422, "a post with this title exists")
        POSTS[slug] = {"slug": slug, "title": title, "body": body, "labels": [str(x) for x in labels],
                       "owner": viewer, "createdAt": now(), "likers": set(), "replies": []}
        self.send_json(201, {"post": post_view(POSTS[slug], viewer)})

    def list_posts(self, query: dict, viewer: str | None) -> None:
        posts = list(reversed(POSTS.values()))  # newest first
        if "owner" in query:
            posts = [p for p in posts if p["owner"] == query["owner"]]
        if "label" in query:
            posts = [p for p in posts if query["label"] in p["labels"]]
        if "liked_by" in query:
            posts = [p for p in posts if query["liked_by"] in p["likers"]]
        try:
            limit, offset = int(query.get("limit", 20)), int(query.get("offset", 0))
        except ValueError:
            return self.error(422, "limit and offset are numbers")
        page = posts[offset: offset + limit]
        self.send_json(200, {"posts": [post_view(p, viewer) for p in page], "postsCount": len(posts)})

    def post_routes(self, method: str, post: dict, rest: list[str], data: dict, viewer: str | None) -> None:
        match method, rest:
            case "GET", []:
                return self.send_json(200, {"post": post_view(post, viewer)})
            case "DELETE", []:
                if viewer != post["owner"]:
                    return self.error(403, "not your post")
                del POSTS[post["slug"]]
                return self.send_json(204)
            case ("PUT" | "DELETE"), ["like"]:
                if viewer is None:
                    return self.error(401, "sign in first")
                (post["likers"].add if method == "PUT" else post["likers"].discard)(viewer)
                return self.send_json(200, {"post": post_view(post, viewer)})
            case "GET", ["replies"]:
                return self.send_json(200, {"replies": list(post["replies"])})
            case "POST", ["replies"]:
                if viewer is None:
                    return self.error(401, "sign in first")
                text = (data.get("reply") or {}).get("body")
                if not isinstance(text, str) or not text:
                    return self.error(422, "body is required")
                ids = [r["id"] for r in post["replies"]]
                reply = {"id": max(ids, default=0) + 1, "body": text, "author": viewer, "createdAt": now()}
                post["replies"].append(reply)
                return self.send_json(201, {"reply": reply})
        self.error(404, "no such route")


def main() -> None:
    port = int(sys.argv[1])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
