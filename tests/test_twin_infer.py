"""The twin generalizes: learned from one user's session against a real-world style API
(tests/realworld_backend.py), through a real mitmdump, it understands the API's shape
(parameters named by the values the conversation carried, resources keyed by slug and
username) and serves another user's session in mock mode with the backend stopped."""

from __future__ import annotations

import json
import re
import sys

import httpx
import pytest

from conftest import ROOT, free_port
from mockstore.model import Model
from mockstore.paths import PathTemplates
from mockstore.store import connect


def slugify(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


class Checks:
    """What a frontend checks, each one counted: (name, passed)."""

    def __init__(self):
        self.results: list[tuple[str, bool]] = []

    def __call__(self, name: str, ok) -> bool:
        self.results.append((name, bool(ok)))
        return bool(ok)

    def passed(self) -> set[str]:
        return {n for n, ok in self.results if ok}


def _json(r: httpx.Response):
    try:
        return r.json()
    except ValueError:
        return None


def session(client: httpx.Client, user: str, titles: tuple[str, str], labels: tuple[str, str]) -> Checks:
    """One user's whole session: sign up, sign in, post twice, filter, like, reply, subscribe,
    delete; every answer checked as a frontend would."""
    c = Checks()
    email, password = f"{user}@mail.test", f"pw-{user}-secret"
    r = client.post("/accounts", json={"account": {"username": user, "email": email, "password": password}})
    a = (_json(r) or {}).get("account") or {}
    c("sign up 201", r.status_code == 201)
    c("sign up username", a.get("username") == user)
    c("sign up email", a.get("email") == email)
    c("sign up token", isinstance(a.get("token"), str) and a.get("token"))
    r = client.post("/accounts/login", json={"account": {"email": email, "password": password}})
    a = (_json(r) or {}).get("account") or {}
    c("sign in 200", r.status_code == 200)
    c("sign in username", a.get("username") == user)
    token = a.get("token") if isinstance(a.get("token"), str) else "none"
    auth = {"Authorization": f"Token {token}"}
    r = client.get("/me", headers=auth)
    c("me 200", r.status_code == 200)
    c("me username", ((_json(r) or {}).get("account") or {}).get("username") == user)

    slugs = [slugify(t) for t in titles]
    for title, slug, lbls in zip(titles, slugs, ([labels[0]], list(labels))):
        r = client.post("/posts", headers=auth, json={"post": {"title": title, "body": f"About {title}.", "labels": lbls}})
        p = (_json(r) or {}).get("post") or {}
        c(f"create {slug} 201", r.status_code == 201)
        c(f"create {slug} slug", p.get("slug") == slug)
        c(f"create {slug} title", p.get("title") == title)
        c(f"create {slug} owner", p.get("owner") == user)
        c(f"create {slug} labels", p.get("labels") == lbls)
        c(f"create {slug} not liked", p.get("liked") is False and p.get("likesCount") == 0)
    r = client.get(f"/posts/{slugs[0]}", headers=auth)
    p = (_json(r) or {}).get("post") or {}
    c("read post 200", r.status_code == 200)
    c("read post title", p.get("title") == titles[0])

    def listing(name: str, query: dict, expect: list[str], total: int | None = None) -> None:
        r = client.get("/posts", params=query, headers=auth)
        d = _json(r) or {}
        posts = d.get("posts") if isinstance(d.get("posts"), list) else []
        c(f"{name} 200", r.status_code == 200)
        c(f"{name} slugs", [p.get("slug") for p in posts if isinstance(p, dict)] == expect)
        c(f"{name} count", d.get("postsCount") == (len(expect) if total is None else total))

    listing("by owner", {"owner": user}, slugs[::-1])
    listing("by label", {"label": labels[1]}, [slugs[1]])
    r = client.put(f"/posts/{slugs[0]}/like", headers=auth)
    p = (_json(r) or {}).get("post") or {}
    c("like 200", r.status_code == 200)
    c("like flips", p.get("liked") is True and p.get("likesCount") == 1)
    listing("liked by", {"liked_by": user}, [slugs[0]])
    r = client.delete(f"/posts/{slugs[0]}/like", headers=auth)
    p = (_json(r) or {}).get("post") or {}
    c("unlike flips", p.get("liked") is False and p.get("likesCount") == 0)

    r = client.post(f"/posts/{slugs[0]}/replies", headers=auth, json={"reply": {"body": f"Nice, {user}"}})
    rep = (_json(r) or {}).get("reply") or {}
    c("reply 201", r.status_code == 201)
    c("reply body", rep.get("body") == f"Nice, {user}" and rep.get("author") == user)
    r = client.get(f"/posts/{slugs[0]}/replies", headers=auth)
    reps = (_json(r) or {}).get("replies") or []
    c("replies listed", [x.get("body") for x in reps if isinstance(x, dict)] == [f"Nice, {user}"])
    r = client.get(f"/posts/{slugs[0]}", headers=auth)
    c("replies counted", ((_json(r) or {}).get("post") or {}).get("repliesCount") == 1)

    r = client.get(f"/members/{user}", headers=auth)
    m = (_json(r) or {}).get("member") or {}
    c("member 200", r.status_code == 200)
    c("member username", m.get("username") == user and m.get("subscribed") is False)
    r = client.put(f"/members/{user}/subscription", headers=auth)
    c("subscribe flips", ((_json(r) or {}).get("member") or {}).get("subscribed") is True)
    r = client.delete(f"/members/{user}/subscription", headers=auth)
    c("unsubscribe flips", ((_json(r) or {}).get("member") or {}).get("subscribed") is False)

    listing("first page", {"owner": user, "limit": "1", "offset": "0"}, [slugs[1]], total=2)
    r = client.delete(f"/posts/{slugs[1]}", headers=auth)
    c("delete 204", r.status_code == 204)
    listing("after delete", {"owner": user}, [slugs[0]])
    r = client.get(f"/posts/{slugs[1]}", headers=auth)
    c("deleted is gone", r.status_code == 404)
    return c


@pytest.fixture
def realworld(procs):
    """start() -> (proc, base_url) of tests/realworld_backend.py"""

    def start():
        port = free_port()
        return procs([sys.executable, str(ROOT / "tests" / "realworld_backend.py"), str(port)], port), f"http://127.0.0.1:{port}"

    return start


A = ("alice", ("Hello World From Alice", "Second Thoughts"), ("intro", "musings"))
B = ("bruno", ("Bruno Writes Code", "Bikes And Rivers"), ("tech", "outdoors"))


def test_backend_session_passes_against_itself(realworld):
    """The scripted client and the backend agree: every check passes for any user."""
    _, url = realworld()
    with httpx.Client(base_url=url, timeout=10) as client:
        for who in (A, B):
            checks = session(client, *who)
            failed = [n for n, ok in checks.results if not ok]
            assert not failed and len(checks.results) > 40


@pytest.fixture
def learned_a(realworld, proxy):
    """User A's whole session learned through a real mitmdump; the backend is then stopped.
    -> (db path, A's checks against the real backend, the stopped backend's URL)"""
    backend, url = realworld()
    p = proxy(url, mode="learn")
    with p.client() as client:
        checks = session(client, *A)
    p.stop()
    backend.stop()
    return p.db, checks, url


def _templates(db) -> set[str]:
    conn = connect(db, readonly=True)
    try:
        return {ep.template for ep in Model.load(conn).endpoints.values()}
    finally:
        conn.close()


def test_path_parameters_named_by_the_conversation(learned_a):
    """Each instance path was seen once, its value carried earlier in the conversation: the
    username A signed up with, the slugs the API returned. Each is a parameter named after
    the field that carried it; no literal instance path is left."""
    db, checks, _ = learned_a
    assert not [n for n, ok in checks.results if not ok]
    templates = _templates(db)
    assert "/members/{username}" in templates
    assert "/members/{username}/subscription" in templates
    assert "/posts/{slug}" in templates and "/posts/{slug}/like" in templates
    assert "/posts/{slug}/replies" in templates
    assert "/me" in templates and "/accounts/login" in templates
    user, titles, _ = A
    literal = [t for t in templates if user in t or any(slugify(x) in t for x in titles)]
    assert not literal, literal


def test_exported_openapi_names_parameters(learned_a, tmp_path):
    from click.testing import CliRunner

    from mockstore.cli import cli

    db, _, _ = learned_a
    out = tmp_path / "api.json"
    result = CliRunner().invoke(cli, ["export-openapi", "--db", str(db), "-o", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    paths = doc["paths"]
    assert "/members/{username}" in paths
    params = paths["/members/{username}"]["parameters"]
    assert [p["name"] for p in params] == ["username"] and params[0]["in"] == "path"
    user, titles, _ = A
    assert not [p for p in paths if user in p or any(slugify(x) in p for x in titles)]
    # one operation per real operation
    ops = sorted(f"{m.upper()} {p}" for p, item in paths.items() for m in item if m in ("get", "put", "post", "delete"))
    assert ops == sorted([
        "POST /accounts", "POST /accounts/login", "GET /me", "POST /posts", "GET /posts", "GET /posts/{slug}",
        "DELETE /posts/{slug}", "PUT /posts/{slug}/like", "DELETE /posts/{slug}/like", "POST /posts/{slug}/replies",
        "GET /posts/{slug}/replies", "GET /members/{username}", "PUT /members/{username}/subscription",
        "DELETE /members/{username}/subscription",
    ])


def test_echoes_name_parameters_and_stay_bounded():
    t = PathTemplates()
    t.note_values("h", {"account": {"username": "alice", "email": "a@x.test"}})
    t.note_values("h", {"posts": [{"slug": "second-thoughts", "labels": ["intro"]}], "postsCount": 1})
    t.note_values("h", {"reply": {"author": "alice"}})  # named by where it first came from
    assert t.learn("h", "/members/alice")[0] == "/members/{username}"
    assert t.learn("h", "/posts/second-thoughts/like")[0] == "/posts/{slug}/like"
    assert t.learn("h", "/labels/intro")[0] == "/labels/{label}"
    assert t.learn("h", "/alice")[0] == "/alice"  # a root segment is a collection name
    assert t.learn("h", "/members/nobody")[0] == "/members/nobody"  # never carried
    # a merged copy keeps the names (kinds travel with the state)
    other = PathTemplates()
    other.merge(t.to_state())
    assert "/members/{username}" in other.templates()
    # bounded: a flood of values forgets the oldest, one body cannot flush everything
    for i in range(40):
        t.note_values("h", {"items": [{"name": f"v{i}x{j}"} for j in range(300)]})
    assert len(t._echoes["h"]) <= 4096
    assert t.learn("h", "/things/v39x0")[0] == "/things/{name}"
    assert t.learn("h", "/things2/v0x0")[0] == "/things2/v0x0"


def _serve_learned(proxy, db, upstream):
    """Mock mode for the API that was learned (its address, now dead, as the upstream: what
    is not stateful is answered from the recordings of that host)."""
    return proxy(upstream, mode="mock", db=db, runner="serve", mock_vb_learned="true")


def test_a_new_users_session_against_the_learned_twin(learned_a, proxy, realworld):
    """B (other name, titles, labels, filters) against the mock learned from A's session, the
    backend stopped: every check that passes against the real API passes against the mock,
    with B's own values (sign-up and sign-in tokens accepted, /me is B, B's slugs, B's counts).
    A's session then runs twice more as it was learned: its own creates replay."""
    db, _, learned_url = learned_a
    _, url = realworld()  # a fresh real API, for what B's session should see
    with httpx.Client(base_url=url, timeout=10) as client:
        real = session(client, *B).passed()
    mock = _serve_learned(proxy, db, learned_url)
    with mock.client() as client:
        checks = session(client, *B)
        twin = checks.passed()
        assert len(real & twin) >= 0.99 * len(real), sorted(real - twin)
        # an unknown token is nobody; writes need one
        assert client.get("/me", headers={"Authorization": "Token nope"}).status_code == 401
        assert client.post("/posts", json={"post": {"title": "Anonymous", "body": "x", "labels": []}}).status_code == 401
        # what B created is there, under B's slug, in B's envelope
        r = client.get(f"/posts/{slugify(B[1][0])}")
        assert r.json()["post"]["owner"] == B[0] and r.json()["post"]["title"] == B[1][0]
        # deleting an item takes it out of every list that showed it
        token = client.post("/accounts/login", json={"account": {"email": f"{B[0]}@mail.test", "password": f"pw-{B[0]}-secret"}})
        auth = {"Authorization": f"Token {token.json()['account']['token']}"}
        r = client.post("/posts", headers=auth, json={"post": {"title": "Short Lived", "body": "x", "labels": ["tech"]}})
        assert r.status_code == 201 and r.json()["post"]["slug"] == "short-lived"
        assert client.put("/posts/short-lived/like", headers=auth).json()["post"]["likesCount"] == 1
        lists = [{"liked_by": B[0]}, {"label": "tech"}, {"owner": B[0]}, {}]
        before = [client.get("/posts", params=q).json() for q in lists]
        assert all("short-lived" in [p["slug"] for p in d["posts"]] for d in before)
        assert client.delete("/posts/short-lived", headers=auth).status_code == 204
        after = [client.get("/posts", params=q).json() for q in lists]
        for b, a in zip(before, after):
            assert "short-lived" not in [p["slug"] for p in a["posts"]]
            assert a["postsCount"] == b["postsCount"] - 1 == len(a["posts"])
        # A's own session, twice more without a restart: as it passed against the real API
        for _ in range(2):
            again = session(client, *A)
            assert not [n for n, ok in again.results if not ok]


def test_resources_infer_explains_each_decision(learned_a):
    from click.testing import CliRunner

    from mockstore.cli import cli

    db, _, _ = learned_a
    result = CliRunner().invoke(cli, ["resources", "infer", "--db", str(db)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "posts (/posts, pk slug" in out and "members (/members, pk username" in out and "replies (/replies" in out
    for why in ("one item travels as {'post': {...}}",
                "lists travel as {'posts': [...], 'postsCount': n}",
                "the server makes 'slug' from 'title'",
                "'owner' is the signed-in user",
                "'liked' flips, 'likesCount' moves; ?liked_by= lists what a user turned on",
                "'subscribed' flips",
                "?owner=", "?label= matches an item of 'labels'", "?limit=", "?offset=",
                "replies live under each post", "deleting a post deletes its replies",
                "GET /me answers the token's user", "sign-in (POST /accounts/login, by 'email')",
                "'repliesCount' counts its replies", "/members itself was never requested"):
        assert why in out, why


def test_processes_that_saw_the_body_and_the_path_apart_agree():
    """Workers learning one store: one saw the sign-up, another the member's path. Whichever
    merges whom, `/members/alice` ends up `/members/{username}` on both sides (the side that
    saw the body names it; the parameter keeps the values it took, so the other side folds its
    literal), and the fold is reported so the model moves what was counted under it."""
    bodies, paths = PathTemplates(), PathTemplates()
    bodies.learn("h", "/accounts")
    bodies.note_values("h", {"account": {"username": "alice"}})
    paths.learn("h", "/members/alice/subscription")
    paths.learn("h", "/members/alice")
    # the side with the body takes the other's paths
    bodies.merge(paths.to_state())
    assert {"/members/{username}", "/members/{username}/subscription"} <= set(bodies.templates("h"))
    assert not [t for t in bodies.templates("h") if "alice" in t]
    # the side with only the paths takes the first side's state back
    paths.merge(bodies.to_state())
    assert not [t for t in paths.templates("h") if "alice" in t], paths.templates("h")
    assert ("/members/alice", "/members/{username}") in paths.last_folds
    assert paths.match("h", "/members/bruno") == ("/members/{username}", {"username": "bruno"})
    # and a later path there with a value it now knows goes into the parameter too
    assert paths.learn("h", "/members/alice")[0] == "/members/{username}"
