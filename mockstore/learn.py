"""Learning from one real exchange: template, statistics, schemas, drift, the recording.

Runs on the proxy's event loop for small bodies (tens of microseconds) and is handed to a
worker thread by the addon for large ones. An exchange identical to one learned before (most
of them) is only queued, and counted with the others in `catch_up`. It never writes to disk
itself: the recording and the model's changes go to the store's writer thread.
"""

from __future__ import annotations

import hashlib
import json
import logging
from array import array
from dataclasses import dataclass
from typing import NamedTuple

from . import bodies, recordings, redact, values
from .exchange import Exchange, Response, from_wire, is_json_type
from .model import Endpoint, Model, match_key
from .schemas import SchemaModel
from .sqltext import to_column
from .store import Store

log = logging.getLogger("mockstore.learn")

# Headers that describe the bytes on the wire, not the content we store (decoded).
WIRE_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding", "connection", "keep-alive"})


INSERT_EXCHANGE = recordings.INSERT_EXCHANGE


@dataclass(slots=True)
class Learned:
    endpoint: Endpoint
    exchange_id: int
    alerts: list  # drift alerts raised by this exchange


class Fingerprint(NamedTuple):
    """An exchange as `learn_again` knows it again, made by the caller (`flows.fingerprint`)."""

    key: int  # a hash of all of it but its timing and its volatile headers (see flows.fingerprint)
    headers: int  # a hash of both header lists, volatile ones included
    request_headers: tuple  # both header lists as they came on the wire: (bytes, bytes) pairs
    response_headers: tuple


@dataclass(slots=True)
class _Seen:
    """What learning one exchange produced, kept so that an identical one (same request and
    response but for their timing and volatile headers) is counted and recorded without being
    converted, parsed, redacted and encoded again."""

    ep: Endpoint
    nodes: tuple  # its path through the templates (`PathTemplates.last_nodes`)
    generation: int  # ... valid while no fold has happened (`PathTemplates.generation`)
    authority: str
    query: list
    status: int
    resp_type: str
    req_counted: bool  # the request's schema counted its body
    key: int
    stored: Response
    summary: tuple
    row: tuple  # the INSERT's columns after `ts` and before `duration_ms`
    tail: tuple  # ... and after it
    headers: int  # `Fingerprint.headers` of the headers `row` and `stored` hold
    secrets: "redact.Found | None" = None  # what redacting it found, to redact new headers alike


def body_key(body: bytes, content_type: str) -> str:
    """The request body as it takes part in exact matching: JSON canonicalised."""
    if not body:
        return ""
    if is_json_type(content_type) or body[:1] in (b"{", b"["):
        try:
            return bodies.canonical(bodies.load_json(body))
        except bodies.BodyError:
            pass
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:  # binary: two bodies must not meet in their replacement characters
        return "blake2b:" + hashlib.blake2b(body).hexdigest()


def request_key(request, redactor: "redact.Redactor | None" = None) -> int:
    """The exact-match key of a request as it is stored: redacted (when `redactor` is given)
    by the request alone, so learning and answering agree; with whether it carried credentials
    (their presence, not their value)."""
    creds = redact.has_credentials(request.headers)
    if redactor is not None and not redactor.keeps_key(request):
        request = redactor.request(request)
    body = body_key(request.body, request.content_type)
    return match_key(request.method, request.authority, request.path, request.query, body, creds=creds)


def stored_headers(headers, redactor: "redact.Redactor | None" = None,
                   found: "redact.Found | None" = None) -> list[tuple[str, str]]:
    """Headers as they are recorded: redacted, and scrubbed of the secrets `found` elsewhere in
    their exchange."""
    hs = [(k, v) for k, v in headers if k.lower() not in WIRE_HEADERS]
    if redactor is None:
        return hs
    return found.scrub_headers(redactor.headers(hs, found)) if found is not None else redactor.headers(hs)


class Learner:
    KNOWN_BODIES = 256  # per endpoint and status: identical bodies already learned
    SEEN = 1024  # whole exchanges kept for `learn_again` (cleared when full)

    def __init__(self, model: Model, store: Store | None, *, redacting: bool = True, drift=None):
        self.model = model
        self.store = store
        self.redacting = redacting
        # redacted before anything is learned: templates, statistics, drift samples, recordings
        self.redactor = redact.for_store(store) if redacting else None
        self.drift = drift
        # Bodies learned before, by hash: one seen again teaches nothing new (same shape, so
        # no drift either), and APIs repeat themselves a lot. It is counted, not re-parsed.
        self._known: dict[tuple, set[int]] = {}
        self._seen: dict[int, _Seen] = {}
        # Exchanges learned again and not yet counted: what each repeats, and when it started
        # and how long it took (two floats each, in an array: nothing the collector walks).
        self._queued: list[_Seen] = []
        self._queued_times = array("d")

    def learn_again(self, fingerprint: Fingerprint, started: float, duration_ms: float) -> Endpoint | None:
        """Learn an exchange identical to one learned before with this `fingerprint`, but for
        its timing and volatile headers: the same endpoint, schemas and recording, new
        statistics and a new recorded row. None if there is no such exchange, or if what it was
        learned into has changed since (a template folded): then call `learn`.

        The exchange is queued, and counted and recorded by the next `catch_up`, with the
        others queued since, in one loop: spread over requests, the same work cost the proxy
        several times as much, each time run cold among mitmproxy's own. `learn` catches up
        first, so the order of everything learned is kept; whoever reads the model or the
        store must call `catch_up` first too (the addon does, and every 50 ms)."""
        seen = self._seen.get(fingerprint.key)
        if seen is None:
            return None
        ep = seen.ep
        if seen.generation != self.model.templates.generation or seen.status not in ep.responses or (
            seen.req_counted and ep.request is None
        ):
            del self._seen[fingerprint.key]
            return None
        if fingerprint.headers != seen.headers:  # only volatile ones can differ: the key has the rest
            self.catch_up()  # those queued keep the headers they came with
            self._volatile_changed(seen, fingerprint)
        self._queued.append(seen)
        self._queued_times.append(started)
        self._queued_times.append(duration_ms)
        return ep

    def catch_up(self) -> int:
        """Count and record the exchanges `learn_again` queued, in the order they came; how
        many there were."""
        queued, times = self._queued, self._queued_times
        if not queued:
            return 0
        self._queued, self._queued_times = [], array("d")
        model, store = self.model, self.store
        for i, seen in enumerate(queued):
            started, duration_ms = times[2 * i], times[2 * i + 1]
            ep = seen.ep
            model.learn_endpoint_again(seen.authority, seen.nodes)
            _observe(ep, started, duration_ms, seen.status, seen.resp_type, seen.query)
            if seen.req_counted:
                ep.request.samples += 1
            ep.responses[seen.status].samples += 1
            exchange_id = model.ids.next(started + duration_ms / 1000)  # when it was learned
            model.add_recorded(seen.key, exchange_id, seen.stored, ep, seen.summary)
            if store is not None:
                store.insert(INSERT_EXCHANGE, (exchange_id, started, *seen.row, duration_ms, *seen.tail))
        return len(queued)

    def _volatile_changed(self, seen: _Seen, fingerprint: Fingerprint) -> None:
        """Volatile headers differ from the exchange `seen` was made of: record the new ones
        from now on (once a second for a Date header, on every exchange for a request id)."""
        row = list(seen.row)
        row[6] = json.dumps(stored_headers(from_wire(fingerprint.request_headers), self.redactor, seen.secrets))
        headers = stored_headers(from_wire(fingerprint.response_headers), self.redactor, seen.secrets)
        if headers != seen.stored.headers:
            seen.stored = Response(seen.status, headers, seen.stored.body)
            row[9] = json.dumps(headers)
        seen.row, seen.headers = tuple(row), fingerprint.headers

    def learn(self, ex: Exchange, *, record_body: bool = True, source: str = "proxy",
              fingerprint: Fingerprint | None = None, stored_as: int | None = None) -> Learned:
        """Learn from a real exchange. `record_body=False` when the body was over the size cap:
        statistics are learned, the body is neither stored nor learned from. With a
        `fingerprint`, an identical exchange later can be learned with `learn_again`.
        `stored_as`: the id of the recording it is, learned again from the store (see
        mockstore.rebuild): nothing is recorded."""
        self.catch_up()
        creds = redact.has_credentials(ex.request.headers)
        found = None
        if self.redactor is not None:
            found = redact.Found()
            ex = self.redactor.exchange(ex, found)
        req, resp = ex.request, ex.response
        req_type, resp_type = req.content_type, resp.content_type
        ep = self.model.learn_endpoint(req.method, req.authority, req.path)
        nodes, generation = self.model.templates.last_nodes, self.model.templates.generation
        req_key = ("request", ep.id, req_type, hash(req.body))
        resp_key = (ep.id, resp.status, resp_type, hash(resp.body))
        req_known, resp_known = self._is_known(req_key), self._is_known(resp_key)
        req_json = resp_json = None
        if record_body:
            req_json = None if req_known else _json_or_none(req.body, req_type)
            resp_json = None if resp_known else _json_or_none(resp.body, resp_type)
        # Values this exchange carried name the parameters of paths learned after it.
        for value in (req_json, resp_json):
            if isinstance(value, (dict, list)):
                self.model.templates.note_values(req.authority, value)
        alerts = []
        if self.drift is not None:  # against what was known before this exchange
            if req_json is not None:
                alerts.append(self.drift.check_request(ep, req_type, req_json))
            if not resp_known:
                alerts.append(self.drift.check_response(ep, resp.status, resp_type, resp_json))
            alerts = [a for a in alerts if a is not None]

        _observe(ep, ex.started, ex.duration_ms, resp.status, resp_type, req.query)
        # A drifting body stays out of the baseline until the alert is resolved, so the same
        # drift repeated stays one alert with a growing count.
        req_counted = record_body and (req_known or req_json is not None) and not any(a.kind == "request" for a in alerts)
        resp_counted = record_body and (resp_known or resp_json is not None) and not any(a.kind == "response" for a in alerts)
        if req_counted:
            if ep.request is None:
                ep.request = SchemaModel()
            self._add(ep.request, req_json, req_key, req_known)
        if resp_counted:
            model = ep.responses.get(resp.status)
            if model is None:
                model = ep.responses[resp.status] = SchemaModel()
            self._add(model, resp_json, resp_key, resp_known)
            if resp_json is not None:  # a body learned afresh: what values its fields took
                ep.stats.add_values(resp.status, resp_json, values.path_params(ep.template, req.path))

        if stored_as is not None:
            self.model.ids.advance(stored_as)
            return Learned(ep, stored_as, alerts)
        exchange_id = self.model.ids.next()
        if record_body:
            row, tail, stored, key, summary = self._record(ex, ep, exchange_id, source, creds)
            # Only an exchange whose response body the schema counted: one that is not JSON
            # goes through the drift check's envelope every time (status, content type).
            if fingerprint is not None and resp_counted and not alerts:
                if len(self._seen) >= self.SEEN:
                    self._seen.clear()
                self._seen[fingerprint.key] = _Seen(
                    ep, nodes, generation, req.authority, req.query, resp.status, resp_type, req_counted, key,
                    stored, summary, row, tail, fingerprint.headers, found if found and found.secrets else None,
                )
        return Learned(ep, exchange_id, alerts)

    def _is_known(self, key: tuple) -> bool:
        return key[-1] in self._known.get(key[:-1], ())

    def _add(self, model: SchemaModel, value, key: tuple, known: bool) -> None:
        if known:
            model.samples += 1
            return
        model.add(value)
        bodies_seen = self._known.setdefault(key[:-1], set())
        if len(bodies_seen) >= self.KNOWN_BODIES:
            bodies_seen.clear()
        bodies_seen.add(key[-1])

    def _record(self, ex: Exchange, ep: Endpoint, exchange_id: int, source: str, creds: bool) -> tuple:
        """Record an exchange (redacted by `learn`; `creds`: whether the request carried
        credentials); what `_Seen` keeps of it: (row, tail, stored response, match key, summary)."""
        req, resp = ex.request, ex.response
        query = req.query
        body = body_key(req.body, req.content_type)
        key = match_key(req.method, req.authority, req.path, query, body, creds=creds)
        stored = Response(resp.status, stored_headers(resp.headers), resp.body)
        summary = (req.path, query, hash(body), creds)
        self.model.add_recorded(key, exchange_id, stored, ep, summary)
        row = (req.scheme, to_column(req.authority), req.port, to_column(req.method), to_column(req.path),
               json.dumps(query), json.dumps(stored_headers(req.headers)), req.body,
               resp.status, json.dumps(stored.headers), resp.body)
        tail = (to_column(ep.template), key, source)
        if self.store is not None:
            self.store.insert(INSERT_EXCHANGE, (exchange_id, ex.started, *row, ex.duration_ms, *tail))
        return row, tail, stored, key, summary


def _observe(ep: Endpoint, started: float, duration_ms: float, status: int, content_type: str, query: list) -> None:
    """Count one exchange in its endpoint's statistics: when, how long, which status and
    content type, which query parameters with values of which type."""
    ep.first_seen = ep.first_seen or started
    ep.last_seen = max(ep.last_seen, started)
    ep.stats.add(status, duration_ms, content_type)
    if query:
        ep.stats.add_query(query)
    ep.dirty = True


def _json_or_none(body: bytes, content_type: str):
    if not body or not (is_json_type(content_type) or body[:1] in (b"{", b"[")):
        return None
    try:
        return bodies.load_json(body)
    except bodies.BodyError as e:
        log.debug("not learning a body: %s", e)
        return None
