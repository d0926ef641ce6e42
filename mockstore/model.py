"""What mockstore knows about an API, in memory: endpoints, their schemas and statistics,
path templates, and the index of recorded exchanges.

The request path reads only from here. The model is loaded from the store once at start
and kept up to date as learning goes; `Model.persist` hands the changed parts to the
store's writer thread.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import sqlite_utils

from . import recordings
from .exchange import Response
from .paths import PathTemplates
from .recorded import RecordedIndex, db_path
from .schemas import SchemaModel
from .stats import EndpointStats
from .sync import Changes, EndpointChange, Sync, Synced, schema_text


RECENT = 50  # recordings per endpoint kept in memory for closest matching
MAX_CURSORS = 65_536  # sequence positions kept (a rewind's worth is lost beyond)


def endpoint_id(method: str, authority: str, template: str) -> str:
    return f"{method} {authority}{template}"


def match_key(method: str, authority: str, path: str, query: list[tuple[str, str]], body: str,
              *, creds: bool = False) -> int:
    """A 63-bit key for exact matching: method, authority, path, query (order-free), body, and
    whether the request carried credentials (a request without them is another request; the
    key of one without them is what it was before this was part of it)."""
    q = "&".join(f"{k}={v}" for k, v in sorted(query))
    text = f"{method}\n{authority}\n{path}\n{q}\n{body}" + ("\ncreds" if creds else "")
    try:
        raw = text.encode("utf-8", "surrogateescape")  # a raw byte off the wire, as mitmproxy decoded it
    except UnicodeEncodeError:  # a lone surrogate no wire byte makes: a JSON body's "\ud800"
        raw = text.encode("utf-8", "surrogatepass")
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

    def advance(self, i: int) -> None:
        """Never give an id below `i` (an exchange learned again from the store)."""
        with self.lock:
            self.last = max(self.last, i)


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
    # What of `stats` and of the schemas' samples is in the store already (counted there by
    # this process or by another): a persist hands over only the rest (see mockstore.sync).
    # Never changed in place: it may be the writer's own copy of the row.
    handed: EndpointStats = field(default_factory=EndpointStats)
    handed_samples: dict[tuple[str, int], int] = field(default_factory=dict)

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

    def schema_models(self) -> dict[tuple[str, int], SchemaModel]:
        """Every schema, by (kind, status) as the store keys them."""
        out = {("response", s): m for s, m in self.responses.items()}
        if self.request is not None:
            out[("request", 0)] = self.request
        return out

    def merge(self, other: "Endpoint") -> None:
        """Fold another endpoint (a literal path now seen to be a template) into this one."""
        self.stats.merge(other.stats)
        self.handed = self.handed.plus(other.handed)
        for key, n in other.handed_samples.items():
            self.handed_samples[key] = self.handed_samples.get(key, 0) + n
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
    """Recent responses by exchange id, at most about `size` of them and `max_bytes` of bodies,
    in two generations: new ones go to the young dict; when it is full (half the count, or
    half the bytes) it becomes the old one and the old one is dropped; a hit in the old one
    moves to the young. Near LRU, with no ordering to keep up and no lock (each step is atomic
    under the GIL): `put` runs for every recorded exchange, and OrderedDict's ordering cost it
    ~0.7 us. Bounded by count alone, 1,500 responses of 370 KB held 540 MB; a response over
    `max_bytes // 8` is not kept at all (it is read from the store when replayed).

    Two threads putting at once may lose one's bytes from the young generation's sum: it is
    off by one response at most, and starts again from zero at each turn."""

    ENTRY_BYTES = 256  # what an entry costs beside its body: the Response, its headers, the dict slot

    def __init__(self, size: int, max_bytes: int = 64 * 1024 * 1024):
        self.half = max(1, size // 2)
        self.half_bytes = max(1, max_bytes // 2)
        self.largest = max_bytes // 8
        self.young: dict[int, Response] = {}
        self.old: dict[int, Response] = {}
        self.young_bytes = 0
        self.old_bytes = 0

    def get(self, key: int) -> Response | None:
        r = self.young.get(key)
        if r is None:
            r = self.old.get(key)
            if r is not None:
                self.put(key, r)
        return r

    def put(self, key: int, response: Response) -> None:
        n = len(response.body) + self.ENTRY_BYTES
        if n > self.largest:
            self.young.pop(key, None)  # an older, smaller response of this id is not it
            self.old.pop(key, None)
            return
        if self.young_bytes + n > self.half_bytes:
            self._turn()
        young = self.young
        young[key] = response
        self.young_bytes += n
        if len(young) >= self.half:
            self._turn()

    def _turn(self) -> None:
        self.old, self.old_bytes, self.young, self.young_bytes = self.young, self.young_bytes, {}, 0

    @property
    def bytes(self) -> int:
        """Bodies (and the per-entry estimate) held, counted once per generation: at most
        `max_bytes`."""
        return self.young_bytes + self.old_bytes

    def __len__(self) -> int:
        return len(self.young.keys() | self.old.keys())


class Model:
    def __init__(self, *, slot: int = 0, cache_size: int = 4096):
        self.templates = PathTemplates()
        self.endpoints: dict[str, Endpoint] = {}
        self.recorded = RecordedIndex()  # match key -> exchange ids, in recorded order
        self.cursors: dict[int, int] = {}  # match key -> how many of its recordings were replayed
        self.cache = ResponseCache(cache_size)  # exchange id -> response
        self.recent: dict[str, deque] = {}  # endpoint id -> (id, path, query, body hash, creds, status, key)
        self.ids = IdClock(slot)
        self.lock = threading.Lock()  # guards the cursors, touched from worker threads
        self.sync = Sync()  # the writer thread's view of the store's rows
        self._templates_dirty: set[str] = set()
        self._folds: list[tuple[str, str]] = []  # (old endpoint id, new endpoint id)
        self.moved: dict[str, str] = {}  # every fold so far: old endpoint id -> new
        self._retemplated: list[tuple[str, str, str]] = []  # (authority, old, new)

    # --- loading and persisting ----------------------------------------------------------

    @classmethod
    def load(cls, db: sqlite_utils.Database, *, slot: int = 0) -> "Model":
        m = cls(slot=slot)
        m.sync.load(db)
        state = {h: json.loads(t) for h, t in m.sync.templates.items()}
        m.templates = PathTemplates({"hosts": state} if state else None)
        for id_, row in m.sync.rows.items():
            ep = m.endpoints[id_] = Endpoint(
                id_, row.host, row.method, row.template, row.stats.copy(),
                first_seen=row.first_seen, last_seen=row.last_seen, dirty=False, handed=row.stats,
            )
            for (kind, status), (text, samples) in row.schemas.items():
                sm = StoredSchema(text, samples)
                if kind == "request":
                    ep.request = sm
                else:
                    ep.responses[status] = sm
                ep.handed_samples[(kind, status)] = samples
        # Recorded exchanges are looked up in the store's index on first use, not loaded:
        # a million of them took 4 s and 250 MB here (see mockstore.recorded).
        path = db_path(db.conn)
        m.recorded = RecordedIndex(path)
        if path is None:  # an in-memory database: nothing to look up later, load it now
            for id_, key in recordings.ids_and_keys(db):
                m.recorded.add(key, id_)
        return m

    def persist(self):
        """A store write: what was learned here since the last call, merged into the rows
        (see mockstore.sync); with nothing new, a look at what other processes learned."""
        self.apply_synced()
        eps = [ep for ep in self.endpoints.values() if ep.dirty]
        hosts = self._templates_dirty
        if not eps and not hosts and not self._folds:
            return self.sync.poll
        folds, retemplated = self._folds, self._retemplated
        self._templates_dirty, self._folds, self._retemplated = set(), [], []
        changes = []
        for ep in eps:
            ep.dirty = False
            delta = ep.stats.minus(ep.handed)
            ep.handed = ep.stats.copy()
            schemas = {}
            for key, m in ep.schema_models().items():
                schemas[key] = (schema_text(m), m.samples - ep.handed_samples.get(key, 0))
                ep.handed_samples[key] = m.samples
            changes.append(EndpointChange(
                ep.id, ep.host, ep.method, ep.template, ep.first_seen, ep.last_seen, delta, ep.stats.ema_ms, schemas,
            ))
        state = self.templates.to_state().get("hosts", {})
        templates = {h: state.get(h, {}) for h in hosts}
        batch = Changes(changes, folds, retemplated, templates, (self.ids.slot, self.ids.last))
        return lambda db: self.sync.write(db, batch)

    def _moved(self, ep_id: str) -> str:
        """Where an endpoint folded away lives now."""
        seen = set()
        while ep_id in self.moved and ep_id not in seen:
            seen.add(ep_id)
            ep_id = self.moved[ep_id]
        return ep_id

    def apply_synced(self) -> None:
        """Add in what other processes learned, as the writer found it (on the event loop,
        like every other change of the model)."""
        while True:
            try:
                synced: Synced = self.sync.results.get_nowait()
            except queue.Empty:
                return
            for ep_id, seen in synced.gone:
                # folded away by another process: what this one had of its row is in the
                # target's row now, and comes back with it
                ep = self.endpoints.get(ep_id) or self.endpoints.get(self._moved(ep_id))
                if ep is not None:
                    ep.stats.combine(seen.stats, -1)
                    ep.handed = ep.handed.minus(seen.stats)
                    for key, (_, samples) in seen.schemas.items():
                        m = ep.schema_models().get(key)
                        if m is not None:
                            m.samples -= samples
                            ep.handed_samples[key] = ep.handed_samples.get(key, 0) - samples
                    if ep.id == ep_id and not ep.stats.count:  # nothing learned here since
                        del self.endpoints[ep_id]
            for host, state in synced.templates.items():
                generation = self.templates.generation
                self.templates.merge({"hosts": {host: state}})
                for old, new in self.templates.last_folds:
                    self._fold(host, old, new)
                if generation == self.templates.generation:
                    continue
                # endpoints another process counted under a literal that is a parameter now
                for template in {ep.template for ep in self.endpoints.values() if ep.host == host}:
                    hit = self.templates.match(host, template)
                    if hit is not None and hit[0] != template:
                        self._fold(host, template, hit[0])
            for ep_id, row, added, schemas in synced.endpoints:
                ep = self.endpoints.get(ep_id) or self.endpoints.get(self._moved(ep_id))
                if ep is None:
                    ep, _ = self.find_endpoint(row.method, row.host, row.template)
                    if ep is not None:  # a literal here a parameter: this process folds its row
                        self._folds.append((ep_id, ep.id))
                        self.moved[ep_id] = ep.id
                        ep.dirty = True
                if ep is None:
                    ep = self.endpoints[ep_id] = Endpoint(
                        ep_id, row.host, row.method, row.template, first_seen=row.first_seen,
                        last_seen=row.last_seen, dirty=False,
                    )
                ep.stats.combine(added)
                if ep.stats.ema_ms is None:  # not a count: one this process never measured is the store's
                    ep.stats.ema_ms = row.stats.ema_ms
                ep.handed = ep.handed.plus(added)
                if row.first_seen:
                    ep.first_seen = min(ep.first_seen or row.first_seen, row.first_seen)
                ep.last_seen = max(ep.last_seen, row.last_seen)
                for (kind, status), (text, samples) in schemas.items():
                    m = ep.request if kind == "request" else ep.responses.get(status)
                    if m is None:
                        m = StoredSchema(text, 0)
                        if kind == "request":
                            ep.request = m
                        else:
                            ep.responses[status] = m
                    else:
                        try:
                            m.merge(json.loads(text))
                        except (TypeError, ValueError):
                            pass
                    m.samples += samples
                    ep.handed_samples[(kind, status)] = ep.handed_samples.get((kind, status), 0) + samples

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
            self._folds.append((endpoint_id(m, authority, old), target_id))
            self.moved[endpoint_id(m, authority, old)] = target_id

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
        recent.append((exchange_id, *summary, response.status, key))

    def next_recorded(self, key: int) -> int | None:
        """The recording to replay for this key: each in recorded order, then the last."""
        ids = self.recorded.get(key)
        if not ids:
            return None
        with self.lock:
            n = self.cursors.get(key, 0)
            self.cursors[key] = n + 1
        return ids[min(n, len(ids) - 1)]

    def position(self, key: int) -> int:
        """How many times before a request matching nothing exactly was answered (its
        closest recording's sequence replays in step with it); advanced. Counted beside the
        cursors (under -1 - key: match keys are never negative), rewound with them."""
        key = -1 - key
        with self.lock:
            if len(self.cursors) > MAX_CURSORS:  # random queries must not grow memory without end
                self.cursors.clear()
            n = self.cursors.get(key, 0)
            self.cursors[key] = n + 1
        return n

    def cached(self, exchange_id: int) -> Response | None:
        return self.cache.get(exchange_id)

    def remember(self, exchange_id: int, response: Response) -> None:
        self.cache.put(exchange_id, response)

    def reset_cursors(self) -> None:
        with self.lock:
            self.cursors.clear()



