"""Secrets never reach the store: credentials become placeholders before anything is learned.

A secret is found by its name (split into tokens, so `refreshToken` and `X-Auth-Token` are
secrets while `author`, `authority` and `authorId` are not) or by its shape (a JWT, a long
random token), in headers, the query, the path, JSON and form bodies, and URLs inside any of
them. It becomes `REDACTED-` and a keyed hash of it: the same secret gets the same
placeholder everywhere, so the token a login answered and the header that later carries it
agree, and a store learned with redaction still replays. The key is random per store (its
`meta` table), so a placeholder reveals nothing to whoever has only an export of it; and a
placeholder is never redacted again, so a client replaying what a mock answered matches too.

Whether a request carried credentials at all (not their value) is kept apart: it is part of
exact matching (see `learn.request_key`), so the 401 seen before a login and the profile seen
after it are two recordings.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import threading
import weakref
from urllib.parse import quote_plus, unquote_plus

from .exchange import Exchange, Request, Response, is_json_type
from .store import register_tables

PREFIX = "REDACTED-"
MARKER = "[redacted]"  # what stores written before placeholders hold
_PLACEHOLDER = re.compile(r"REDACTED-[0-9a-f]{12}")
META_KEY = "redact_key"

# --- names ------------------------------------------------------------------------------

# A name is split into lower-case tokens at `_ - . space` and camelCase boundaries. It names
# a secret when one of its tokens is one of these (or ends with one of SUFFIXES: `csrftoken`),
# unless its last token says it is about the secret, not the secret (`token_type`,
# `password_changed_at`, `token_url`).
WORDS = frozenset({
    "auth", "authorization", "authentication", "authn", "oauth", "password", "passwd", "passphrase",
    "pwd", "pass", "secret", "secrets", "token", "tokens", "jwt", "credential", "credentials",
    "cookie", "cookies", "signature", "sig", "session", "sess", "sessionid", "sessid", "phpsessid",
    "jsessionid", "otp", "totp", "csrf", "xsrf", "apikey", "accesskey", "secretkey", "privatekey",
    "bearer", "saml", "samlresponse",
})
SUFFIXES = ("token", "secret", "password", "passwd", "apikey", "sessionid", "sessid")
# `key` is a secret when something says which: `api_key`, `private_key`, `Ocp-Apim-Subscription-Key`.
KEY_KINDS = frozenset({
    "api", "access", "private", "secret", "subscription", "client", "signing", "encryption",
    "master", "auth", "session", "license", "app", "consumer", "shared", "ssh", "gpg", "pgp",
    "sas", "functions", "account", "storage", "service", "developer", "user",
})
ABOUT = frozenset({
    "type", "types", "expires", "expiry", "expiration", "exp", "in", "at", "ttl", "length",
    "len", "count", "url", "urls", "uri", "endpoint", "hint", "policy", "required", "enabled",
    "set", "changed", "updated", "created", "format", "method", "methods", "strength", "version",
    "status", "valid", "lifetime", "age", "name", "provider", "scheme", "scope", "scopes", "mode",
})
# Query and form parameters that are secrets on their own: Google's `key`, a signed URL's
# `sig`, OAuth's authorization `code`.
BARE_PARAMS = frozenset({"key", "sig", "code", "pw", "passcode", "apikey", "access_token"})
# Headers named like a secret that are no credential of the user's.
NOT_CREDENTIALS = frozenset({"idempotency-key", "sec-websocket-key", "x-csrf-token", "x-xsrf-token", "x-csrftoken"})

_TOKENS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


def name_tokens(name: str) -> list[str]:
    """`X-Amz-Credential` -> x amz credential; `refreshToken` -> refresh token; `APIKey` -> api key."""
    return [t.lower() for t in _TOKENS.findall(name)]


@functools.lru_cache(maxsize=8192)  # a handful of names, asked for on every exchange
def is_secret_name(name: str) -> bool:
    """A JSON field, cookie, header or parameter name that holds a secret."""
    tokens = name_tokens(name)
    if not tokens or tokens[-1] in ABOUT:
        return False
    for i, t in enumerate(tokens):
        if t in WORDS or t.endswith(SUFFIXES):
            return True
        if t == "key" and i > 0 and tokens[i - 1] in KEY_KINDS:
            return True
    return False


@functools.lru_cache(maxsize=4096)
def is_secret_header(name: str) -> bool:
    n = name.lower()
    if n in ("idempotency-key", "sec-websocket-key"):
        return False
    # a header ending in -Key is a key: X-Api-Key, X-Functions-Key, Ocp-Apim-Subscription-Key
    return is_secret_name(name) or n.endswith("-key") or n in ("apikey", "api-key", "key")


@functools.lru_cache(maxsize=4096)
def is_secret_param(name: str) -> bool:
    return name.lower() in BARE_PARAMS or is_secret_name(name)


@functools.lru_cache(maxsize=4096)
def _header_kind(name: str) -> str:
    """How a header's value is redacted: authorization (its scheme kept), cookie, set-cookie
    (each cookie's value), secret (all of it), plain (what looks like a secret in it)."""
    n = name.lower()
    if n in ("authorization", "proxy-authorization"):
        return "authorization"
    if n in ("cookie", "set-cookie"):
        return n
    return "secret" if is_secret_header(name) else "plain"


@functools.lru_cache(maxsize=4096)
def _credential_header(name: str) -> bool:
    n = name.lower()
    return n == "cookie" or (is_secret_header(name) and n not in NOT_CREDENTIALS and n != "set-cookie")


def has_credentials(headers) -> bool:
    """Whether a request carries credentials: an Authorization, Cookie or API-key header, or a
    JWT in any header (or the placeholder of one: a client of the mock sends back what it was
    given). Their values do not matter."""
    for k, v in headers:
        if v and (_credential_header(k) or PREFIX in v or "eyJ" in v and _JWT.search(v)):
            return True
    return False


# --- shapes -----------------------------------------------------------------------------

_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*)+")
_RUN = re.compile(r"[A-Za-z0-9_\-+/=]{24,}")
_ALNUM = re.compile(r"[A-Za-z0-9]+")
_WORD = re.compile(r"[a-z0-9_.~=+-]*")  # a path segment that is no fragment of a token
_URL_PARAM = re.compile(r"([?&;])([^=&#?;\s\"'<>]+)=([^&#;\s\"'<>]*)")
# Gates, for a whole body, before anything costlier: a run of 24 token characters is found by
# mapping them all to "a" (bytes.translate) and looking for 24 of those (bytes.find), ten
# times faster than a regex; every name `is_secret_name` takes holds one of the words of
# _NAME_GATE (searched in the lower-cased body, its first letters spelled out for sre).
_TOKEN_CHARS = bytes(ord("a") if chr(i) in "_-+/=" or (i < 128 and chr(i).isalnum()) else ord(" ") for i in range(256))
_24 = b"a" * 24
_NAME_GATE = re.compile(
    rb"a(?:uth|pikey)|p(?:ass|wd)|s(?:ecret|ig|ess|aml)|token|jwt|c(?:redential|ookie|srf)|otp|xsrf|key|bearer"
)
_STRING = r'"(?:[^"\\]|\\.)*"'
_NUMBER = r"-?\d[0-9.eE+-]*"
# `"name": value` with a string, a number or a flat list of them as the value
_MEMBER = re.compile(rf'({_STRING})\s*:\s*({_STRING}|{_NUMBER}|\[\s*(?:(?:{_STRING}|{_NUMBER})\s*,?\s*)*\])')
_ELEMENT = re.compile(rf"{_STRING}|{_NUMBER}")
# a multipart field: its headers (the name in Content-Disposition), its value, the next boundary
_PART = re.compile(rb'(Content-Disposition:[^\r\n]*?\bname="([^"]*)"[^\r\n]*\r\n(?:[^\r\n]+\r\n)*\r\n)(.*?)(\r\n--)',
                   re.I | re.S)


def _may_hold_secrets(data: bytes) -> tuple[bool, bool]:
    """(names, shapes): whether a body may hold a name `is_secret_name` takes, and whether it
    may hold a JWT, a random token or a URL parameter."""
    names = _NAME_GATE.search(data.lower()) is not None
    shapes = data.translate(_TOKEN_CHARS).find(_24) >= 0 or b"eyJ" in data or b"=" in data
    return names, shapes
MAX_TOKEN = 4096  # longer runs are data (inline images), not credentials


def _random(s: str) -> bool:
    """Whether a run of token characters looks like a random token, not a word, slug,
    identifier or path: base62/64 of 24+ characters mixing both cases and digits, or 32+
    single-case letters and digits (hex, base32) in one stretch. A uuid, a mongo id and
    a `how-to-train-a-dragon-2024` slug are not."""
    core = s.rstrip("=")
    n = len(core)
    if n < 24 or n > MAX_TOKEN:
        return False
    digits = sum(c.isdigit() for c in core)
    if digits < 2:
        return False
    upper = any(c.isupper() for c in core)
    lower = any(c.islower() for c in core)
    if not (upper or lower):
        return False
    longest = max(len(m) for m in _ALNUM.findall(core))
    if upper and lower:
        return longest >= 16
    return longest >= 32 and n - digits >= 4


def looks_secret(value: str) -> bool:
    """A whole value that is a JWT or a random token."""
    return bool(_JWT.fullmatch(value)) or (_RUN.fullmatch(value) is not None and _random(value))


# --- the key ----------------------------------------------------------------------------


@register_tables
def _create_key(db) -> None:
    """Every store gets its own key, once; workers sharing the file read the same one. (Only
    written when missing: a read-only store, opened for serving, runs this too.)"""
    if db.execute("select 1 from meta where key = ?", [META_KEY]).fetchone() is None:
        db.execute("insert or ignore into meta (key, value) values (?, ?)", [META_KEY, os.urandom(16).hex()])


_PROCESS_KEY = os.urandom(16)  # learning and answering without a store, in this process
_by_store: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_by_store_lock = threading.Lock()


def for_store(store) -> "Redactor":
    """The redactor of a store (its key from `meta`), one per store object."""
    if store is None:
        return Redactor(_PROCESS_KEY)
    with _by_store_lock:
        r = _by_store.get(store)
        if r is None:
            row = store.db.execute("select value from meta where key = ?", [META_KEY]).fetchone()
            if row is None:  # opened before this module registered its table hook
                _create_key(store.db)
                row = store.db.execute("select value from meta where key = ?", [META_KEY]).fetchone()
            r = _by_store[store] = Redactor(bytes.fromhex(row[0]))
        return r


def _unquote(literal: str) -> str:
    """A JSON string literal's value (the text between its quotes when it has no escapes)."""
    if "\\" not in literal:
        return literal[1:-1]
    try:
        return json.loads(literal)
    except ValueError:
        return literal[1:-1]


# --- redaction --------------------------------------------------------------------------


class Found:
    """The secrets one exchange gave up, by value: to scrub where they appear again unnamed
    (a body that echoes the Authorization header, a header that repeats a password). Kept in
    memory only, by whoever redacts that exchange's headers again (`Learner`)."""

    __slots__ = ("secrets", "_order")

    def __init__(self):
        self.secrets: dict[str, str] = {}
        self._order: list[str] | None = None

    def add(self, secret: str, placeholder: str) -> None:
        if secret not in self.secrets:
            self.secrets[secret] = placeholder
            self._order = None

    def scrub_text(self, text: str) -> str:
        """These secrets, where this text repeats them unnamed (the longest first)."""
        if not text:
            return text
        for secret in self._ordered():
            if secret in text:
                text = text.replace(secret, self.secrets[secret])
        return text

    def scrub_headers(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        if not self.secrets:
            return headers
        return [(k, v if PREFIX in v else self.scrub_text(v)) for k, v in headers]

    def scrub_bytes(self, data: bytes) -> bytes:
        if not data:
            return data
        for secret in self._ordered():
            raw = secret.encode("utf-8", "surrogateescape")
            if raw in data:
                data = data.replace(raw, self.secrets[secret].encode())
        return data

    def _ordered(self) -> list[str]:
        if self._order is None:
            self._order = sorted(self.secrets, key=len, reverse=True)
        return self._order


class Redactor:
    """Placeholders under one key. Thread-safe: it only reads its key and a bounded cache."""

    CACHE = 4096
    SCRUB_MIN = 6  # shorter secrets are not hunted in other text: "123" is everywhere

    def __init__(self, key: bytes):
        self.key = key
        self._cache: dict[str, str] = {}

    def placeholder(self, secret: str) -> str:
        if secret.startswith(PREFIX) and _PLACEHOLDER.fullmatch(secret):
            return secret
        p = self._cache.get(secret)
        if p is None:
            digest = hashlib.blake2b(secret.encode("utf-8", "surrogateescape"), key=self.key, digest_size=6)
            p = PREFIX + digest.hexdigest()
            if len(self._cache) >= self.CACHE:
                self._cache.clear()
            self._cache[secret] = p
        return p

    def _hide(self, secret: str, found: Found) -> str:
        if not secret or (secret.startswith(PREFIX) and _PLACEHOLDER.fullmatch(secret)):
            return secret
        p = self.placeholder(secret)
        if len(secret) >= self.SCRUB_MIN:
            found.add(secret, p)
        return p

    # -- free text: a header value, a query value, a string in a body --------------------

    def text(self, s: str, found: Found) -> str:
        """Secrets inside free text: parameters named like secrets in URLs, JWTs, random tokens."""
        if len(s) < 24 and "=" not in s:
            return s
        if "=" in s and ("?" in s or "&" in s):
            s = _URL_PARAM.sub(lambda m: self._url_param(m, found), s)
        if "eyJ" in s:
            s = _JWT.sub(lambda m: self._hide(m.group(), found), s)
        if len(s) >= 24:
            s = _RUN.sub(lambda m: self._run(m.group(), found), s)
        return s

    def _url_param(self, m: re.Match, found: Found) -> str:
        sep, name, value = m.groups()
        if not value or not is_secret_param(unquote_plus(name)):
            return m.group()
        return f"{sep}{name}={self._hide(unquote_plus(value), found)}"

    def _run(self, s: str, found: Found) -> str:
        if PREFIX in s:
            return s
        if "/" in s:
            parts = s.split("/")
            tokens = [_random(p) for p in parts]
            # a path (`/reset/<token>`): its words stay, its tokens go
            if any(tokens) and all(t or _WORD.fullmatch(p) for p, t in zip(parts, tokens)):
                return "/".join(self._hide(p, found) if t else p for p, t in zip(parts, tokens))
        if _random(s) and s.count("/") * 12 <= len(s):  # one token, base64 with its slashes
            return self._hide(s, found)
        if "/" in s:  # a path with other words: its tokens go
            return "/".join(self._hide(p, found) if _random(p) else p for p in s.split("/"))
        return s

    # -- headers ------------------------------------------------------------------------

    def headers(self, pairs, found: Found | None = None) -> list[tuple[str, str]]:
        found = found if found is not None else Found()
        out = []
        for k, v in pairs:
            kind = _header_kind(k)
            if not v:
                pass
            elif kind == "plain":
                v = self.text(v, found)
            elif kind == "authorization":
                scheme, sep, cred = v.partition(" ")
                v = f"{scheme} {self._hide(cred.strip(), found)}" if sep else self._hide(v, found)
            elif kind == "cookie":
                v = "; ".join(self._cookie(c, found) for c in v.split(";") if c.strip())
            elif kind == "set-cookie":
                first, sep, attrs = v.partition(";")
                v = self._cookie(first, found) + sep + attrs
            else:
                v = self._hide(v, found)
            out.append((k, v))
        return out

    def _cookie(self, pair: str, found: Found) -> str:
        """Every cookie's value: which of them hold the session is not knowable by name."""
        name, sep, value = pair.strip().partition("=")
        return f"{name}={self._hide(value, found)}" if sep else self._hide(name, found)

    # -- query and path -----------------------------------------------------------------

    def query(self, pairs, found: Found | None = None) -> list[tuple[str, str]]:
        found = found if found is not None else Found()
        return [(k, self._hide(v, found) if is_secret_param(k) else self.text(v, found)) for k, v in pairs]

    def path(self, path: str, found: Found | None = None) -> str:
        """Tokens in path segments (`/reset/<token>`, `/verify/<jwt>`), before the path is
        learned into a template: endpoint ids and OpenAPI paths never hold them."""
        if len(path) < 24:
            return path
        found = found if found is not None else Found()
        return "/".join(self._segment(s, found) if len(s) >= 24 else s for s in path.split("/"))

    def _segment(self, s: str, found: Found) -> str:
        if PREFIX in s:
            return s
        if looks_secret(s):
            return self._hide(s, found)
        return self.text(s, found)

    # -- bodies -------------------------------------------------------------------------

    def body(self, body: bytes, content_type: str, found: Found | None = None) -> bytes:
        found = found if found is not None else Found()
        if not body:
            return body
        ct = content_type.split(";")[0].strip().lower()
        if ct == "application/x-www-form-urlencoded":
            return self._form(body, found)
        if ct == "multipart/form-data":
            body = _PART.sub(lambda m: self._part(m, found), body)
        if is_json_type(ct) or body[:1] in (b"{", b"["):
            return self._json_body(body, found)
        if ct.startswith(("image/", "audio/", "video/", "font/")) or ct in ("text/css", "text/javascript",
                                                                            "application/javascript", "application/octet-stream"):
            return body
        return self._text_body(body, found)

    def _json_body(self, body: bytes, found: Found) -> bytes:
        """A JSON body, redacted in its own text: the rest of it stays byte for byte, at a
        fraction of the cost of parsing and walking it. A member `"name": value` whose name
        is a secret's gets a placeholder for its value (a string, a number, each of a flat
        list of them); then every token-shaped run, as in any text."""
        names, shapes = _may_hold_secrets(body)
        if not (names or shapes):
            return body
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError:
            return body  # binary: not ours to search
        new = text
        if names:
            new = _MEMBER.sub(lambda m: self._member(m, found), new)
        if shapes:
            if "\\/" in new:  # the same JSON, without the escapes that would break tokens apart
                new = new.replace("\\/", "/")
            new = self.text(new, found)
        return body if new == text else new.encode()

    def _member(self, m: re.Match, found: Found) -> str:
        name, value = m.group(1), m.group(2)
        if not is_secret_name(_unquote(name)):
            return m.group()
        if value[0] == "[":
            value = _ELEMENT.sub(lambda e: self._json_scalar(e.group(), found), value)
        else:
            value = self._json_scalar(value, found)
        return m.group()[: m.start(2) - m.start()] + value

    def _json_scalar(self, literal: str, found: Found) -> str:
        return '"' + self._hide(_unquote(literal) if literal[0] == '"' else literal, found) + '"'

    def _text_body(self, body: bytes, found: Found) -> bytes:
        if not _may_hold_secrets(body)[1]:
            return body
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return body  # binary: not ours to search
        new = self.text(text, found)
        return body if new == text else new.encode()

    def _part(self, m: re.Match, found: Found) -> bytes:
        """A multipart field named like a secret (not a file) gets a placeholder."""
        head, name, value = m.group(1), m.group(2), m.group(3)
        if b"filename=" in head or not is_secret_param(name.decode("utf-8", "replace")):
            return m.group()
        return head + self._hide(value.decode("utf-8", "surrogateescape"), found).encode() + m.group(4)

    def _form(self, body: bytes, found: Found) -> bytes:
        try:
            text = body.decode("ascii")
        except UnicodeDecodeError:
            return self._text_body(body, found)
        parts = []
        for pair in text.split("&"):
            name, sep, value = pair.partition("=")
            if sep and value:
                plain = unquote_plus(value)
                if is_secret_param(unquote_plus(name)):
                    value = self._hide(plain, found)
                else:
                    new = self.text(plain, found)
                    if new != plain:
                        value = quote_plus(new, safe="")
            parts.append(name + sep + value)
        return "&".join(parts).encode()

    # -- whole messages -----------------------------------------------------------------

    @staticmethod
    def keeps_key(req: Request) -> bool:
        """Whether redaction leaves what a request is matched by (path, query, body) as it is,
        known cheaply: for most requests a mock answers, a short path and nothing else. A
        path under 24 characters holds no token by shape, and a secret that a header gives up
        could only be repeated in it from a header named like a secret or a URL parameter."""
        if req.query or req.body or len(req.path) >= 24:
            return False
        for k, v in req.headers:
            if "=" in v or _header_kind(k) != "plain":
                return False
        return True

    def request(self, req: Request, found: Found | None = None) -> Request:
        """The request as it is stored and matched: a function of the request alone, so that
        the same request redacts to the same match key when it is learned and when it is
        answered."""
        found = found if found is not None else Found()
        headers = self.headers(req.headers, found)
        path = self.path(req.path, found)
        query = self.query(req.query, found)
        body = self.body(req.body, req.content_type, found)
        if found.secrets:  # a secret named in one place, repeated unnamed in another
            headers = found.scrub_headers(headers)
            path = found.scrub_text(path)
            query = [(k, found.scrub_text(v)) for k, v in query]
            body = found.scrub_bytes(body)
        return Request(req.method, req.host, path, query, headers, body, req.scheme, req.port)

    def response(self, resp: Response, found: Found | None = None) -> Response:
        found = found if found is not None else Found()
        headers = self.headers(resp.headers, found)
        body = self.body(resp.body, resp.content_type, found)
        if found.secrets:
            headers = found.scrub_headers(headers)
            body = found.scrub_bytes(body)
        return Response(resp.status, headers, body)

    def exchange(self, ex: Exchange, found: Found | None = None) -> Exchange:
        """Both messages; the response is also scrubbed of the request's secrets (an echo).
        `found` gets every secret found."""
        found = found if found is not None else Found()
        req = self.request(ex.request, found)
        resp = self.response(ex.response, found)
        return Exchange(req, resp, ex.started, ex.duration_ms)
