"""What mockstore knows about an API, in memory: endpoints, their schemas and statistics,
path templates, and the index of recorded exchanges.

The request path reads only from here. The model is loaded from the store once at start
and kept up to date as learning goes; `Model.persist` hands the changed parts to the
store's writer thread.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import sqlite_utils

from .exchange import Headers, Response
from .paths import PathTemplates
from .recorded import RecordedIndex, db_path
from .schemas import SchemaModel
from .stats import EndpointStats


RECENT = 50  # recordings per endpoint kept in memory for closest matching


def endpoint_id(method: str, authority: str, template: str) -> str:
    return f"{method} {authority}{template}"


def match_key(method: str, authority: str, path: str, query: list[tuple[str, str]], body: str,
              *, creds: bool = False) -> int:
    """A 63-bit key for exact matching: method, authority, path, query (order-free), body, and
    whether the request carried credentials (a request without them is another request; the
    key of one without them is what it was before this was part of it)."""
    q = "&".join(f"{k}={v}" for k, v in sorted(query))
    text = f"{method}\n{authority}\n{path}\n{q}\n{body}" + ("\ncreds" if creds else "")
    raw = text.encode("utf-8", "surrogateescape")
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big") >> 1


class IdClock:
    """Exchange ids that sort in recorded order and never collide between workers:
    microseconds since the epoch, times 16, plus the worker's slot."""

    def __init__(self, slot: int = 0):
        self.slot = slot % 16
        self.last = 0
        self.lock = threading.Lock()

    def next(self, at: float | None = None) -> int:
        """The id of an exchange learned now, or at the unix time `at` (never less than the
        last id given)."""
        with self.lock:
            i = int((time.time() if at is None else at) * 1_000_000) * 16 + self.slot
            if i <= self.last:
                i = self.last + 16
            self.last = i
            return i


@dataclass
class Endpoint:
    id: str
    host: str
    method: str
    template: str
    stats: EndpointStats = field(default_factory=EndpointStats)
    responses: dict[int, SchemaModel] = field(default_factory=dict)
    request: SchemaModel | None = None
    first_seen: float = 0.0
    last_seen: float = 0.0
    dirty: bool = True

    # the read API other modules (drift, synthesis, export) rely on
    @property
    def count(self) -> int:
        return self.stats.count

    @property
    def statuses(self) -> dict[int, int]:
        return self.stats.statuses

    @property
    def content_types(self) -> dict[str, int]:
        return self.stats.content_types

    def response_schema(self, status: int) -> dict | None:
        m = self.responses.get(status)
        return m.to_schema() if m else None

    def response_samples(self, status: int) -> int:
        m = self.responses.get(status)
        return m.samples if m else 0

    def request_schema(self) -> dict | None:
        return self.request.to_schema() if self.request else None

    def request_samples(self) -> int:
        return self.request.samples if self.request else 0

    def merge(self, other: "Endpoint") -> None:
        """Fold another endpoint (a literal path now seen to be a template) into this one."""
        self.stats.merge(other.stats)
        for status, m in other.responses.items():
            if status in self.responses:
                self.responses[status].merge(m)
            else:
                self.responses[status] = m
        if other.request:
            if self.request:
                self.request.merge(other.request)
            else:
                self.request = other.request
        self.first_seen = min(x for x in (self.first_seen, other.first_seen) if x) if other.first_seen else self.first_seen
        self.last_seen = max(self.last_seen, other.last_seen)
        self.dirty = True


class StoredSchema(SchemaModel):
    """A SchemaModel as the store keeps it, handed to genson only when first used: parsing
    every endpoint's schemas at start took 1.5 s for 10k endpoints."""

    _parse_lock = threading.Lock()

    def __init__(self, text: str, samples: int = 0):
        self._text, self.samples, self._built = text, samples, None

    @property
    def _builder(self):
        if self._built is None:
            with self._parse_lock:
                if self._built is None:
                    try:
                        schema = json.loads(self._text)
                    except (TypeError, ValueError):
                        schema = None  # a damaged row: learn this schema afresh
                    built = SchemaModel(schema, samples=self.samples)
                    self._built = built._builder
        return self._built

    @_builder.setter
    def _builder(self, value) -> None:
        self._built = value


class ResponseCache:
    """Recent responses by exchange id, at most about `size` of them, in two generations:
    new ones go to the young dict; when it is full it becomes the old one and the old one is
    dropped; a hit in the old one moves to the young. Near LRU, with no ordering to keep up
    and no lock (each step is atomic under the GIL): `put` runs for every recorded exchange,
    and OrderedDict's ordering cost it ~0.7 us."""

    def __init__(self, size: int):
        self.half = max(1, size // 2)
        self.young: dict[int, Response] = {}
        self.old: dict[int, Response] = {}

    def get(self, key: int) -> Response | None:
        r = self.young.get(key)
        if r is None:
            r = self.old.get(key)
            if r is not None:
                self.put(key, r)
        return r

    def put(self, key: int, response: Response) -> None:
        young = self.young
        young[key] = response
        if len(young) >= self.half:
            self.old, self.young = young, {}

    def __len__(self) -> int:
        return len(self.young.keys() | self.old.keys())


class Model:
    def __init__(self, *, slot: int = 0, cache_size: int = 4096):
        self.templates = PathTemplates()
        self.endpoints: dict[str, Endpoint] = {}
        self.recorded = RecordedIndex()  # match key -> exchange ids, in recorded order
        self.cursors: dict[int, int] = {}  # match key -> how many of its recordings were replayed
        self.cache = ResponseCache(cache_size)  # exchange id -> response
        self.recent: dict[str, deque] = {}  # endpoint id -> (id, path, query, body hash, creds, status)
        self.ids = IdClock(slot)
        self.lock = threading.Lock()  # guards the cursors, touched from worker threads
        self._templates_dirty: set[str] = set()
        self._removed: list[str] = []
        self._retemplated: list[tuple[str, str, str]] = []  # (authority, old, new)

    # --- loading and persisting ----------------------------------------------------------

    @classmethod
    def load(cls, db: sqlite_utils.Database, *, slot: int = 0) -> "Model":
        m = cls(slot=slot)
        state = {r[0]: json.loads(r[1]) for r in db.execute("select host, state from path_templates")}
        m.templates = PathTemplates({"hosts": state} if state else None)
        for id_, host, method, template, first, last, stats in db.execute(
            "select id, host, method, template, first_seen, last_seen, stats from endpoints"
        ):
            m.endpoints[id_] = Endpoint(
                id_, host, method, template, EndpointStats.from_json(json.loads(stats or "{}")),
                first_seen=first or 0.0, last_seen=last or 0.0, dirty=False,
            )
        for ep_id, kind, status, schema, samples in db.execute(
            "select endpoint, kind, status, schema, samples from schemas"
        ):
            ep = m.endpoints.get(ep_id)
            if ep is None:
                continue
            sm = StoredSchema(schema, samples or 0)
            if kind == "request":
                ep.request = sm
            else:
                ep.responses[status] = sm
        # Recorded exchanges are looked up in the store's index on first use, not loaded:
        # a million of them took 4 s and 250 MB here (see mockstore.recorded).
        path = db_path(db.conn)
        m.recorded = RecordedIndex(path)
        if path is None:  # an in-memory database: nothing to look up later, load it now
            for id_, key in db.execute("select id, match_key from exchanges order by id"):
                m.recorded.add(key, id_)
        return m

    def persist(self):
        """A store write with everything changed since the last call (None if nothing)."""
        eps = [ep for ep in self.endpoints.values() if ep.dirty]
        hosts = self._templates_dirty
        removed, retemplated = self._removed, self._retemplated
        if not eps and not hosts and not removed:
            return None
        self._templates_dirty, self._removed, self._retemplated = set(), [], []
        rows, schemas = [], []
        for ep in eps:
            ep.dirty = False
            rows.append(
                {
                    "id": ep.id, "host": ep.host, "method": ep.method, "template": ep.template,
                    "count": ep.count, "first_seen": ep.first_seen, "last_seen": ep.last_seen,
                    "stats": json.dumps(ep.stats.to_json()),
                }
            )
            if ep.request:
                schemas.append((ep.id, "request", 0, ep.request))
            schemas.extend((ep.id, "response", s, m) for s, m in ep.responses.items())
        schema_rows = [
            {"endpoint": e, "kind": k, "status": s, "schema": json.dumps(m.to_schema()), "samples": m.samples}
            for e, k, s, m in schemas
        ]
        state = self.templates.to_state().get("hosts", {})
        template_rows = [{"host": h, "state": json.dumps(state.get(h, {}))} for h in hosts]

        def write(db: sqlite_utils.Database) -> None:
            for ep_id in removed:
                db.execute("delete from endpoints where id = ?", [ep_id])
                db.execute("delete from schemas where endpoint = ?", [ep_id])
            for authority, old, new in retemplated:
                db.execute("update exchanges set template = ? where host = ? and template = ?", [new, authority, old])
            if rows:
                db["endpoints"].upsert_all(rows, pk="id")
            if schema_rows:
                db["schemas"].upsert_all(schema_rows, pk=("endpoint", "kind", "status"))
            if template_rows:
                db["path_templates"].upsert_all(template_rows, pk="host")

        return write

    # --- endpoints ---------------------------------------------------------------------

    def learn_endpoint(self, method: str, authority: str, path: str) -> Endpoint:
        """The endpoint for a real request, creating it, and folding literal paths that this
        observation reveals to be instances of a template."""
        template, _ = self.templates.learn(authority, path)
        self._templates_dirty.add(authority)
        for old, new in self.templates.last_folds:  # every template this observation moved
            self._fold(authority, old, new)
        ep_id = endpoint_id(method, authority, template)
        ep = self.endpoints.get(ep_id)
        if ep is None:
            ep = self.endpoints[ep_id] = Endpoint(ep_id, authority, method, template)
        return ep

    def learn_endpoint_again(self, authority: str, nodes: tuple) -> None:
        """Observe again a path `learn_endpoint` went through `nodes` for (see
        `PathTemplates.again`): its endpoint is the one that call gave."""
        self.templates.again(nodes)
        self._templates_dirty.add(authority)

    def _fold(self, authority: str, old: str, new: str) -> None:
        self._retemplated.append((authority, old, new))
        for m in {e.method for e in self.endpoints.values()}:
            old_ep = self.endpoints.pop(endpoint_id(m, authority, old), None)
            if old_ep is None:
                continue
            target_id = endpoint_id(m, authority, new)
            target = self.endpoints.get(target_id)
            if target is None:
                old_ep.id, old_ep.template, old_ep.dirty = target_id, new, True
                self.endpoints[target_id] = old_ep
            else:
                target.merge(old_ep)
            self._removed.append(endpoint_id(m, authority, old))

    def find_endpoint(self, method: str, authority: str, path: str) -> tuple[Endpoint | None, dict[str, str]]:
        """The known endpoint for a request, without learning anything."""
        hit = self.templates.match(authority, path)
        if hit is None:
            return None, {}
        template, params = hit
        return self.endpoints.get(endpoint_id(method, authority, template)), params

    def closest_endpoints(self, method: str, authority: str, path: str, n: int = 3) -> list[str]:
        """Known endpoints most like a request nobody recorded, for a helpful 404."""
        want = [s for s in path.split("/") if s]

        def score(ep: Endpoint) -> tuple:
            have = [s for s in ep.template.split("/") if s]
            same = sum(1 for a, b in zip(want, have) if a == b or b.startswith("{"))
            return (ep.host == authority, same - abs(len(want) - len(have)), ep.method == method, ep.count)

        ranked = sorted(self.endpoints.values(), key=score, reverse=True)
        return [f"{ep.method} {ep.host}{ep.template}" for ep in ranked[:n]]

    # --- recorded exchanges --------------------------------------------------------------

    def add_recorded(self, key: int, exchange_id: int, response: Response, ep: Endpoint, summary: tuple) -> None:
        """`summary` is (path, query pairs, hash of the body key, whether the request carried
        credentials): what closest matching compares. The newest recordings of each endpoint
        stay in memory, as the store's copy lags a batch."""
        self.recorded.add(key, exchange_id)
        self.remember(exchange_id, response)
        recent = self.recent.get(ep.id)
        if recent is None:
            recent = self.recent[ep.id] = deque(maxlen=RECENT)
        recent.append((exchange_id, *summary, response.status))

    def next_recorded(self, key: int) -> int | None:
        """The recording to replay for this key: each in recorded order, then the last."""
        ids = self.recorded.get(key)
        if not ids:
            return None
        with self.lock:
            n = self.cursors.get(key, 0)
            self.cursors[key] = n + 1
        return ids[min(n, len(ids) - 1)]

    def cached(self, exchange_id: int) -> Response | None:
        return self.cache.get(exchange_id)

    def remember(self, exchange_id: int, response: Response) -> None:
        self.cache.put(exchange_id, response)

    def reset_cursors(self) -> None:
        with self.lock:
            self.cursors.clear()


def response_from_row(status: int, headers: str, body: bytes | None) -> Response:
    hs: Headers = [(k, v) for k, v in json.loads(headers or "[]")]
    return Response(status, hs, body or b"")

