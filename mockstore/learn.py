"""Learning from one real exchange: template, statistics, schemas, drift, the recording.

Runs on the proxy's event loop for small bodies (tens of microseconds) and is handed to a
worker thread by the addon for large ones. It never writes to disk itself: the recording
and the model's changes go to the store's writer thread.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from . import bodies, redact
from .exchange import Exchange, Response, is_json_type
from .model import Endpoint, Model, match_key
from .schemas import SchemaModel, scalar_type
from .store import Store

log = logging.getLogger("mockstore.learn")

# Headers that describe the bytes on the wire, not the content we store (decoded).
WIRE_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding", "connection", "keep-alive"})


@dataclass
class Learned:
    endpoint: Endpoint
    exchange_id: int
    alerts: list  # drift alerts raised by this exchange


def body_key(body: bytes, content_type: str) -> str:
    """The request body as it takes part in exact matching: JSON canonicalised."""
    if not body:
        return ""
    if is_json_type(content_type) or body[:1] in (b"{", b"["):
        try:
            return bodies.canonical(bodies.load_json(body))
        except bodies.BodyError:
            pass
    return body.decode("utf-8", "replace")


def request_key(request, *, redacting: bool = True) -> int:
    query = redact.query(request.query) if redacting else request.query
    return match_key(request.method, request.authority, request.path, query, body_key(request.body, request.content_type))


def stored_headers(headers, *, redacting: bool) -> list[tuple[str, str]]:
    hs = [(k, v) for k, v in headers if k.lower() not in WIRE_HEADERS]
    return redact.headers(hs) if redacting else hs


class Learner:
    def __init__(self, model: Model, store: Store | None, *, redacting: bool = True, drift=None):
        self.model = model
        self.store = store
        self.redacting = redacting
        self.drift = drift

    def learn(self, ex: Exchange, *, record_body: bool = True, source: str = "proxy") -> Learned:
        """Learn from a real exchange. `record_body=False` when the body was over the size cap:
        statistics are learned, the body is neither stored nor learned from."""
        req, resp = ex.request, ex.response
        ep = self.model.learn_endpoint(req.method, req.authority, req.path)
        alerts = []
        req_json = resp_json = None
        if record_body:
            req_json = _json_or_none(req.body, req.content_type)
            resp_json = _json_or_none(resp.body, resp.content_type)
        if self.drift is not None:  # against what was known before this exchange
            for alert in (
                self.drift.check_request(ep, req.content_type, req_json) if req_json is not None else None,
                self.drift.check_response(ep, resp.status, resp.content_type, resp_json),
            ):
                if alert is not None:
                    alerts.append(alert)

        ep.first_seen = ep.first_seen or ex.started
        ep.last_seen = max(ep.last_seen, ex.started)
        ep.stats.add(resp.status, ex.duration_ms, resp.content_type)
        for name, value in req.query:
            q = ep.stats.query.get(name)
            if q is None:
                ep.stats.query[name] = {"schema": scalar_type(value), "count": 1}
            else:
                q["count"] += 1
                if q["schema"] != scalar_type(value):
                    q["schema"] = {"type": "string"}
        ep.dirty = True
        # A drifting body stays out of the baseline until the alert is resolved, so the same
        # drift repeated stays one alert with a growing count.
        if req_json is not None and not any(a.kind == "request" for a in alerts):
            if ep.request is None:
                ep.request = SchemaModel()
            ep.request.add(req_json)
        if resp_json is not None and not any(a.kind == "response" for a in alerts):
            model = ep.responses.get(resp.status)
            if model is None:
                model = ep.responses[resp.status] = SchemaModel()
            model.add(resp_json)

        exchange_id = self.model.ids.next()
        if record_body:
            self._record(ex, ep, exchange_id, source)
        return Learned(ep, exchange_id, alerts)

    def _record(self, ex: Exchange, ep: Endpoint, exchange_id: int, source: str) -> None:
        req, resp = ex.request, ex.response
        query = redact.query(req.query) if self.redacting else req.query
        key = match_key(req.method, req.authority, req.path, query, body_key(req.body, req.content_type))
        req_body, resp_body = req.body, resp.body
        if self.redacting:
            secrets = redact.secret_values(req.headers, req.query)
            req_body, resp_body = redact.scrub(req_body, secrets), redact.scrub(resp_body, secrets)
        stored = Response(resp.status, stored_headers(resp.headers, redacting=self.redacting), resp_body)
        self.model.add_recorded(key, exchange_id, stored)
        if self.store is None:
            return
        row = {
            "id": exchange_id,
            "ts": ex.started,
            "scheme": req.scheme,
            "host": req.authority,
            "port": req.port,
            "method": req.method,
            "path": req.path,
            "query": json.dumps(query),
            "req_headers": json.dumps(stored_headers(req.headers, redacting=self.redacting)),
            "req_body": req_body,
            "status": resp.status,
            "resp_headers": json.dumps(stored.headers),
            "resp_body": resp_body,
            "duration_ms": ex.duration_ms,
            "template": ep.template,
            "match_key": key,
            "source": source,
        }
        self.store.submit(lambda db: db["exchanges"].insert(row, replace=True))


def _json_or_none(body: bytes, content_type: str):
    if not body or not (is_json_type(content_type) or body[:1] in (b"{", b"[")):
        return None
    try:
        return bodies.load_json(body)
    except bodies.BodyError as e:
        log.debug("not learning a body: %s", e)
        return None
