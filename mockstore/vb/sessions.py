"""Per-client isolation: each session value gets its own copy of the seeded data.

The value comes from a header or a cookie of the configured name. It is hashed into a
namespace name, so whatever a client sends never reaches a table name or a file path.
Sessions idle longer than the TTL are dropped by the sweep.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from http.cookies import CookieError, SimpleCookie

from mockstore.exchange import Request

from .storage import DEFAULT, Storage


def session_value(req: Request, name: str) -> str | None:
    value = req.header(name)
    if value:
        return value
    for raw in [v for k, v in req.headers if k.lower() == "cookie"]:
        try:
            jar = SimpleCookie()
            jar.load(raw)
        except CookieError:
            continue
        if name in jar and jar[name].value:
            return jar[name].value
    return None


class Sessions:
    def __init__(self, name: str, ttl: float, storage: Storage, initial: Callable[[str], None]):
        self.name = name
        self.ttl = ttl
        self.storage = storage
        self.initial = initial  # fills a new namespace with the seeded data
        self.seen: dict[str, float] = {}

    def namespace(self, req: Request, now: float | None = None) -> str:
        if not self.name:
            return DEFAULT
        value = session_value(req, self.name)
        if not value:
            return DEFAULT
        ns = "s:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:24]
        now = time.time() if now is None else now
        last = self.seen.get(ns)
        if last is None or (self.ttl and now - last > self.ttl):
            self.storage.drop(ns)
            self.initial(ns)
        self.seen[ns] = now
        return ns

    def expire(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        gone = [ns for ns, t in self.seen.items() if self.ttl and now - t > self.ttl]
        for ns in gone:
            self.storage.drop(ns)
            del self.seen[ns]
        return len(gone)

    def forget_all(self) -> None:
        """Session copies do not outlive the process that made them."""
        for ns in self.storage.namespaces():
            if ns.startswith("s:"):
                self.storage.drop(ns)
        self.seen.clear()
