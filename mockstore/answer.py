"""Standing in for the API: the answer to one request, first that applies:

1. the recorded exchange that matches exactly (several recordings of one request replay in
   recorded order, then the last one stays);
2. the closest recording of the same endpoint (the same query keys first; of a request
   recorded several times, the one at this request's place in the sequence), with the
   request's own values carried into the response: `adapted`;
3. a body synthesized from the learned schema;
4. a 404 that says nothing is known and names the closest endpoints.

`exact_cached` is the event-loop fast path (memory only); `answer` may read the store and
synthesize, so the addon runs it on a worker thread.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import parse_qsl

from . import bodies, recordings, redact, synth
from .exchange import Request, Response, is_json_type
from .learn import body_key, request_key
from .model import Endpoint, Model
from .paths import singular
from .store import Store

log = logging.getLogger("mockstore.answer")

RECORDED, ADAPTED, SYNTHESIZED, NOT_FOUND = "recorded", "adapted", "synthesized", "not-found"
SYNTHESIZED_CACHE = 4096  # synthesized responses kept


@dataclass
class Answer:
    response: Response
    source: str
    delay_ms: float = 0.0  # simulated latency, to be waited without blocking
    endpoint: str | None = None


class Responder:
    def __init__(self, model: Model, store: Store | None, *, seed: int = 0, latency: bool = True, redacting: bool = True):
        self.model = model
        self.store = store
        self.seed = seed
        self.latency = latency
        self.redacting = redacting
        # a request is matched as it was stored: redacted with the store's key
        self.redactor = redact.for_store(store) if redacting else None
        self._synthesized: OrderedDict[tuple, Response] = OrderedDict()
        self._lock = threading.Lock()

    # --- the chain ---------------------------------------------------------------------

    def key(self, req: Request) -> int:
        """The request's match key (both ways of answering below take it, to make it once)."""
        return request_key(req, self.redactor)

    def exact_cached(self, req: Request, key: int, *, avoid_errors: bool = False) -> Answer | None:
        """An exact match whose response is in memory; None means: ask `answer` (as for a
        recorded 5xx with `avoid_errors`, which `answer` passes over)."""
        ids = self.model.recorded.peek(key)
        if not ids:
            return None
        # peek without consuming the cursor unless we can answer right here
        with self.model.lock:
            n = self.model.cursors.get(key, 0)
            exchange_id = ids[min(n, len(ids) - 1)]
            resp = self.model.cache.get(exchange_id)
            if resp is None or (avoid_errors and resp.status >= 500):
                return None
            self.model.cursors[key] = n + 1
        return self._recorded(req, resp)

    def answer(self, req: Request, key: int | None = None, *, exact_only: bool = False,
               avoid_errors: bool = False) -> Answer:
        """`avoid_errors`: standing in for a real API that just failed (failover), a recorded
        5xx of the same request is no answer; the same resource's last success is."""
        key = self.key(req) if key is None else key
        creds = redact.has_credentials(req.headers)
        if self.redactor is not None:
            req = self.redactor.request(req)
        exchange_id = self.model.next_recorded(key)
        if exchange_id is not None:
            resp = self.model.cached(exchange_id) or self._load(exchange_id, key)
            if resp is not None and not (avoid_errors and resp.status >= 500):
                return self._recorded(req, resp, redacted=True)
        ep, params = self.model.find_endpoint(req.method, req.authority, req.path)
        if exact_only:
            return self._not_found(req, "no recorded exchange matches this request exactly (replay mode)")
        if ep is not None:
            # The same resource (same path) recorded with another query or body: replay it.
            # Another resource of a learned template: synthesize it, consistent with its path,
            # rather than pass another resource's data off as this one; when no JSON schema
            # was learned (HTML, XML, ...), the closest recording with our values carried in.
            answer = (
                self._closest(req, ep, params, creds, key, avoid_errors, same_path=True)
                or self._synthesize(req, ep, params)
                or self._closest(req, ep, params, creds, key, avoid_errors, same_path=False)
            )
            if answer is not None:
                return answer
        return self._not_found(req, "nothing recorded or learned for this request")

    # --- each way of answering ---------------------------------------------------------

    def _recorded(self, req: Request, resp: Response, *, redacted: bool = False) -> Answer:
        path = req.path if redacted or self.redactor is None else self.redactor.path(req.path)
        ep, _ = self.model.find_endpoint(req.method, req.authority, path)
        return Answer(_replayable(resp), RECORDED, self._delay(req, ep), ep.id if ep else None)

    LOAD_AHEAD = 32  # recordings of a sequence loaded together

    def _load(self, exchange_id: int, key: int | None = None) -> Response | None:
        """The recorded response, from the store. A request recorded many times replays its
        recordings in order: the next ones of its sequence come along, so that the requests
        after this one find theirs in memory (on the event loop) instead of here, one by one."""
        if self.store is None:
            return None
        ids = [exchange_id]
        if key is not None:
            sequence = self.model.recorded.get(key) or ids
            try:
                at = sequence.index(exchange_id)
            except ValueError:  # not of this key's sequence: loaded alone
                at = None
            if at is not None:
                ids = sequence[at:at + self.LOAD_AHEAD]
        found = None
        for id_, resp in recordings.responses(self.store.reader(), ids):
            self.model.remember(id_, resp)
            if id_ == exchange_id:
                found = resp
        return found

    def _closest(self, req: Request, ep: Endpoint, params: dict[str, str], creds: bool, key: int,
                 avoid_errors: bool = False, *, same_path: bool) -> Answer | None:
        """The best recording of this endpoint for a request (redacted) that matches none
        exactly: the store's newest 50, and this process's newest, which the store may not have
        yet. One made with credentials if `creds`, else one made without, where there is one."""
        rows = [r for r in self.model.recent.get(ep.id, ()) if not same_path or r[1] == req.path]
        if self.store is not None:
            seen = {r[0] for r in rows}
            for id_, path, query, req_body, req_headers, status in recordings.of_endpoint(
                self.store.reader(), ep.host, ep.method, ep.template, path=req.path if same_path else None
            ):
                if id_ not in seen:
                    body = hash(body_key(req_body, req.content_type))
                    rows.append((id_, path, query, body, redact.has_credentials(req_headers), status, None))
        if not rows:
            return None
        want_query = set(req.query)
        want_names = {k for k, _ in req.query}
        want_body = hash(body_key(req.body, req.content_type))

        def score(row) -> tuple:
            id_, path, query, body, had, status, _ = row
            q = set(map(tuple, query))
            names = {k for k, _ in q}
            return (
                had == creds,
                200 <= status < 300,
                path == req.path,
                len(names & want_names) - len(names ^ want_names),  # a value never seen: its key's
                len(q & want_query) - len(q ^ want_query),
                body == want_body,
                id_,  # then the newest
            )

        best = max(rows, key=score)
        id_, path, query, chosen = best[0], best[1], best[2], best[6]
        # its request, for what the server made of its values (a slug of a title)
        recorded = recordings.request_of(self.store.reader(), id_) if self.store is not None else None
        if recorded is not None:
            chosen = recorded[0]
        was = Request(req.method, req.host, path, query, recorded[2], recorded[1]) if recorded else None
        id_ = self._in_step(key, chosen, avoid_errors) or id_
        resp = self.model.cached(id_) or self._load(id_)
        if resp is None:
            return None
        if chosen == key:  # this very request, its recording passed over (a 5xx, failing over)
            return self._recorded(req, resp, redacted=True)
        old = dict(_template_params(ep.template, path))
        old.update(query)
        new = dict(params)
        new.update(req.query)
        carried = _carry(resp, old, new, fields=_request_fields(req), names=_param_names(ep.template),
                         was=_request_fields(was) if was is not None else ())
        return Answer(_replayable(carried), ADAPTED, self._delay(req, ep), ep.id)

    def _in_step(self, own: int, chosen: int | None, avoid_errors: bool) -> int | None:
        """Of the chosen recording's sequence (its request recorded several times, state
        changing in between), the one at this request's place in its own: the second
        `?owner=bob` gets what the second `?owner=alice` got."""
        if chosen is None or chosen == own:
            return None
        sequence = self.model.recorded.get(chosen)
        if not sequence or len(sequence) < 2:
            return None
        n = self.model.position(own)
        id_ = sequence[min(n, len(sequence) - 1)]
        if avoid_errors:
            resp = self.model.cached(id_) or self._load(id_, chosen)
            if resp is None or resp.status >= 500:
                return None
        return id_

    def _synthesize(self, req: Request, ep: Endpoint, params: dict[str, str]) -> Answer | None:
        status = ep.stats.main_status
        if status is None:
            return None
        text = _request_text(req)
        # Synthesis is deterministic: the same request to the same model gives the same body,
        # so it is made once (faker is the costly part) until the schema learns more.
        key = (ep.id, status, ep.response_samples(status), text, req.body)
        with self._lock:
            resp = self._synthesized.get(key)
        if resp is None:
            body = synth.learned(ep, status, seed=self.seed, key=text, params=params, body=req.body,
                                 content_type=req.content_type)
            if body is synth.NO_SCHEMA:
                if ep.response_samples(status) or ep.stats.content_types:
                    return None  # bodies were seen but are not JSON: nothing to synthesize from
                resp = Response(status, [], b"")
            else:
                resp = Response.make_json(status, body)
            with self._lock:
                self._synthesized[key] = resp
                if len(self._synthesized) > SYNTHESIZED_CACHE:
                    self._synthesized.popitem(last=False)
        return Answer(resp, SYNTHESIZED, self._delay(req, ep), ep.id)

    def _not_found(self, req: Request, reason: str) -> Answer:
        closest = self.model.closest_endpoints(req.method, req.authority, req.path)
        body = {
            "error": f"mockstore: {reason}",
            "request": f"{req.method} {req.authority}{req.path}",
            "closest_endpoints": closest,
        }
        return Answer(Response.make_json(404, body), NOT_FOUND)

    def _delay(self, req: Request, ep: Endpoint | None) -> float:
        if not self.latency or ep is None:
            return 0.0
        rng = random.Random(zlib.crc32(f"{self.seed}\n{_request_text(req)}".encode()))
        return ep.stats.draw_latency(rng)


def _request_text(req: Request) -> str:
    q = "&".join(f"{k}={v}" for k, v in req.query)
    return f"{req.method} {req.authority}{req.path}?{q}"


def _replayable(resp: Response) -> Response:
    """A stored response as it can go on the wire: headers that a store written before
    placeholders redacted to a bare marker dropped (a placeholder stays: a client that sends
    it back, as a cookie or a token, is matched as the one that sent the secret was)."""
    hs = [(k, v) for k, v in resp.headers if v != redact.MARKER]
    return Response(resp.status, hs, resp.body)


def _template_params(template: str, path: str) -> list[tuple[str, str]]:
    out = []
    for t, p in zip(template.strip("/").split("/"), path.strip("/").split("/")):
        if t.startswith("{") and t.endswith("}"):
            out.append((t[1:-1], p))
    return out


def _param_names(template: str) -> dict[str, tuple[frozenset[str], frozenset[str]]]:
    """For each path parameter, the response fields that may carry it: (anywhere, in the
    item only). `/users/{id}/orders`: `user_id` or `userId` anywhere (each order of the list),
    `id` only in the user itself (not the orders' own ids); `/posts/{slug}`: `slug`."""
    out = {}
    segments = template.strip("/").split("/")
    for i, seg in enumerate(segments):
        if not (seg.startswith("{") and seg.endswith("}")):
            continue
        name = seg[1:-1]
        # a generic name (`{id}`) is every item's own field: only the item itself carries it
        anywhere, item = (set(), {name}) if name in _GENERIC else ({name}, set())
        parent = segments[i - 1] if i and not segments[i - 1].startswith("{") else None
        if parent:
            one = singular(parent).replace("-", "_")
            anywhere |= {f"{one}_{name}", f"{one}_id", _camel(f"{one}_{name}"), f"{_camel(one)}Id"}
        if name.endswith(("_id", "Id")):
            item.add("id")
        out[name] = (frozenset(anywhere), frozenset(item - anywhere))
    return out


_GENERIC = frozenset({"id", "uuid"})


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def _request_fields(req: Request) -> list[tuple[tuple[str, ...], object]]:
    """The request's own values, by where they are in its body: (names from the root, value)
    for every JSON member that is not an object (a list of objects is gone into), or every
    form field; nothing for another body."""
    if not req.body:
        return []
    ct = req.content_type.lower()
    if "x-www-form-urlencoded" in ct:
        try:
            return [((k,), v) for k, v in parse_qsl(req.body.decode("utf-8"), keep_blank_values=True)]
        except UnicodeDecodeError:
            return []
    if not is_json_type(ct) and req.body[:1] not in (b"{", b"["):
        return []
    try:
        value = bodies.load_json(req.body)
    except bodies.BodyError:
        return []
    out: list[tuple[tuple[str, ...], object]] = []

    def walk(v, at: tuple[str, ...]) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, (*at, k))
        elif isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v):
            for x in v:
                walk(x, at)
        elif at:
            out.append((at, v))

    walk(value, ())
    return out


def _carry(resp: Response, old: dict[str, str], new: dict[str, str], *,
           fields: list[tuple[tuple[str, ...], object]] = (),
           names: dict[str, tuple[frozenset[str], frozenset[str]]] | None = None,
           was: list[tuple[tuple[str, ...], object]] = ()) -> Response:
    """A recorded response with this request's values in it, where the recording had its own:

    - a path or query parameter (`old` -> `new` by name) in the fields that carried it in the
      recording (a field named like it, or as `names` says: `user_id` of each order of
      `/users/{id}/orders`, `id` of the item itself, never of the items of a list in it), and
      inside longer strings (a slug inside a URL);
    - the request body's fields (`fields`, see `_request_fields`) in the response's fields of
      the same name, inside envelopes too (`{"account": {"username": ...}}`); of several
      fields of one name, the one whose path ends most like the response field's;
    - what the server made of the recorded request's body values (`was`, as `fields`), made of
      this request's: a slug of the title (`"My Day"` -> `my-day`), the value inside a URL.

    Nothing is added: a value goes only where the recording had a field for it. Pure."""
    changes = {k: (old[k], new[k]) for k in new if k in old and old[k] != new[k]}
    by_name: dict[str, list[tuple[tuple[str, ...], object]]] = {}
    for at, v in fields:
        by_name.setdefault(at[-1], []).append((at, v))
    made = _made_of(was, fields)
    if not changes and not by_name:
        return resp
    try:
        value = bodies.load_json(resp.body)
    except bodies.BodyError:
        return resp
    names = names or {}
    # a parameter not of the path (a query's): its own name, anywhere
    anywhere = {p: names[p][0] if p in names else frozenset({p}) for p in changes}
    in_item = {p: names[p][1] if p in names else frozenset() for p in changes}

    def from_body(at: tuple[str, ...], like):
        found = by_name.get(at[-1])
        if not found:
            return _MISSING
        best, score = _MISSING, -1
        for path, v in found:
            n = 0
            while n < min(len(path), len(at)) and path[-1 - n] == at[-1 - n]:
                n += 1
            if n > score:
                best, score = v, n
        if isinstance(best, (dict, list)) != isinstance(like, (dict, list)):
            return _MISSING  # a value of another kind: the response's own field of that name
        return _coerce(best, like) if isinstance(best, str) and not isinstance(like, str) else best

    def fix(v, at: tuple[str, ...], listed: bool):
        if isinstance(v, dict):
            return {k: fix(x, (*at, k), listed) for k, x in v.items()}
        if isinstance(v, list):
            if at and by_name and not any(isinstance(x, (dict, list)) for x in v):
                got = from_body(at, v)
                if got is not _MISSING:
                    return got
            return [fix(x, at, True) for x in v]
        key = at[-1] if at else None
        if key is not None and by_name:
            got = from_body(at, v)
            if got is not _MISSING:
                return got
        for name, (o, n) in changes.items():
            named = key in anywhere[name] or (not listed and key in in_item[name])
            if named and str(v) == o:
                return _coerce(n, v)
            if isinstance(v, str) and len(o) >= 4 and o in v:
                return v.replace(o, n)
        if isinstance(v, str):
            for o, n in made:
                if o in v:
                    return v.replace(o, n)
        return v

    body = json.dumps(fix(value, (), False), ensure_ascii=False).encode()
    return Response(resp.status, resp.headers, body)


_MISSING = object()
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def _slug(text: str) -> str:
    return _NOT_SLUG.sub("-", text.lower()).strip("-")


def _made_of(was: list[tuple[tuple[str, ...], object]], now: list[tuple[tuple[str, ...], object]]) -> list[tuple[str, str]]:
    """(recorded, this request's) forms of the body's string values that changed, as they
    are and as slugs, longest first: a response string holding one holds what the server
    made of it. Short values (under 4 characters) are left: they would be found anywhere."""
    mine = dict(now)
    out: dict[str, str] = {}
    for at, o in was:
        n = mine.get(at)
        if not isinstance(o, str) or not isinstance(n, str) or o == n:
            continue
        for a, b in ((o, n), (_slug(o), _slug(n))):
            if len(a) >= 4 and b:
                out.setdefault(a, b)
    return sorted(out.items(), key=lambda p: -len(p[0]))


def _coerce(text: str, like):
    if isinstance(like, bool):
        return text.lower() == "true"
    if isinstance(like, int):
        try:
            return int(text)
        except ValueError:
            return text
    if isinstance(like, float):
        try:
            return float(text)
        except ValueError:
            return text
    return text
