"""Auth emulation: virtual users, a login that issues real HS256 JWTs, protected resources.

The secret is generated once per store (kept in its meta table) unless configured, so no
two installations share a fixed key. A protected resource answers 401 without a valid,
unexpired token; rules (`owner`, `role:NAME`) answer 403; the token's user is handed to
the CRUD layer, which stamps it on the owner field of new rows.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import jwt

from mockstore.exchange import Request, Response

from .errors import HttpError
from .model import AuthConfig, Model, Resource
from .storage import Storage
from .validate import parse_body

ALGORITHM = "HS256"
BEARER = [("www-authenticate", 'Bearer realm="mockstore"')]


def store_secret(conn) -> str:
    """The per-store secret, created on first use and kept in the meta table."""
    conn.execute("create table if not exists meta (key text primary key, value text)")
    row = conn.execute("select value from meta where key = 'vb_jwt_secret'").fetchone()
    if row:
        return row[0]
    value = secrets.token_urlsafe(48)
    conn.execute("insert or ignore into meta (key, value) values ('vb_jwt_secret', ?)", [value])
    return conn.execute("select value from meta where key = 'vb_jwt_secret'").fetchone()[0]


class Auth:
    def __init__(self, model: Model, secret: str, lifetime: int = 3600):
        if not secret:
            raise ValueError("mock_jwt_secret: an empty secret is not allowed")
        self.model = model
        self.config: AuthConfig | None = model.auth
        self.secret = secret
        self.lifetime = lifetime

    # --- tokens ----------------------------------------------------------------------

    def issue(self, user: dict, now: float | None = None, lifetime: int | None = None) -> str:
        now = time.time() if now is None else now
        cfg = self.config or AuthConfig()
        users = self.model.resources.get(cfg.users)
        pk = users.pk if users else "id"
        claims = {"sub": str(user.get(pk)), "username": user.get(cfg.username_field),
                  "iat": int(now), "exp": int(now + (self.lifetime if lifetime is None else lifetime))}
        return jwt.encode(claims, self.secret, algorithm=ALGORITHM)

    def user(self, req: Request, ns: str, storage: Storage) -> tuple[dict | None, HttpError | None]:
        """The token's user, or the reason there is none (raised only where it matters)."""
        value = req.header("authorization") or ""
        scheme, _, token = value.partition(" ")
        # An API learned from traffic names its own scheme (`Token ...`); its tokens are ours all the same.
        learned = self.config is not None and self.config.token_field is not None
        if (scheme.lower() != "bearer" and not learned) or not token.strip():
            return None, HttpError(401, "authentication required: send Authorization: Bearer <token>", headers=BEARER)
        try:
            claims = jwt.decode(token.strip(), self.secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]})
        except jwt.ExpiredSignatureError:
            return None, HttpError(401, "the token has expired; log in again", headers=BEARER)
        except jwt.InvalidTokenError as e:
            return None, HttpError(401, f"the token is not valid: {e}", headers=BEARER)
        if self.config:
            row = storage.get(ns, self.config.users, str(claims["sub"]))
            if row is None:
                return None, HttpError(401, "the token's user no longer exists", headers=BEARER)
            return row, None
        return {"id": claims["sub"], **claims}, None

    # --- rules -----------------------------------------------------------------------

    def require(self, res: Resource, method: str, user: dict | None, error: HttpError | None) -> None:
        protected = res.protected in (True, "all") or (res.protected == "write" and method not in ("GET", "HEAD"))
        if protected and user is None:
            raise error or HttpError(401, "authentication required", headers=BEARER)

    def guard(self, action: str, res: Resource, row: dict | None, user: dict | None) -> None:
        rule = res.rules.get(action)
        if not rule:
            return
        if user is None:
            raise HttpError(401, f"authentication required to {action} a {res.name}", headers=BEARER)
        if rule == "owner":
            if row is None or not res.owner:
                return
            users = self.model.resources.get(self.config.users) if self.config else None
            mine = user.get(users.pk if users else "id")
            if str(row.get(res.owner)) != str(mine):
                raise HttpError(403, f"only the owner may {action} this {res.name}", res.owner)
        elif rule.startswith("role:"):
            if str(user.get("role")) != rule[5:]:
                raise HttpError(403, f"{action} on {res.name} needs the role {rule[5:]!r}", "role")

    # --- endpoints -------------------------------------------------------------------

    def endpoint(self, req: Request, segs: list[str], ns: str, storage: Storage, crud) -> Response | None:
        """Answer the login and register routes; None for anything else."""
        cfg = self.config
        method = req.method.upper()
        if cfg is None or method not in ("GET", "POST"):
            return None
        for prefix in cfg.prefixes:
            p = [s for s in prefix.split("/") if s]
            rest = "/" + "/".join(segs[len(p):]) if segs[: len(p)] == p else None
            if cfg.token_field is not None:
                if method == "GET" and cfg.me and rest == cfg.me:
                    return self._me(req, ns, storage)
                if method == "POST" and rest in (cfg.login, cfg.register):
                    return self._learned(req, ns, storage, crud, prefix, rest == cfg.register)
                continue
            if method != "POST":
                continue
            if rest == cfg.login:
                return self._login(req, ns, storage)
            if cfg.register and rest == cfg.register:
                return self._register(req, ns, crud, prefix)
        return None

    def _find(self, ns: str, storage: Storage, username: Any) -> dict | None:
        for row in storage.rows(ns, self.config.users):
            if row.get(self.config.username_field) == username:
                return row
        return None

    def _credentials(self, req: Request) -> tuple[dict, str, str]:
        body = parse_body(req.body, req.content_type)
        cfg = self.config
        username, password = body.get(cfg.username_field), body.get(cfg.password_field)
        for name, value in ((cfg.username_field, username), (cfg.password_field, password)):
            if not isinstance(value, str) or not value:
                raise HttpError(422, f"{name} is required", name)
        return body, username, password

    def _login(self, req: Request, ns: str, storage: Storage) -> Response:
        _, username, password = self._credentials(req)
        row = self._find(ns, storage, username)
        if row is None or not secrets.compare_digest(str(row.get(self.config.password_field, "")), password):
            raise HttpError(401, "wrong username or password", headers=BEARER)
        users = self.model.resources[self.config.users]
        return Response.make_json(200, {"access_token": self.issue(row), "token_type": "bearer",
                                        "expires_in": self.lifetime, "user": crud_public(users, row)})

    def _register(self, req: Request, ns: str, crud, prefix: str) -> Response:
        body, username, _ = self._credentials(req)
        users = self.model.resources[self.config.users]
        from .crud import Route

        resp = crud.create(Route(users, prefix), users, body, ns, None)
        row = crud.storage.get(ns, users.name, str(resp.json()[users.pk]))
        data = {"access_token": self.issue(row), "token_type": "bearer", "expires_in": self.lifetime,
                "user": crud_public(users, row)}
        return Response.make_json(201, data, [h for h in resp.headers if h[0] == "location"])


    # --- accounts as a real API has them (learned: see mockstore.vb.infer) ----------------

    def _account(self, row: dict, token: str | None) -> dict:
        """The account as sign-up, sign-in and the current-user route answer it."""
        cfg = self.config
        users = self.model.resources[cfg.users]
        public = crud_public(users, row)
        out = {k: public[k] for k in cfg.view or public if k in public}
        if token is not None:
            out[cfg.token_field] = token
        return {cfg.item_key: out} if cfg.item_key else out

    def _learned(self, req: Request, ns: str, storage: Storage, crud, prefix: str, register: bool) -> Response:
        cfg = self.config
        body = parse_body(req.body, req.content_type)
        if cfg.item_key and isinstance(body.get(cfg.item_key), dict):
            body = dict(body[cfg.item_key])
        password = body.get(cfg.password_field)
        if not isinstance(password, str) or not password:
            raise HttpError(422, f"{cfg.password_field} is required", cfg.password_field)
        users = self.model.resources[cfg.users]
        if register:
            if not body.get(users.pk):
                raise HttpError(422, f"{users.pk} is required", users.pk)
            from .crud import Route

            key = str(body[users.pk])
            if storage.get(ns, users.name, key) is not None and key not in users.replayed_keys:
                raise HttpError(422, f"{users.pk}: {body[users.pk]!r} is already taken", users.pk)
            crud.create(Route(users, prefix), users, body, ns, None)
            row = storage.get(ns, users.name, str(body[users.pk]))
            return Response.make_json(201, self._account(row, self.issue(row)))
        by = cfg.login_field or cfg.username_field
        row = next((r for r in storage.rows(ns, users.name) if r.get(by) == body.get(by)), None)
        if row is None or not secrets.compare_digest(str(row.get(cfg.password_field, "")), password):
            raise HttpError(401, f"wrong {by} or {cfg.password_field}")
        return Response.make_json(200, self._account(row, self.issue(row)))

    def _me(self, req: Request, ns: str, storage: Storage) -> Response:
        user, error = self.user(req, ns, storage)
        if user is None:
            raise error or HttpError(401, "authentication required")
        return Response.make_json(200, self._account(user, None))


def crud_public(res: Resource, row: dict) -> dict:
    return {k: v for k, v in row.items() if not (res.fields.get(k) and res.fields[k].write_only)}
