"""The admin API and the dashboard: a tornado app on the proxy's own event loop, on its own
port (`mock_admin`), calling `mockstore.control` for everything it does.

Tornado is what mitmproxy's web UI runs on, so it comes with mitmproxy; like mitmweb, the app
is started from the `running` hook, on mitmproxy's loop. With `serve --workers N` only worker
slot 0 serves it: the store is shared, so what it reads and writes reaches every worker
(`mockstore.changes`).

Security: loopback by default; every request carries the store's token (generated once per
store and kept in its `meta` table, printed at start as the dashboard's URL), as `Authorization:
Bearer`, `?token=` or the cookie the page sets; the Host header must name this server (no DNS
rebinding) and an Origin, if sent, must be this server's (no cross-site POST or WebSocket).
A bind beyond loopback needs an explicit `mock_admin_token`.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import secrets
import sqlite3
import sys
import urllib.request
from typing import Any

log = logging.getLogger("mockstore.admin")

DEFAULT = "127.0.0.1:8089"

OPTIONS: list[tuple[str, type, Any, str]] = [
    ("mock_admin", str, DEFAULT,
     "The admin API and dashboard: HOST:PORT ('127.0.0.1:0' picks a free port), or 'off'."),
    ("mock_admin_token", str, "",
     "The admin API's token (default: generated once per store). Needed to listen beyond loopback."),
]


def parse_bind(text: str) -> tuple[str, int] | None:
    """'127.0.0.1:8089' -> ('127.0.0.1', 8089); '[::1]:0' -> ('::1', 0); 'off' -> None."""
    text = (text or "").strip()
    if text.lower() in ("off", "none", "false", "no", ""):
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"mock_admin must be HOST:PORT (e.g. 127.0.0.1:8089) or 'off', not {text!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_options(opts: Any) -> tuple[str, int] | None:
    """The bind address, or ValueError: a bad address, or beyond loopback without a token."""
    bind = parse_bind(getattr(opts, "mock_admin", DEFAULT))
    token = getattr(opts, "mock_admin_token", "")
    if token and len(token) < 16:
        raise ValueError("mock_admin_token must be at least 16 characters")
    if bind is not None and not is_loopback(bind[0]) and not token:
        raise ValueError(
            f"mock_admin: refusing to serve the admin API on {bind[0]} (beyond loopback) without an explicit "
            "token: set mock_admin_token to a long random secret, or listen on 127.0.0.1"
        )
    return bind


def store_token(db) -> str:
    """The store's admin token, made on first use (a sqlite3 connection or sqlite_utils db);
    a store that cannot be written (served read-only) gets one for this run only."""
    row = db.execute("select value from meta where key = 'admin_token'").fetchone()
    if row is not None:
        return row[0]
    token = secrets.token_urlsafe(24)
    try:
        db.execute("insert or ignore into meta (key, value) values ('admin_token', ?)", [token])
    except sqlite3.Error:
        return token
    return db.execute("select value from meta where key = 'admin_token'").fetchone()[0]


# Where the admin API of the proxy running on the store listens, while it runs (written at its
# start, removed at its stop): how the command line asks a running proxy what it does now.
URL_KEY = "admin_url"


def record_url(db, url: str) -> None:
    db.execute("insert or replace into meta (key, value) values (?, ?)", [URL_KEY, url])


def forget_url(db, url: str) -> None:
    """Only if it is still this server's: another proxy may have started on the store since."""
    db.execute("delete from meta where key = ? and value = ?", [URL_KEY, url])


def recorded_url(db) -> str | None:
    row = db.execute("select value from meta where key = ?", [URL_KEY]).fetchone()
    return row[0] if row else None


def ask(url: str, token: str, path: str, timeout: float = 2.0) -> Any:
    """GET `path` of the admin API at `url`: its JSON, or None if nothing answers there with this
    token (the proxy was killed, or another store's proxy has the port now)."""
    request = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {token}"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 directly
    try:
        with opener.open(request, timeout=timeout) as r:
            return json.loads(r.read())
    except (OSError, ValueError):  # refused, timed out, 401 (urllib.error.HTTPError is an OSError), not JSON
        return None


def say(text: str) -> None:
    """A line for the person who started the proxy, whatever the log level (as Jupyter does)."""
    print(text, file=sys.stderr, flush=True)
