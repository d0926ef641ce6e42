"""The twin answers a new client as it answered the recorded one (issue 13, items 2, 3, 6):
the closest recording by meaning (same query keys, same place in the sequence), the request's
own values carried into an adapted answer, and recorded sequences rewound per client session."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from conftest import MOCKSTORE

from mockstore import options
from mockstore.answer import _carry, _param_names, _request_fields
from mockstore.exchange import Request, Response
from mockstore.sessions import Sessions


def carried(body, old=None, new=None, *, template="/", req: Request | None = None):
    resp = Response.make_json(200, body)
    fields = _request_fields(req) if req is not None else []
    return json.loads(_carry(resp, old or {}, new or {}, fields=fields, names=_param_names(template)).body)


def json_request(value, path="/accounts") -> Request:
    return Request("POST", "api.test", path, [], [("Content-Type", "application/json")], json.dumps(value).encode())


# --- carrying the request's values (pure) ---------------------------------------------------


def test_body_fields_go_into_envelopes():
    recorded = {"account": {"id": 1, "username": "alice", "email": "a@x.io", "bio": ""}}
    req = json_request({"account": {"username": "bob", "email": "b@x.io", "password": "pw"}})
    assert carried(recorded, req=req) == {"account": {"id": 1, "username": "bob", "email": "b@x.io", "bio": ""}}


def test_body_fields_nearest_path_wins_and_kinds_are_kept():
    recorded = {"post": {"title": "A", "author": {"name": "alice"}, "tags": ["x"], "meta": {"n": 1}}}
    req = json_request({"post": {"title": "B", "tags": ["y", "z"], "meta": "text"}, "author": {"name": "bob"}})
    got = carried(recorded, req=req)
    assert got == {"post": {"title": "B", "author": {"name": "bob"}, "tags": ["y", "z"], "meta": {"n": 1}}}


def test_what_the_server_made_of_a_value_is_made_of_the_new_one():
    recorded = {"post": {"title": "Alice's First Day", "slug": "alice-s-first-day", "url": "https://b.io/p/alice-s-first-day",
                         "by": "me", "summary": "About Alice's First Day"}}
    was = _request_fields(json_request({"post": {"title": "Alice's First Day", "by": "me"}}))
    req = json_request({"post": {"title": "Bob at Sea", "by": "me"}})
    resp = Response.make_json(201, recorded)
    got = json.loads(_carry(resp, {}, {}, fields=_request_fields(req), was=was).body)
    assert got == {"post": {"title": "Bob at Sea", "slug": "bob-at-sea", "url": "https://b.io/p/bob-at-sea", "by": "me",
                            "summary": "About Bob at Sea"}}


def test_the_mitmweb_comment_names_the_source():
    from mitmproxy.test import tflow

    from mockstore import flows

    f = tflow.tflow()
    flows.respond(f, Response.make_json(200, {}), "failover-adapted")
    assert f.comment == "mockstore: failover-adapted" and f.response.headers["X-Mockstore-Source"] == "failover-adapted"


def test_form_fields_coerced_to_the_recorded_type():
    req = Request("POST", "api.test", "/login", [], [("Content-Type", "application/x-www-form-urlencoded")],
                  b"username=bob&remember=1&password=pw")
    got = carried({"user": {"username": "alice", "remember": 0}}, req=req)
    assert got == {"user": {"username": "bob", "remember": 1}}


def test_path_parameters_go_where_they_were_never_as_new_fields():
    orders = [{"id": 5, "user_id": 42, "total": 42}, {"id": 42, "user_id": 42, "total": 3}]
    got = carried(orders, {"id": "42"}, {"id": "77"}, template="/users/{id}/orders")
    assert got == [{"id": 5, "user_id": 77, "total": 42}, {"id": 42, "user_id": 77, "total": 3}]
    got = carried({"user": {"id": 42, "name": "x"}, "orders": orders}, {"id": "42"}, {"id": "77"}, template="/users/{id}")
    assert got["user"]["id"] == 77 and [o["id"] for o in got["orders"]] == [5, 42]
    got = carried({"post": {"slug": "alice-post", "url": "/p/alice-post"}}, {"slug": "alice-post"}, {"slug": "bob-post"},
                  template="/posts/{slug}")
    assert got == {"post": {"slug": "bob-post", "url": "/p/bob-post"}}
    got = carried({"order": {"id": 1, "user_id": 42}}, {"user_id": "42"}, {"user_id": "77"}, template="/users/{user_id}/orders/1")
    assert got == {"order": {"id": 1, "user_id": 77}}


# --- sessions (pure) -------------------------------------------------------------------------


def test_sessions_new_credential_or_idle_gap():
    s = Sessions(gap=30)
    assert not s.new([], now=0)
    assert not s.new([("Authorization", "Bearer a")], now=1), "signing in is no new run"
    assert not s.new([], now=2) and not s.new([("Authorization", "Bearer a")], now=3)
    assert s.new([("authorization", "Bearer b")], now=4)
    assert not s.new([("Cookie", "sid=1"), ("Authorization", "Bearer b")], now=5), "a cookie set during the run"
    assert not s.new([("Cookie", "sid=1; csrftoken=9"), ("Authorization", "Bearer b")], now=6)
    assert s.new([("Cookie", "sid=2; csrftoken=9")], now=7), "another session cookie"
    assert s.new([], now=40)
    assert not Sessions(gap=0).new([], now=1e9)


@pytest.mark.parametrize("text", ["abc", "-1", "inf", "nan"])
def test_session_gap_option_refused_by_name(text):
    with pytest.raises(ValueError, match="mock_session_gap"):
        options.check("mock_session_gap", text)


def test_session_gap_option_read():
    assert options.check("mock_session_gap", "0") == 0.0 and options.check("mock_session_gap", "2.5") == 2.5


# --- through a real proxy ---------------------------------------------------------------------


def learned(backend, proxy, script, **mock_options):
    """Learn `script(client)` through a real mitmdump, stop the backend, serve the store in
    mock mode."""
    api, url = backend()
    p = proxy(url)
    with p.client() as c:
        script(c)
    p.stop()
    api.kill()
    return proxy(url, mode="mock", db=p.db, **mock_options)


def test_unseen_query_value_takes_the_recording_with_its_key_in_step(backend, proxy):
    def alice(c):
        assert c.get("/twin/posts").json()["postsCount"] == 1
        assert c.get("/twin/posts", params={"owner": "alice"}).json()["postsCount"] == 0
        c.post("/twin/posts", json={"post": {"title": "first", "owner": "alice"}})
        assert c.get("/twin/posts", params={"owner": "alice"}).json()["postsCount"] == 1

    mock = learned(backend, proxy, alice)
    with mock.client() as c:
        r = c.get("/twin/posts", params={"owner": "bob"})
        assert (r.headers["x-mockstore-source"], r.json()) == ("adapted", {"posts": [], "postsCount": 0})
        r = c.get("/twin/posts", params={"owner": "bob"})
        assert r.headers["x-mockstore-source"] == "adapted"
        assert r.json()["postsCount"] == 1 and r.json()["posts"][0]["owner"] == "bob"
        r = c.get("/twin/posts")
        assert r.headers["x-mockstore-source"] == "recorded" and r.json()["postsCount"] == 1


def test_adapted_create_register_login_carry_the_request_values(backend, proxy):
    def alice(c):
        c.post("/twin/accounts", json={"account": {"username": "alice", "email": "alice@x.io", "password": "pw-alice"}})
        c.post("/twin/login", data={"username": "alice", "password": "pw-alice", "remember": "0"})
        c.post("/twin/posts", json={"post": {"title": "Alice first", "owner": "alice"}})

    mock = learned(backend, proxy, alice)
    with mock.client() as c:
        r = c.post("/twin/accounts", json={"account": {"username": "bob", "email": "bob@y.io", "password": "pw-bob"}})
        assert (r.status_code, r.headers["x-mockstore-source"]) == (201, "adapted")
        assert r.json() == {"account": {"id": 1, "username": "bob", "email": "bob@y.io", "bio": "",
                                        "createdAt": "2024-05-01T10:00:00Z"}}
        r = c.post("/twin/login", data={"username": "bob", "password": "pw-bob", "remember": "1"})
        assert r.headers["x-mockstore-source"] == "adapted" and r.json() == {"user": {"username": "bob", "remember": 1}}
        r = c.post("/twin/posts", json={"post": {"title": "Bob at sea", "owner": "bob"}})
        assert r.json() == {"post": {"slug": "bob-at-sea", "title": "Bob at sea", "owner": "bob", "likes": 0}}


def visits(c, **headers) -> int:
    r = c.get("/twin/visits", headers=headers)
    assert r.headers["x-mockstore-source"] == "recorded"
    return r.json()["visits"]


def record_visits(c):
    for _ in range(3):
        c.get("/twin/visits", headers={"Authorization": "Bearer token-of-alice-1234"})


def test_new_token_rewinds_recorded_sequences(backend, proxy):
    mock = learned(backend, proxy, record_visits)
    with mock.client() as c:
        run = [visits(c, Authorization="Bearer token-of-bob") for _ in range(4)]
        again = [visits(c, Authorization="Bearer token-of-carol") for _ in range(2)]
    assert run == [1, 2, 3, 3] and again == [1, 2]


def test_idle_gap_rewinds_recorded_sequences(backend, proxy):
    mock = learned(backend, proxy, record_visits, mock_session_gap="1")
    auth = {"Authorization": "Bearer token-of-bob"}
    with mock.client() as c:
        assert [visits(c, **auth) for _ in range(2)] == [1, 2]
        time.sleep(1.5)
        assert [visits(c, **auth) for _ in range(2)] == [1, 2]


@pytest.mark.parametrize("runner", ["mitmdump", "serve"])
def test_mockstore_rewind_reaches_a_running_proxy(backend, proxy, runner):
    mock = learned(backend, proxy, record_visits, mock_session_gap="0", runner=runner)
    auth = {"Authorization": "Bearer token-of-bob"}
    with mock.client() as c:
        assert [visits(c, **auth) for _ in range(3)] == [1, 2, 3]
        out = subprocess.run([MOCKSTORE, "rewind", "--db", str(mock.db)], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        time.sleep(2.5)  # the proxy looks once a second
        assert [visits(c, **auth) for _ in range(2)] == [1, 2]


def test_mockstore_rewind_without_a_store(tmp_path):
    out = subprocess.run([MOCKSTORE, "rewind", "--db", str(tmp_path / "none.db")], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "no store" in out.stderr and not (tmp_path / "none.db").exists()
