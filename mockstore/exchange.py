"""Plain records of one HTTP exchange.

Everything in the library speaks these, never mitmproxy's flow objects: only
`mockstore.flows` converts between the two, so the rest is testable without a proxy.
Bodies are always *decoded* (no content-encoding); headers keep order and repeats.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

Headers = list[tuple[str, str]]


DEFAULT_PORTS = {"http": 80, "https": 443}


def authority(scheme: str, host: str, port: int) -> str:
    """host, with the port when it is not the scheme's default: one API per authority.
    An IPv6 address is bracketed, so its port stays readable."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return host if port == DEFAULT_PORTS.get(scheme) else f"{host}:{port}"


def from_wire(fields) -> Headers:
    """Headers as they come on the wire, (bytes, bytes) pairs, as text (undecodable bytes
    kept as surrogates, so they go back out as they came)."""
    return [(k.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape")) for k, v in fields]


def to_wire(text: str) -> bytes:
    """A header name or value (or a path) as bytes again: what `from_wire` made of them, byte
    for byte (a `caf\\xe9` that came goes back out as the one byte it was, not as UTF-8 or an
    error). A lone surrogate no wire byte makes (a HAR's `\\ud800`) goes out as its UTF-8-like
    bytes rather than fail the answer."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def header(headers: Headers, name: str, default: str | None = None) -> str | None:
    """First value of a header, case-insensitively."""
    name = name.lower()
    for k, v in headers:
        if k.lower() == name:
            return v
    return default


@dataclass
class Request:
    method: str
    host: str
    path: str  # without the query string
    query: list[tuple[str, str]] = field(default_factory=list)
    headers: Headers = field(default_factory=list)
    body: bytes = b""
    scheme: str = "http"
    port: int = 80

    def header(self, name: str, default: str | None = None) -> str | None:
        return header(self.headers, name, default)

    @property
    def content_type(self) -> str:
        return (self.header("content-type") or "").split(";")[0].strip().lower()

    @property
    def authority(self) -> str:
        return authority(self.scheme, self.host, self.port)

    @property
    def url(self) -> str:
        # a query byte that is not UTF-8 came as a lone surrogate (mitmproxy's surrogateescape): back to that byte
        qs = f"?{urlencode(self.query, errors='surrogateescape')}" if self.query else ""
        return f"{self.scheme}://{self.authority}{self.path}{qs}"

    def json(self) -> Any:
        """The body as JSON, or None when it is empty or not JSON."""
        return parse_json(self.body)


@dataclass
class Response:
    status: int
    headers: Headers = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str, default: str | None = None) -> str | None:
        return header(self.headers, name, default)

    @property
    def content_type(self) -> str:
        return (self.header("content-type") or "").split(";")[0].strip().lower()

    def json(self) -> Any:
        return parse_json(self.body)

    @classmethod
    def make_json(cls, status: int, data: Any, headers: Headers | None = None) -> "Response":
        body = to_wire(json.dumps(data, ensure_ascii=False))  # a value taken from a path byte that is not UTF-8
        hs = [("content-type", "application/json")] + list(headers or [])
        return cls(status, hs, body)


@dataclass
class Exchange:
    request: Request
    response: Response
    started: float = 0.0  # unix time the request started
    duration_ms: float = 0.0  # time to the full response, as seen by the proxy




def parse_json(body: bytes | str | None) -> Any:
    """Parse a JSON body, returning None for empty, binary or malformed input."""
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def is_json_type(content_type: str) -> bool:
    ct = content_type.split(";")[0].strip().lower()
    return ct == "application/json" or ct.endswith("+json") or ct == "text/json"
