"""Body decoding for learning: content-encodings, size caps, JSON with a depth limit.

A body that cannot be decoded is not an error for the proxy: the flow passes untouched
and the reason is returned so the caller can log it once.
"""

from __future__ import annotations

import json
import zlib

try:
    import brotli  # shipped with mitmproxy
except ImportError:  # pragma: no cover
    brotli = None
try:
    import zstandard  # shipped with mitmproxy
except ImportError:  # pragma: no cover
    zstandard = None

MAX_DEPTH = 128


class BodyError(ValueError):
    """A body we will not learn from; the message says why."""


def decode(body: bytes, encoding: str | None, *, limit: int) -> bytes:
    """Undo a Content-Encoding, refusing anything that would grow past `limit` bytes."""
    enc = (encoding or "").strip().lower()
    if enc in ("", "identity"):
        data = body
    elif enc in ("gzip", "x-gzip"):
        data = _bounded(zlib.decompressobj(16 + zlib.MAX_WBITS), body, limit)
    elif enc == "deflate":
        try:
            data = _bounded(zlib.decompressobj(), body, limit)
        except BodyError:  # some servers send raw deflate without the zlib header
            data = _bounded(zlib.decompressobj(-zlib.MAX_WBITS), body, limit)
    elif enc == "br" and brotli is not None:
        try:
            data = brotli.decompress(body)
        except brotli.error as e:
            raise BodyError(f"broken br body: {e}") from None
    elif enc == "zstd" and zstandard is not None:
        try:
            data = zstandard.ZstdDecompressor().decompressobj().decompress(body)
        except zstandard.ZstdError as e:
            raise BodyError(f"broken zstd body: {e}") from None
    else:
        raise BodyError(f"unknown content-encoding {encoding!r}")
    if len(data) > limit:
        raise BodyError(f"body of {len(data)} bytes is over mock_max_body ({limit})")
    return data


def _bounded(d, body: bytes, limit: int) -> bytes:
    try:
        data = d.decompress(body, limit + 1)
    except zlib.error as e:
        raise BodyError(f"broken compressed body: {e}") from None
    if len(data) > limit:
        raise BodyError(f"decoded body is over mock_max_body ({limit} bytes)")
    return data


def load_json(body: bytes, content_type: str = "") -> object:
    """Parse a body we intend to learn from. Raises BodyError with a reason when we can't."""
    if not body:
        raise BodyError("empty body")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BodyError("body is not UTF-8 (binary?)") from None
    try:
        value = json.loads(text)
    except RecursionError:
        raise BodyError("JSON nested too deeply") from None
    except ValueError as e:
        raise BodyError(f"broken JSON: {e}") from None
    # Counting brackets is C-speed; only a body with that many can be nested that deep.
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        raise BodyError(f"JSON nested deeper than {MAX_DEPTH} levels")
    return value


def _depth(value: object) -> int:
    """Nesting depth, iteratively (deep input must not blow the stack here either)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if d > deepest:
            deepest = d
            if deepest > MAX_DEPTH:
                return deepest
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)
    return deepest


def canonical(value: object) -> str:
    """A stable text form of a JSON value, for matching request bodies."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
