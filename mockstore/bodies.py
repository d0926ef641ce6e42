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


# Bytes of a brotli body fed to its decoder at a time. zlib and zstd stop by themselves at
# the output limit; brotli (1.1, what mitmproxy ships) cannot be told one, and a few bytes of
# a brotli bomb yield a whole meta-block (up to 16 MB). Fed 16 bytes at a time, the output
# passes the limit by a meta-block or two at most (measured: 16 MB; a 1.6 KB bomb of 2 GB
# stops there), and a real body decodes at ~100 MB/s (a byte at a time: ~15 MB/s).
BROTLI_STEP = 16


def decode(body: bytes, encoding: str | None, *, limit: int) -> bytes:
    """Undo a Content-Encoding (a list: the last applied is undone first), refusing anything
    that would grow past `limit` bytes: each decoder stops as soon as its output passes it,
    so a small compressed body can never cost more than about `limit` bytes of memory."""
    codings = [c.strip().lower() for c in (encoding or "").split(",")]
    data = body
    for coding in reversed([c for c in codings if c not in ("", "identity")]):
        undo = _DECODERS.get(coding)
        if undo is None or (coding == "br" and brotli is None) or (coding == "zstd" and zstandard is None):
            raise BodyError(f"unknown content-encoding {encoding!r}")
        data = undo(data, limit)
    if len(data) > limit:
        raise BodyError(f"body of {len(data)} bytes is over mock_max_body ({limit})")
    return data


class _Broken(BodyError):
    """The bytes are not of the encoding (as opposed to: too big once decoded)."""


def _gzip(body: bytes, limit: int) -> bytes:
    return _zlib(zlib.decompressobj(16 + zlib.MAX_WBITS), body, limit, "gzip")


def _deflate(body: bytes, limit: int) -> bytes:
    try:
        return _zlib(zlib.decompressobj(), body, limit, "deflate")
    except _Broken:  # some servers send raw deflate without the zlib header
        return _zlib(zlib.decompressobj(-zlib.MAX_WBITS), body, limit, "deflate")


def _zlib(d, body: bytes, limit: int, name: str) -> bytes:
    try:
        data = d.decompress(body, limit + 1)
    except zlib.error as e:
        raise _Broken(f"broken compressed body ({name}): {e}") from None
    if len(data) > limit:
        raise BodyError(f"decoded body is over mock_max_body ({limit} bytes)")
    if not d.eof:
        raise _Broken(f"broken compressed body ({name}): truncated")
    return data


def _brotli(body: bytes, limit: int) -> bytes:
    d = brotli.Decompressor()
    out, size = [], 0
    view = memoryview(body)
    try:
        for at in range(0, len(body), BROTLI_STEP):
            chunk = d.process(view[at:at + BROTLI_STEP])
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise BodyError(f"decoded body is over mock_max_body ({limit} bytes)")
                out.append(chunk)
        finished = d.is_finished()
    except brotli.error as e:
        raise _Broken(f"broken compressed body (br): {e}") from None
    if not finished:
        raise _Broken("broken compressed body (br): truncated")
    return b"".join(out)


def _zstd(body: bytes, limit: int) -> bytes:
    out, size = [], 0
    try:
        with zstandard.ZstdDecompressor().stream_reader(body, read_across_frames=True) as reader:
            while True:
                chunk = reader.read(limit + 1 - size)
                if not chunk:
                    break
                size += len(chunk)
                out.append(chunk)
                if size > limit:
                    raise BodyError(f"decoded body is over mock_max_body ({limit} bytes)")
    except zstandard.ZstdError as e:
        raise _Broken(f"broken compressed body (zstd): {e}") from None
    return b"".join(out)


_DECODERS = {"gzip": _gzip, "x-gzip": _gzip, "deflate": _deflate, "br": _brotli, "zstd": _zstd}


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
