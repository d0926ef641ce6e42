"""The one adapter between mitmproxy and the library: HTTPFlow <-> plain records.

Bodies are decoded here with a size cap (mitmproxy's own `.content` decodes without one, and
raises on a broken encoding); what cannot be decoded is reported, not raised.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from mitmproxy import http, io
from mitmproxy.exceptions import FlowReadException

from . import bodies, exchange
from .exchange import Exchange, Request, Response, from_wire, to_wire
from .learn import Fingerprint

SOURCE_HEADER = "X-Mockstore-Source"
META_KEY = "mockstore"

# Headers whose values change from one answer to the next of an API that otherwise answers
# the same: the clock, request and trace ids, timings. A fingerprint leaves them out, so such
# an exchange is still learned again cheaply; its recording keeps them as they came.
VOLATILE_HEADERS = frozenset({
    b"date", b"expires", b"age", b"request-id", b"x-request-id", b"x-correlation-id",
    b"x-amzn-requestid", b"x-amzn-trace-id", b"x-amz-request-id", b"x-amz-id-2", b"x-amz-cf-id",
    b"cf-ray", b"x-runtime", b"x-response-time", b"server-timing", b"x-served-by", b"x-timer",
    b"x-github-request-id", b"x-cloud-trace-context", b"traceparent", b"tracestate",
    b"sentry-trace", b"baggage", b"x-b3-traceid", b"x-b3-spanid", b"x-b3-parentspanid",
    b"x-b3-sampled", b"b3", b"uber-trace-id",
})


def to_request(r: http.Request, limit: int) -> tuple[Request, str | None]:
    body, problem = _body(r, limit)
    path, _, qs = r.path.partition("?")
    return (
        Request(
            method=r.method,
            host=r.host,
            path=path,
            query=list(r.query.items(multi=True)) if qs else [],
            headers=from_wire(r.headers.fields),
            body=body,
            scheme=r.scheme,
            port=r.port,
        ),
        problem,
    )


def take_header(r: http.Request, name: bytes) -> str | None:
    """Remove a header (`name` in lower case) from a request and give its value, or None if
    it has none: as `r.headers.pop(name, None)`, at a fifth of the cost when it is absent
    (nearly always)."""
    n = len(name)
    for k, _ in r.headers.fields:
        if len(k) == n and k.lower() == name:
            return r.headers.pop(name.decode(), None)
    return None


def authority(r: http.Request) -> str:
    """As `Request.authority`, without converting the whole request."""
    return exchange.authority(r.scheme, r.host, r.port)


def to_exchange(flow: http.HTTPFlow, limit: int) -> tuple[Exchange, str | None]:
    """The exchange of a flow with a real response, and the reason a body was dropped, if any."""
    req, problem = to_request(flow.request, limit)
    resp = flow.response
    body, resp_problem = _body(resp, limit)
    start, duration_ms = timing(flow)
    ex = Exchange(req, Response(resp.status_code, from_wire(resp.headers.fields), body), start, duration_ms)
    return ex, problem or resp_problem


def timing(flow: http.HTTPFlow) -> tuple[float, float]:
    """When the request started (unix time), and milliseconds to the whole response."""
    start = flow.request.timestamp_start
    end = flow.response.timestamp_end or time.time()
    return start, max(0.0, (end - start) * 1000)


OFF_LOOP_ENCODED = 16 * 1024  # bytes; a larger compressed body is decoded on a worker thread


def encoded_size(m: http.Message) -> int:
    """Bytes of a body under a content-encoding (decoding it may cost far more), else 0."""
    raw = m.raw_content
    return len(raw) if raw and "content-encoding" in m.headers else 0


# A request line this long (hundreds of query parameters) is all but never repeated, and what
# `learn_again` keeps of an exchange holds its parsed query, some 20 times the line's length:
# 1,024 of them with 1,000 names each held 250 MB.
FINGERPRINT_PATH = 2048


def fingerprint(flow: http.HTTPFlow, limit: int) -> Fingerprint | None:
    """What `Learner.learn_again` knows a flow with a response by: a hash of everything it
    teaches but its timing and volatile headers (request line, headers and body, response
    status, headers and body, as they came on the wire). None if a body was streamed or is
    over `limit` bytes (hashing it would cost more than it saves), or if the path is over
    `FINGERPRINT_PATH` bytes."""
    q, s = flow.request.data, flow.response.data
    if q.content is None or s.content is None or len(q.content) + len(s.content) > limit or len(q.path) > FINGERPRINT_PATH:
        return None
    qh, sh = q.headers.fields, s.headers.fields
    key = hash((q.method, q.scheme, q.host, q.port, q.path, _lasting(qh), q.content, s.status_code, _lasting(sh), s.content))
    return Fingerprint(key, hash((qh, sh)), qh, sh)


# ... as they are spelled on the wire: lower case (HTTP/2, many servers), capitalized and upper
# case, and a few vendors' own. Comparing the name as it came costs a set lookup, where
# lower-casing it first made a new bytes object per header. A volatile header spelled
# otherwise only counts as lasting: its exchanges take learning's full path, as any new one.
_VOLATILE_SPELLINGS = VOLATILE_HEADERS | frozenset(
    spelling for name in VOLATILE_HEADERS for spelling in (name.title(), name.upper())
) | {b"x-amzn-RequestId", b"X-Amzn-RequestId", b"X-Amz-Cf-Id", b"CF-RAY", b"X-B3-TraceId",
     b"X-B3-SpanId", b"X-B3-ParentSpanId", b"X-GitHub-Request-Id"}


def _lasting(fields: tuple) -> tuple:
    return tuple([f for f in fields if f[0] not in _VOLATILE_SPELLINGS])


def _body(m: http.Message, limit: int) -> tuple[bytes, str | None]:
    raw = m.raw_content
    if raw is None:
        return b"", "body was streamed"
    if len(raw) > limit:
        return b"", f"body of {len(raw)} bytes is over mock_max_body ({limit})"
    try:
        return bodies.decode(raw, m.headers.get("content-encoding"), limit=limit), None
    except bodies.BodyError as e:
        return b"", str(e)


def respond(flow: http.HTTPFlow, response: Response, source: str, note: str = "") -> None:
    """Answer a flow ourselves, and say so everywhere a person or a program looks."""
    headers = [(to_wire(k), to_wire(v)) for k, v in response.headers if k.lower() not in ("content-length", "content-encoding", "transfer-encoding")]
    headers.append((SOURCE_HEADER.encode(), source.encode()))
    flow.response = http.Response.make(response.status, response.body, http.Headers(headers))
    mark(flow, source, note)


def mark(flow: http.HTTPFlow, source: str, note: str = "") -> None:
    flow.metadata[META_KEY] = {**flow.metadata.get(META_KEY, {}), "source": source}
    if note:
        flow.metadata[META_KEY]["note"] = note
    flow.marked = ":default:"
    comment = f"mockstore: {source}" + (f" ({note})" if note else "")
    flow.comment = f"{flow.comment}\n{comment}".strip() if flow.comment else comment


def note(flow: http.HTTPFlow, kind: str, text: str) -> None:
    """Flag a real flow for a person in mitmweb (drift, ...) without claiming its response."""
    flow.metadata.setdefault(META_KEY, {})[kind] = text
    flow.marked = ":warning:"
    comment = f"mockstore {kind}: {text}"
    flow.comment = f"{flow.comment}\n{comment}".strip() if flow.comment else comment


def read_flow_file(path: str | Path, limit: int) -> Iterator[Exchange]:
    """The HTTP exchanges with a response in a file written by `mitmdump -w`."""
    with open(path, "rb") as f:
        try:
            for flow in io.FlowReader(f).stream():
                if isinstance(flow, http.HTTPFlow) and flow.response is not None:
                    yield to_exchange(flow, limit)[0]
        except FlowReadException as e:
            raise ValueError(f"{path}: not a mitmproxy flow file ({e})") from None
