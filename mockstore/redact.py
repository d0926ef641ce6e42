"""Secrets never reach the store: credentials in headers and query strings are replaced.

The value becomes a fixed marker, so matching and learning still see that a credential was
there, but the file on disk cannot leak it.
"""

from __future__ import annotations

import functools
import re

MARKER = "[redacted]"

SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "apikey",
        "x-auth-token",
        "x-access-token",
        "x-csrf-token",
        "x-xsrf-token",
    }
)
_SECRET_NAME = re.compile(r"(token|secret|passw|api[-_]?key|apikey|session|signature|auth)", re.I)


@functools.lru_cache(maxsize=4096)  # a handful of names, asked for on every exchange
def is_secret_header(name: str) -> bool:
    n = name.lower()
    return n in SECRET_HEADERS or bool(_SECRET_NAME.search(n))


@functools.lru_cache(maxsize=4096)
def is_secret_param(name: str) -> bool:
    n = name.lower()
    return n in ("key", "sig", "code") or bool(_SECRET_NAME.search(n))


def headers(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, MARKER if is_secret_header(k) else v) for k, v in pairs]


def query(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, MARKER if is_secret_param(k) else v) for k, v in pairs]


def secret_values(headers: list[tuple[str, str]], query: list[tuple[str, str]]) -> list[bytes]:
    """The secrets in a request, to scrub where a body echoes them (`Bearer x` gives `x` too)."""
    values = [v for k, v in headers if is_secret_header(k)] + [v for k, v in query if is_secret_param(k)]
    out = set()
    for v in values:
        for part in (v, v.split(" ", 1)[-1]):
            if len(part) >= 6:
                out.add(part.encode())
    return sorted(out, key=len, reverse=True)


def scrub(body: bytes, secrets: list[bytes]) -> bytes:
    for secret in secrets:
        if secret in body:
            body = body.replace(secret, MARKER.encode())
    return body
