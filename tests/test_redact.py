"""Secrets stay out of the store, consistently, and auth semantics survive redaction.

The end-to-end tests learn through a real proxy from the test backend's login routes, then
search the raw bytes of the store (db, WAL), the HAR export and the OpenAPI export for every
secret it saw; and stand in for the backend in mock mode, where a request without credentials
gets the answer seen without them."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from urllib.parse import quote, quote_plus

import httpx
import pytest

import backend as api
from conftest import MOCKSTORE
from mockstore import redact
from mockstore.answer import Responder
from mockstore.exchange import Exchange, Request, Response
from mockstore.learn import Learner, request_key
from mockstore.model import Model
from mockstore.store import Store

KEY = b"k" * 16

# --- names and shapes ---------------------------------------------------------------------


@pytest.mark.parametrize("name", [
    "password", "client_secret", "refresh_token", "private_key", "token", "access_token", "refreshToken",
    "id_token", "pwd", "access_key", "jwt", "X-Amz-Credential", "Ocp-Apim-Subscription-Key", "X-Auth-Token",
    "Authorization", "auth", "sessionId", "csrftoken", "newPassword", "APIKey", "X-Amz-Security-Token",
])
def test_secret_names_by_token(name):
    assert redact.is_secret_param(name) and redact.is_secret_header(name)


@pytest.mark.parametrize("name", [
    "author", "authority", "authorId", "author_name", "authored_at", "token_type", "expires_in",
    "token_expires_in", "password_changed_at", "keyword", "sort_key", "monkey", "passenger", "WWW-Authenticate",
])
def test_names_that_only_look_like_secrets(name):
    assert not redact.is_secret_param(name) and not redact.is_secret_header(name)


@pytest.mark.parametrize("value", [api.JWT, api.ID_TOKEN, "6dcb09b5b57875f334f61aebed695e2e4193db5e",
                                   "Xk9fQ2mZ8pL4vR7tY1wB3nC6", "k9f02mz8pl4vr7ty1wb3nc6aq5s0d2f7"])
def test_token_shapes(value):
    assert redact.looks_secret(value)


@pytest.mark.parametrize("value", [
    "550e8400-e29b-41d4-a716-446655440000", "507f1f77bcf86cd799439011", "how-to-train-a-dragon-2024-edition",
    "getUserAccountSettingsV2Handler", "2024-01-01T10:00:00Z", "ThisIsAVeryLongCamelCaseIdentifier",
    "/api/v1/accounts/12345678/orders",
])
def test_values_that_are_not_tokens(value):
    assert not redact.looks_secret(value)
    assert redact.Redactor(KEY).text(value, redact.Found()) == value


# --- consistency ----------------------------------------------------------------------------


def test_the_same_secret_gets_the_same_placeholder_everywhere():
    r = redact.Redactor(KEY)
    p = r.placeholder(api.JWT)
    assert p.startswith("REDACTED-") and r.placeholder(p) == p  # a placeholder stays as it is
    ex = r.exchange(Exchange(
        Request("POST", "api", f"/verify/{api.JWT}", [("jwt", api.JWT)], [("Authorization", f"Bearer {api.JWT}"),
                ("X-Assertion", api.JWT), ("content-type", "application/json")], json.dumps({"token": api.JWT}).encode()),
        Response(200, [("content-type", "application/json")], json.dumps({"id_token": api.JWT, "echo": f"got {api.JWT}"}).encode()),
    ))
    assert ex.request.path == f"/verify/{p}"
    assert ex.request.query == [("jwt", p)]
    assert ex.request.headers[:2] == [("Authorization", f"Bearer {p}"), ("X-Assertion", p)]
    assert json.loads(ex.request.body) == {"token": p}
    assert json.loads(ex.response.body) == {"id_token": p, "echo": f"got {p}"}
    assert redact.Redactor(b"o" * 16).placeholder(api.JWT) != p  # another store, another key


def test_what_is_not_secret_is_kept_byte_for_byte():
    r = redact.Redactor(KEY)
    body = b'{"author":  "Herbert",\n "authority": 3, "authorId": 7, "id": "507f1f77bcf86cd799439011"}'
    assert r.body(body, "application/json") == body
    form = b"grant_type=refresh_token&scope=a+b%20c&client_secret=s3cr3t-value&author=x"
    assert r.body(form, "application/x-www-form-urlencoded") == (
        b"grant_type=refresh_token&scope=a+b%20c&client_secret=" + r.placeholder("s3cr3t-value").encode() + b"&author=x"
    )
    assert r.query([("author", "x"), ("authorId", "3")]) == [("author", "x"), ("authorId", "3")]


def test_secrets_in_urls_inside_values():
    r = redact.Redactor(KEY)
    text = "https://app.example.com/callback?code=oauth-code-123&state=42&pwd=hunter22"
    assert r.text(text, redact.Found()) == (
        f"https://app.example.com/callback?code={r.placeholder('oauth-code-123')}&state=42&pwd={r.placeholder('hunter22')}"
    )


# --- matching: credentials present or not ------------------------------------------------------


def test_credentials_are_part_of_the_match_key_but_not_their_value():
    r = redact.Redactor(KEY)

    def key(*headers):
        return request_key(Request("GET", "api", "/me", headers=list(headers)), r)

    anonymous = key()
    assert key(("Authorization", "Bearer a")) == key(("Authorization", "Bearer b")) != anonymous
    assert key(("Cookie", "session=1")) != anonymous
    assert key(("Ocp-Apim-Subscription-Key", "k1")) != anonymous
    assert key(("X-Assertion", api.JWT)) != anonymous
    assert key(("Accept", "*/*"), ("X-Csrf-Token", "t")) == anonymous


def test_a_login_and_the_calls_that_use_its_token_replay(tmp_path):
    """In memory, through the Learner and the Responder: what the proxy does in both modes."""
    store = Store(tmp_path / "m.db")
    model = Model()
    learner = Learner(model, store)
    me = Request("GET", "api", "/me")
    authed = Request("GET", "api", "/me", headers=[("Authorization", f"Bearer {api.JWT}")])
    login = Request("POST", "api", "/login", headers=[("content-type", "application/json")],
                    body=json.dumps({"username": "ada", "password": api.PASSWORD}).encode())
    learner.learn(Exchange(me, Response.make_json(401, {"error": "login first"})))
    learner.learn(Exchange(login, Response.make_json(200, {"token": api.JWT})))
    learner.learn(Exchange(authed, Response.make_json(200, {"name": "Ada"})))
    responder = Responder(model, store, latency=False)
    assert responder.answer(authed).response.json() == {"name": "Ada"}
    assert responder.answer(me).response.status == 401
    token = responder.answer(login).response.json()["token"]
    assert token.startswith("REDACTED-")
    with_placeholder = Request("GET", "api", "/me", headers=[("Authorization", f"Bearer {token}")])
    assert responder.answer(with_placeholder).response.json() == {"name": "Ada"}
    store.close()


def test_a_new_store_is_its_owners_alone(tmp_path):
    old = os.umask(0o022)
    try:
        store = Store(tmp_path / "new.db")
        store.db.execute("create table t (x)")
        assert stat.S_IMODE((tmp_path / "new.db").stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "new.db-wal").stat().st_mode) == 0o600
        store.close()
    finally:
        os.umask(old)


# --- through a real proxy ------------------------------------------------------------------------

CLIENT_SECRET = "cs_live_8Hn2Kq5Wz1Xv7Bc4"
PRIVATE_KEY = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----"
PWD = "pw-for-the-query-31337"
ACCESS_KEY = "AKIAZ7Q4EXAMPLE99KEY"
QUERY_JWT = "eyJhbGciOiJub25lIn0.eyJxdWVyeSI6InRva2VuLWluLXRoZS1xdWVyeSJ9.c2lnLWluLXRoZS1xdWVyeQ"
AMZ_CREDENTIAL = "AKIAIOSFODNN7EXAMPLE/20240101/us-east-1/s3/aws4_request"
SUBSCRIPTION_KEY = "apim-0f4c2a91d7e84b6c"
HEADER_JWT = "eyJhbGciOiJIUzI1NiJ9.eyJoZWFkZXIiOiJhc3NlcnRpb24ifQ.aGVhZGVyLWp3dC1zaWduYXR1cmU"
RESET_TOKEN = "Rz8Lq2Wn5Xc1Vb7Mk4Jd9Hf3"
VERIFY_JWT = "eyJhbGciOiJIUzI1NiJ9.eyJ2ZXJpZnkiOiJhZGFAZXhhbXBsZS5jb20ifQ.dmVyaWZ5LWp3dC1zaWduYXR1cmU"

SECRETS = {
    "JSON body password": api.PASSWORD, "form body client_secret": CLIENT_SECRET,
    "form body refresh_token": api.REFRESH_TOKEN, "nested private_key": "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7",
    "login token": api.JWT, "login access_token": api.ACCESS_TOKEN, "login refreshToken": api.REFRESH_TOKEN,
    "login id_token": api.ID_TOKEN, "session cookie": api.SESSION, "query pwd": PWD, "query access_key": ACCESS_KEY,
    "query jwt": QUERY_JWT, "query X-Amz-Credential": AMZ_CREDENTIAL, "Ocp-Apim-Subscription-Key": SUBSCRIPTION_KEY,
    "a header holding a JWT": HEADER_JWT, "/reset/<token>": RESET_TOKEN, "/verify/<jwt>": VERIFY_JWT,
}


def _forms(secret: str) -> set[bytes]:
    """A secret as it could be written anywhere: as it is, URL- or JSON-encoded, and the
    parts of a JWT or a credential path (each one gives the secret away)."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}
    if secret.startswith("eyJ"):
        forms |= {p for p in secret.split(".")[1:] if len(p) >= 8}
    if "/" in secret:
        forms.add(secret.split("/")[0])
    return {f.encode() for f in forms}


def _leaks(data: bytes) -> list[str]:
    return sorted(what for what, secret in SECRETS.items() if any(f in data for f in _forms(secret)))


def _learn_the_login_routes(c: httpx.Client) -> None:
    assert c.get("/me").status_code == 401  # before logging in
    login = c.post("/login", json={"username": "ada", "password": api.PASSWORD})
    assert login.json()["token"] == api.JWT
    assert c.post("/login", data={"username": "ada", "password": api.PASSWORD}).status_code == 200  # a form
    assert c.get("/me", headers={"Authorization": f"Bearer {api.JWT}"}).json()["name"] == "Ada"
    assert c.get("/me", headers={"Cookie": f"session={api.SESSION}"}).json()["name"] == "Ada"


def _wait_recorded(db, n: int) -> None:
    import sqlite3

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                if conn.execute("select count(*) from exchanges").fetchone()[0] >= n:
                    if conn.execute("select count(*) from endpoints").fetchone()[0]:
                        return
        except sqlite3.OperationalError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"fewer than {n} exchanges recorded")


def test_no_secret_reaches_the_store_the_wal_or_the_exports(backend, proxy, tmp_path):
    _, url = backend()
    p = proxy(url)
    with p.client() as c:
        _learn_the_login_routes(c)
        token = c.post("/oauth/token", data={"grant_type": "refresh_token", "client_id": "app",
                                             "client_secret": CLIENT_SECRET, "refresh_token": api.REFRESH_TOKEN})
        assert token.json()["access_token"] == api.ACCESS_TOKEN
        assert c.post("/items", json={"name": "deploy", "credentials": {"ssh": {"private_key": PRIVATE_KEY}}}).status_code == 201
        q = {"pwd": PWD, "access_key": ACCESS_KEY, "jwt": QUERY_JWT, "X-Amz-Credential": AMZ_CREDENTIAL, "page": "2"}
        assert c.get("/echo", params=q).json()["query"]["pwd"] == PWD
        assert c.get("/ok/sub", headers={"Ocp-Apim-Subscription-Key": SUBSCRIPTION_KEY,
                                         "X-Client-Assertion": HEADER_JWT}).status_code == 200
        for path in (f"/reset/{RESET_TOKEN}", f"/verify/{VERIFY_JWT}"):
            assert c.get(path).json()["ok"] is True
    _wait_recorded(p.db, 11)
    files = sorted(p.db.parent.glob(p.db.name + "*"))
    assert any(f.name.endswith("-wal") for f in files)
    # the WAL holds what was written since the last checkpoint: search it now
    assert {f.name: _leaks(f.read_bytes()) for f in files} == {f.name: [] for f in files}
    assert {f.name: oct(stat.S_IMODE(f.stat().st_mode)) for f in files} == {f.name: "0o600" for f in files}
    p.stop()
    for f in p.db.parent.glob(p.db.name + "*"):
        assert _leaks(f.read_bytes()) == [], f

    har, spec = tmp_path / "out.har", tmp_path / "out.json"
    for cmd, out in (("export-har", har), ("export-openapi", spec)):
        subprocess.run([MOCKSTORE, cmd, "--db", str(p.db), "-o", str(out)], check=True, capture_output=True)
        assert _leaks(out.read_bytes()) == [], cmd
    doc = json.loads(spec.read_text())
    assert any(path.startswith("/reset/") for path in doc["paths"])  # learned, without the token
    logins = [e for e in json.loads(har.read_text())["log"]["entries"] if e["request"]["url"].endswith("/login")]
    assert logins and all('"token": "REDACTED-' in e["response"]["content"]["text"] for e in logins)

    # one secret, one placeholder: the token the login answered is the one /me was called with
    import sqlite3

    db = sqlite3.connect(p.db)
    body = db.execute("select resp_body from exchanges where path = '/login' order by id limit 1").fetchone()[0]
    placeholder = json.loads(body)["token"]
    assert placeholder.startswith("REDACTED-")
    headers = [json.loads(h) for (h,) in db.execute("select req_headers from exchanges where path = '/me'")]
    assert ["Authorization", f"Bearer {placeholder}"] in [h for hs in headers for h in hs]


def test_me_answers_as_it_was_seen_with_and_without_credentials(backend, proxy):
    """Item 5: in mock mode, the token first gets the profile (not the 401 recorded before the
    login), and no token gets the 401 (not the profile recorded after it)."""
    real, url = backend()
    learn = proxy(url, runner="serve")
    with learn.client() as c:
        _learn_the_login_routes(c)
        assert c.get("/echo", params={"author": "x"}).json()["query"] == {"author": "x"}
        assert c.get("/echo", params={"author": "y"}).json()["query"] == {"author": "y"}
    _wait_recorded(learn.db, 7)
    learn.stop()

    real.stop()  # mock mode never asks it anyway
    mock = proxy(url, mode="mock", db=learn.db, runner="serve")
    with mock.client() as c:
        r = c.get("/me", headers={"Authorization": f"Bearer {api.JWT}"})
        assert (r.status_code, r.json().get("name")) == (200, "Ada")
        assert r.headers["x-mockstore-source"] == "recorded"
        assert c.get("/me").status_code == 401
        assert c.get("/me").status_code == 401
        assert c.get("/me", headers={"Authorization": "Bearer some-other-token"}).status_code == 200

        import sqlite3

        rows = sqlite3.connect(learn.db).execute("select query, match_key from exchanges where path = '/echo'").fetchall()
        assert sorted(json.loads(q) for q, _ in rows) == [[["author", "x"]], [["author", "y"]]]
        assert len({k for _, k in rows}) == 2  # two recordings, not one redacted author
        # ?author=y first: a redacted author would have answered x's recording
        assert c.get("/echo", params={"author": "y"}).json()["query"] == {"author": "y"}
        assert c.get("/echo", params={"author": "x"}).json()["query"] == {"author": "x"}
    with mock.client() as c:  # a client of the mock logs in and uses what it was given
        login = c.post("/login", json={"username": "ada", "password": api.PASSWORD})
        token = login.json()["token"]
        assert token.startswith("REDACTED-") and login.cookies.get("session", "").startswith("REDACTED-")
        assert c.get("/me").json()["name"] == "Ada"  # with the session cookie the mock gave
    with mock.client() as c:
        assert c.get("/me", headers={"Authorization": f"Bearer {token}"}).json()["name"] == "Ada"


def test_the_cheap_way_to_a_key_gives_the_same_key():
    """`keeps_key` lets a plain request skip redaction; only when redaction would change nothing."""
    r = redact.Redactor(KEY)
    plain = Request("GET", "api", "/users/42", headers=[("Accept", "*/*"), ("User-Agent", "x" * 40)])
    assert r.keeps_key(plain) and request_key(plain, r) == request_key(plain)
    for req in (
        Request("GET", "api", "/users/abcdef1", headers=[("Authorization", "Bearer abcdef1")]),
        Request("GET", "api", "/users/abcdef1", headers=[("Referer", "https://x/?pwd=abcdef1")]),
        Request("GET", "api", f"/reset/{RESET_TOKEN}"),
    ):
        assert not r.keeps_key(req)
        assert r.request(req).path != req.path


def test_multipart_fields_named_like_secrets():
    r = redact.Redactor(KEY)
    body = (b'--XX\r\nContent-Disposition: form-data; name="username"\r\n\r\nada\r\n'
            b'--XX\r\nContent-Disposition: form-data; name="password"\r\n\r\nhunter2-long\r\n'
            b'--XX\r\nContent-Disposition: form-data; name="token"; filename="t.txt"\r\nContent-Type: text/plain\r\n\r\nfile\r\n--XX--\r\n')
    out = r.body(body, "multipart/form-data; boundary=XX")
    assert out == body.replace(b"hunter2-long", r.placeholder("hunter2-long").encode())


def test_an_exchange_learned_again_is_redacted_as_the_first(tmp_path):
    """A header that repeats a password from the body is scrubbed on the full path; when only
    a volatile header changed (`learn_again`), the headers recorded anew are scrubbed alike."""
    from mockstore.learn import Fingerprint

    store = Store(tmp_path / "m.db")
    learner = Learner(Model(), store)
    password = "hunter2-but-longer"

    def exchange(date: str) -> tuple:
        req = Request("POST", "api", "/login", headers=[("content-type", "application/json"), ("X-Debug", password)],
                      body=json.dumps({"password": password}).encode())
        resp = Response.make_json(200, {"ok": True}, [("Date", date)])
        wire = tuple((k.encode(), v.encode()) for k, v in req.headers), tuple((k.encode(), v.encode()) for k, v in resp.headers)
        return Exchange(req, resp, time.time(), 1.0), Fingerprint(1, hash(wire), *wire)

    ex, fp = exchange("Thu, 23 Nov 2026 10:00:00 GMT")
    learner.learn(ex, fingerprint=fp)
    ex, fp = exchange("Thu, 23 Nov 2026 10:00:01 GMT")
    assert learner.learn_again(fp, ex.started, 1.0) is not None
    learner.catch_up()
    assert store.flush()
    rows = store.reader().execute("select req_headers, req_body, resp_headers from exchanges").fetchall()
    assert len(rows) == 2 and "10:00:01" in rows[1][2]
    assert not [r for r in rows if password in repr(r)]
    store.close()


def test_the_key_is_the_stores(tmp_path):
    """Every process on one store file (workers, a later mock) makes the same placeholders."""
    a, b, other = Store(tmp_path / "a.db"), Store(tmp_path / "a.db"), Store(tmp_path / "b.db")
    pa = redact.for_store(a).placeholder(api.JWT)
    assert redact.for_store(b).placeholder(api.JWT) == pa != redact.for_store(other).placeholder(api.JWT)
    for s in (a, b, other):
        s.close()
    again = Store(tmp_path / "a.db")
    assert redact.for_store(again).placeholder(api.JWT) == pa
    again.close()
