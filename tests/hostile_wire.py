"""Hostile HTTP/1.1 on raw sockets, for tests/test_hostile.py: a backend that can answer with
any bytes (wrong Content-Length, bogus chunking, garbage, a reset, a hang), a client that sends
any bytes (httpx would refuse or normalise most of them), and the generator of both sides of
each exchange, deterministic from a seed.

Each generated request carries `X-Hostile-Id` (which exchange) and `X-Hostile-Resp` (what the
backend answers); the backend records what it sent for each id, so the test can compare what
the client got with what the backend answered, byte for byte.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import socket
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field

import brotli
import zstandard

BIG = 50 << 20  # a 50 MB body
BOMB = 128 << 20  # bytes a compression bomb decodes to
HEAD_LIMIT = 1 << 20


# --- bodies ----------------------------------------------------------------------------


@functools.cache
def big_body() -> bytes:
    return (b'{"blob": "' + b"x" * (BIG - 13) + b'"}')[:BIG]


@functools.cache
def bomb(encoding: str) -> bytes:
    """`BOMB` zero bytes under `encoding` (a list applies each in turn: 'gzip, br')."""
    codings = [c.strip() for c in encoding.split(",")]
    zeros = bytes(16 << 20)
    chunks = [zeros] * (BOMB // len(zeros))
    for coding in codings:
        chunks = [_compress(coding, chunks)]
    return chunks[0]


def _compress(coding: str, chunks: list[bytes]) -> bytes:
    if coding == "br":
        c = brotli.Compressor(quality=5)
        return b"".join(c.process(z) for z in chunks) + c.finish()
    if coding == "zstd":
        c = zstandard.ZstdCompressor().compressobj()
        return b"".join(c.compress(z) for z in chunks) + c.flush()
    c = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS if coding == "gzip" else zlib.MAX_WBITS)
    return b"".join(c.compress(z) for z in chunks) + c.flush()


BOMB_ENCODINGS = ("gzip", "deflate", "br", "zstd", "gzip, br", "zstd, gzip", "deflate, deflate")


def deep_json(depth: int, kind: str) -> bytes:
    if kind == "list":
        return b"[" * depth + b"1" + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


def huge_array(n: int, rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        return json.dumps(list(range(n))).encode()
    return json.dumps([{"id": i, "name": f"n{i}", "tags": ["a", "b"]} for i in range(n // 8)]).encode()


def odd_json(rng: random.Random) -> bytes:
    """JSON that parses, with what a store or a schema learner may choke on."""
    return rng.choice([
        b'{"a": "\\ud800"}',  # a lone surrogate (escaped: the bytes are ASCII)
        b'{"a": "\\u0000", "\\u0000": 1}',
        b'{"a": 1e999, "b": -1e999}',  # parses to inf
        b'{"a": 123456789012345678901234567890123456789}',
        b'{"a": 1, "a": 2}',
        b'{"": {"": [[], {}, null]}}',
        '{"k\u00e9y": "v\u00e4lue \U0001f600"}'.encode(),
        b'["\xff\xfe", "\xc3\x28"]',  # not UTF-8 inside strings
        b'\xef\xbb\xbf{"bom": true}',
        b'  \t\n{"spaced": true}  \n',
        b"NaN",
        b'{"a": [' + b"0," * 2000 + b"0]}",
    ])


def broken_json(rng: random.Random) -> bytes:
    return rng.choice([b'{"a": ', b'{"a": 1,}', b"[1, 2", b"{'a': 1}", b'{"a": tru}', b"}{", b'"\\x"', b"\x00\x01\x02"])


def bad_utf8(rng: random.Random) -> bytes:
    return rng.choice([b"\xff\xfe\xfd", b"caf\xe9", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf"])


# --- responses -------------------------------------------------------------------------

# Kinds the backend answers validly: the client must get the same status and body.
VALID = (
    "json", "chunked", "brokenjson", "oddjson", "deepjson", "hugearray", "badutf8body", "badutf8header",
    "headerflood", "bomb", "big", "empty204", "oddstatus", "html", "binary", "keepalive-json", "badcl-short",
)
# Kinds with broken framing or no answer: the client gets an error or a closed connection, in time.
INVALID = ("badheadername", "badcl-long", "badchunk", "badchunk-short", "garbage", "close", "reset", "cl-te", "hang", "trickle")


@dataclass
class Answer:
    """What the backend sends for one request: the bytes, and if they are a valid response,
    its status and body (that the client must get as they are)."""

    parts: list[bytes]
    status: int | None = None  # None: not a valid response
    body: bytes | None = None
    delay: float = 0.0  # seconds before closing without an answer (hang), or between bytes (trickle)
    reset: bool = False
    trickle: bool = False
    strict: bool = True  # False: a proxy may also refuse it


def _head(status: int, headers: list[tuple[bytes, bytes]], reason: bytes = b"OK") -> bytes:
    lines = [b"HTTP/1.1 %d %s" % (status, reason)] + [k + b": " + v for k, v in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _valid(status: int, body: bytes, headers: list[tuple[bytes, bytes]] = (), reason: bytes = b"OK") -> Answer:
    hs = [(b"Content-Length", str(len(body)).encode()), (b"Connection", b"close"), *headers]
    return Answer([_head(status, hs, reason), body], status, body)


def _chunked(body: bytes, sizes: list[int]) -> bytes:
    out, at = [], 0
    for n in sizes:
        if at >= len(body):
            break
        piece = body[at:at + n]
        out.append(b"%x\r\n" % len(piece) + piece + b"\r\n")
        at += n
    if at < len(body):
        out.append(b"%x\r\n" % (len(body) - at) + body[at:] + b"\r\n")
    return b"".join(out) + b"0\r\n\r\n"


JSON = (b"Content-Type", b"application/json")


def answer(kind: str, n: int, hang: float = 3.0) -> Answer:
    """The backend's answer of `kind` to exchange `n` (the same every time it is asked)."""
    rng = random.Random(f"resp-{n}-{kind}")
    small = json.dumps({"id": n, "name": f"item {n}", "tags": ["x"] * (n % 5)}).encode()
    if kind in ("json", "keepalive-json"):
        return _valid(200, small, [JSON])
    if kind == "badcl-short":  # framed as 5 bytes: the rest is junk after the message, on a closing connection
        return Answer([_head(200, [(b"Content-Length", b"5"), (b"Connection", b"close"), JSON]), small], 200, small[:5])
    if kind == "chunked":
        head = _head(200, [(b"Transfer-Encoding", b"chunked"), (b"Connection", b"close"), JSON])
        return Answer([head, _chunked(small, [rng.randint(1, 9) for _ in range(8)])], 200, small)
    if kind == "brokenjson":
        return _valid(rng.choice([200, 400, 500]), broken_json(rng), [JSON])
    if kind == "oddjson":
        return _valid(200, odd_json(rng), [JSON])
    if kind == "deepjson":
        return _valid(200, deep_json(rng.choice([50, 127, 129, 1000, 100_000]), rng.choice(["list", "dict"])), [JSON])
    if kind == "hugearray":
        return _valid(200, huge_array(rng.choice([10_000, 100_000, 400_000]), rng), [JSON])
    if kind == "badutf8body":
        return _valid(200, b'{"name": "' + bad_utf8(rng) + b'"}', [(b"Content-Type", b"application/json; charset=utf-8")])
    if kind == "badutf8header":
        odd = [(b"X-Odd", bad_utf8(rng)), (b"Set-Cookie", b"s=" + bad_utf8(rng)),
               (b"Content-Type", b"application/json; charset=\xff"), (b"X-Reason", b"caf\xe9 " + bad_utf8(rng))]
        return _valid(200, small, rng.sample(odd, 2))
    if kind == "badheadername":  # not a token: a proxy refuses it
        return Answer([_head(200, [(b"X-" + bad_utf8(rng) + b"-Name", b"v"), (b"Content-Length", str(len(small)).encode())]), small])
    if kind == "headerflood":
        count = rng.choice([100, 500, 2000])
        return _valid(200, small, [JSON] + [(b"X-Flood-%d" % i, b"v" * rng.randint(1, 30)) for i in range(count)])
    if kind == "bomb":
        encoding = rng.choice(BOMB_ENCODINGS)
        return _valid(200, bomb(encoding), [JSON, (b"Content-Encoding", encoding.encode())])
    if kind == "big":
        return _valid(200, big_body(), [JSON])
    if kind == "empty204":
        return Answer([_head(204, [(b"Connection", b"close")], b"No Content")], 204, b"")
    if kind == "oddstatus":
        status = rng.choice([299, 418, 451, 499, 599, 207, 226])
        return _valid(status, small, [JSON], reason=rng.choice([b"Odd", b"", b"\xff\xfe Reason"]))
    if kind == "html":
        return _valid(200, b"<html><body>" + bad_utf8(rng) + b"</body></html>", [(b"Content-Type", b"text/html")])
    if kind == "binary":
        return _valid(200, rng.randbytes(rng.randint(0, 4096)), [(b"Content-Type", b"application/octet-stream")])
    # invalid framing, or no answer
    if kind == "badcl-long":
        return Answer([_head(200, [(b"Content-Length", str(len(small) + 100).encode()), (b"Connection", b"close"), JSON]), small])
    if kind == "badchunk":
        head = _head(200, [(b"Transfer-Encoding", b"chunked"), (b"Connection", b"close"), JSON])
        return Answer([head, rng.choice([b"zz\r\nabc\r\n0\r\n\r\n", b"-5\r\nabc\r\n", b"5\r\nab", b"ffffffffffffffffffff\r\nab\r\n"])])
    if kind == "badchunk-short":
        head = _head(200, [(b"Transfer-Encoding", b"chunked"), (b"Connection", b"close"), JSON])
        return Answer([head, b"100\r\n" + small])
    if kind == "cl-te":
        chunked = _chunked(small, [7])
        head = _head(200, [(b"Content-Length", str(len(chunked) + 3).encode()), (b"Transfer-Encoding", b"chunked"), JSON])
        # RFC 9112 6.3: chunked wins, and an intermediary may pass it on without the Content-Length
        return Answer([head, chunked], 200, small, strict=False)
    if kind == "garbage":
        return Answer([rng.choice([b"\x16\x03\x01\x02\x00", b"HTTP/9.9 abc\r\n\r\n", b"not http at all\r\n\r\n", b"HTTP/1.1 200 OK\r\nX: \x00\r\nbroken"])])
    if kind == "close":
        return Answer([])
    if kind == "reset":
        return Answer([], reset=True)
    if kind == "hang":
        return Answer([], delay=hang)
    if kind == "trickle":
        return Answer([_head(200, [(b"Content-Length", str(len(small)).encode()), JSON]), small], delay=hang, trickle=True)
    raise ValueError(kind)


def digest(body: bytes) -> tuple[int, str]:
    return len(body), hashlib.sha1(body).hexdigest()


class Backend:
    """A threaded raw-socket HTTP/1.1 server on 127.0.0.1 that answers as each request's
    `X-Hostile-Resp` says, counts requests, and records what it answered per `X-Hostile-Id`."""

    def __init__(self, hang: float = 3.0):
        self.hang = hang
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.lock = threading.Lock()
        self.count = 0
        self.valid: dict[str, list[tuple[int, tuple[int, str]]]] = {}  # id -> [(status, digest)] answered validly
        self.lenient: dict[str, list[tuple[int, tuple[int, str]]]] = {}  # id -> answered in a form a proxy may refuse
        self.invalid: dict[str, int] = {}  # id -> times answered with broken framing or not at all
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.closed = True
        self.sock.close()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        reader = Reader(conn)
        try:
            while True:
                head = reader.head()
                if head is None:
                    return
                _, _, headers = parse_head(head)
                reader.body(headers, method=b"")
                with self.lock:
                    self.count += 1
                hid = headers.get(b"x-hostile-id", b"?").decode("latin-1")
                kind = headers.get(b"x-hostile-resp", b"json").decode("latin-1")
                a = answer(kind, _number(hid), self.hang)
                with self.lock:
                    if a.status is not None and not a.strict:
                        self.lenient.setdefault(hid, []).append((a.status, digest(a.body)))
                    elif a.status is not None:
                        self.valid.setdefault(hid, []).append((a.status, digest(a.body)))
                    else:
                        self.invalid[hid] = self.invalid.get(hid, 0) + 1
                if a.reset:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                if a.trickle:
                    for part in a.parts:
                        for i in range(0, len(part), 8):
                            conn.sendall(part[i:i + 8])
                            time.sleep(a.delay / 10)
                    return
                if a.delay:
                    time.sleep(a.delay)
                    return
                for part in a.parts:
                    conn.sendall(part)
                if kind != "keepalive-json":
                    return
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass


def _number(hid: str) -> int:
    digits = "".join(c for c in hid if c.isdigit())
    return int(digits) if digits else 0


# --- the wire: reading messages ----------------------------------------------------------


class Reader:
    def __init__(self, conn: socket.socket):
        self.conn, self.buf = conn, bytearray()

    def _fill(self) -> bool:
        data = self.conn.recv(1 << 20)
        if not data:
            return False
        self.buf += data
        return True

    def head(self) -> bytes | None:
        """The head of the next message, or None at a clean end of the connection."""
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            if len(self.buf) > HEAD_LIMIT:
                raise ValueError("head too long")
            if not self._fill():
                if self.buf:
                    raise EOFError("closed within a head")
                return None
        head = bytes(self.buf[:end])
        del self.buf[:end + 4]
        return head

    def exactly(self, n: int, sink: hashlib._Hash | None = None) -> bytes:
        out = bytearray()
        while n > 0:
            if not self.buf and not self._fill():
                raise EOFError("closed within a body")
            take = self.buf[:n]
            del self.buf[:n]
            n -= len(take)
            if sink is not None:
                sink.update(take)
            else:
                out += take
        return bytes(out)

    def line(self) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            if len(self.buf) > HEAD_LIMIT or not self._fill():
                raise EOFError("closed within a chunk line")
        line = bytes(self.buf[:end])
        del self.buf[:end + 2]
        return line

    def body(self, headers: dict[bytes, bytes], *, method: bytes, status: int = 0) -> tuple[int, str]:
        """Read a body as its framing says, hashing it as it comes (50 MB is never kept whole)."""
        sink, size = hashlib.sha1(), 0
        if method == b"HEAD" or status in (204, 304) or 100 <= status < 200:
            return digest(b"")
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            while True:
                n = int(self.line().split(b";")[0], 16)
                if n == 0:
                    while self.line():
                        pass
                    return size, sink.hexdigest()
                self.exactly(n, sink)
                size += n
                if self.line() != b"":
                    raise ValueError("chunk not followed by CRLF")
        if b"content-length" in headers:
            n = int(headers[b"content-length"])
            self.exactly(n, sink)
            return n, sink.hexdigest()
        if status == 0:  # a request without framing has no body
            return digest(b"")
        while self.buf or self._fill():  # until the connection closes
            sink.update(self.buf)
            size += len(self.buf)
            self.buf.clear()
        return size, sink.hexdigest()


def parse_head(head: bytes) -> tuple[bytes, bytes, dict[bytes, bytes]]:
    first, *lines = head.split(b"\r\n")
    headers: dict[bytes, bytes] = {}
    for line in lines:
        k, _, v = line.partition(b":")
        headers[k.strip().lower()] = v.strip()
    return first, b"", headers


# --- the client --------------------------------------------------------------------------


@dataclass
class Result:
    outcome: str  # "response", "closed" (no whole response), "timeout"
    status: int | None = None
    headers: dict[bytes, bytes] = field(default_factory=dict)
    body: tuple[int, str] | None = None
    error: str = ""
    seconds: float = 0.0

    @property
    def source(self) -> str | None:
        v = self.headers.get(b"x-mockstore-source")
        return v.decode("latin-1") if v is not None else None


def exchange(port: int, request: list[bytes], method: bytes, *, half_close: bool, timeout: float) -> Result:
    """Send the request's bytes as they are and read one response, within `timeout` seconds
    in all (a read that waits longer is a hang: outcome "timeout")."""
    started = time.monotonic()
    try:
        conn = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError as e:
        return Result("closed", error=f"connect: {e}")
    deadline = started + timeout
    try:
        conn.settimeout(timeout)
        sent_error = ""
        try:
            for part in request:
                conn.sendall(part)
            if half_close:
                conn.shutdown(socket.SHUT_WR)
        except OSError as e:  # the proxy may answer (413, 400) and close before all is sent
            sent_error = f"send: {e}"
        reader = Reader(conn)
        _Deadline(conn, deadline).install(reader)
        try:
            head = reader.head()
            if head is None:
                return Result("closed", error=sent_error or "closed before a response")
            first, _, headers = parse_head(head)
            status = int(first.split(b" ")[1])
            while 100 <= status < 200 and status != 101:  # an interim answer
                first, _, headers = parse_head(reader.head() or b"HTTP/1.1 0 -")
                status = int(first.split(b" ")[1])
            body = reader.body(headers, method=method, status=status)
            return Result("response", status, headers, body, sent_error, time.monotonic() - started)
        except (TimeoutError, socket.timeout):
            return Result("timeout", error="no whole response in time", seconds=time.monotonic() - started)
        except (OSError, EOFError, ValueError, IndexError) as e:
            return Result("closed", error=f"{type(e).__name__}: {e}", seconds=time.monotonic() - started)
    finally:
        conn.close()


class _Deadline:
    """Each recv waits at most until the exchange's deadline, so a trickle cannot stretch it."""

    def __init__(self, conn: socket.socket, deadline: float):
        self.conn, self.deadline = conn, deadline

    def install(self, reader: Reader) -> None:
        fill = reader._fill

        def bounded() -> bool:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.conn.settimeout(left)
            return fill()

        reader._fill = bounded


# --- the generator -----------------------------------------------------------------------


@dataclass
class Case:
    id: str
    req: str  # request kind
    resp: str  # what the backend answers
    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes | str = b""  # "big" or a bomb encoding: made when sent (shared, not per case)
    framing: str = "cl"  # cl, chunked, or a broken one
    valid_request: bool = True  # framing a proxy must accept

    def wire(self) -> list[bytes]:
        body = self.body
        if body == "big":
            body = big_body()
        elif isinstance(body, str):
            body = bomb(body)
        head = [self.method + b" " + self.target + b" HTTP/1.1", b"Host: hostile.test",
                b"X-Hostile-Id: " + self.id.encode(), b"X-Hostile-Resp: " + self.resp.encode(), b"Connection: close"]
        head += [k + b": " + v for k, v in self.headers]
        f = self.framing
        if f == "chunked":
            head.append(b"Transfer-Encoding: chunked")
            return [b"\r\n".join(head) + b"\r\n\r\n", _chunked(body, [1000, 3, 70000])]
        if f == "badcl-long":
            head.append(b"Content-Length: %d" % (len(body) + 1000))
        elif f == "badcl-short":
            head.append(b"Content-Length: %d" % max(0, len(body) // 2))
            body += b"\x00\xffGARBAGE / HTTP/1.1\r\nbroken\r\n\r\n"
        elif f == "badchunk":
            head.append(b"Transfer-Encoding: chunked")
            return [b"\r\n".join(head) + b"\r\n\r\n", b"zz\r\n" + body[:10] + b"\r\n0\r\n\r\n"]
        elif f == "cl-te":
            head += [b"Content-Length: 3", b"Transfer-Encoding: chunked"]
            return [b"\r\n".join(head) + b"\r\n\r\n", _chunked(body, [5])]
        elif body or self.method in (b"POST", b"PUT", b"PATCH"):
            head.append(b"Content-Length: %d" % len(body))
        return [b"\r\n".join(head) + b"\r\n\r\n", body]


WORDS = ["users", "orders", "items", "api", "v1", "v2", "search", "files", "a", "b", "ca\xe9", "x-y", "z_z"]

REQUEST_KINDS = {  # kind: weight
    "plain": 30, "query": 10, "oddpath": 8, "json": 8, "brokenjson": 4, "oddjson": 4, "deepjson": 3,
    "hugearray": 2, "badutf8": 6, "headerflood": 3, "bomb": 2, "chunked": 3, "badframing": 4,
}
RESPONSE_LEARN = {  # kind: weight, when learning
    "json": 30, "chunked": 5, "brokenjson": 4, "oddjson": 5, "deepjson": 3, "hugearray": 2, "badutf8body": 4,
    "badutf8header": 4, "headerflood": 2, "bomb": 2, "empty204": 2, "oddstatus": 3, "html": 2, "binary": 2,
    "keepalive-json": 2, "badheadername": 1, "badcl-long": 1, "badcl-short": 1, "badchunk": 1, "badchunk-short": 1, "cl-te": 1,
    "garbage": 1, "close": 1,
}
RESPONSE_FAILOVER = {  # a misbehaving upstream
    "json": 20, "chunked": 3, "oddjson": 3, "badutf8header": 2, "bomb": 1, "oddstatus": 2, "brokenjson": 3,
    "badheadername": 1, "badcl-long": 2, "badcl-short": 1, "badchunk": 2, "badchunk-short": 2, "cl-te": 1, "garbage": 2, "close": 2,
    "reset": 3, "hang": 2, "trickle": 1,
}


def _pick(rng: random.Random, weights: dict[str, int]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def generate(seed: int, n: int, responses: dict[str, int], *, prefix: str = "", big: int = 0) -> list[Case]:
    """`n` exchanges from `seed`; `big` of them carry a 50 MB body (half each way)."""
    rng = random.Random(seed)
    cases = [_case(rng, f"{prefix}{i}", _pick(rng, REQUEST_KINDS), _pick(rng, responses)) for i in range(n)]
    for j, i in enumerate(rng.sample(range(n), min(big, n))):
        c = cases[i]
        if j % 2 == 0:
            c.req, c.method, c.body, c.framing, c.valid_request = "big", b"POST", "big", "cl", True
            c.headers = [(b"Content-Type", b"application/json")]
        else:
            c.resp = "big"
    return cases


def _segment(rng: random.Random, i: int) -> str:
    return rng.choice([str(i), f"{rng.choice(WORDS)}{i % 97}", rng.choice(WORDS), f"{i:x}", f"id-{rng.randrange(10**6)}"])


def _case(rng: random.Random, hid: str, kind: str, resp: str) -> Case:
    i = int(hid.lstrip("abcdefghijklmnopqrstuvwxyz") or 0)
    path = "/" + "/".join(_segment(rng, i) for _ in range(rng.randint(1, 4)))
    target = path.encode("utf-8", "surrogateescape")
    c = Case(hid, kind, resp, b"GET", target, [])
    if kind == "query":
        c.target += rng.choice([
            b"?a=1&a=2&a=3", b"?&&=&==", b"?q=%ZZ%", b"?q=" + b"x" * rng.choice([100, 4000]), b"?" + b"&".join(b"k%d=v" % j for j in range(rng.choice([10, 300]))),
            b"?empty", b"?a[b][c]=1&a[]=2", b"?q=%00%ff%fe", b"?%E9t%E9=%C3%A9", b"?page=%d&limit=%d" % (rng.randrange(100), rng.randrange(1000)),
            b"?json=%7B%22a%22%3A1%7D", b"?;=;", b"?a=1#frag",
        ])
    elif kind == "oddpath":
        c.target = rng.choice([
            b"//double//slashes//", b"/a/./b/../c", b"/%2e%2e/%2e%2e/etc/passwd", b"/a%00b", b"/a;param=1/b;c",
            b"/" + b"long" * rng.choice([100, 2000]), b"/%ZZ/%", b"/ends/with/", b"/\xe2\x98\x83/snow", b"/caf\xe9/%d" % i,
            b"/a%2Fb%2Fc", b"/~user/@me/!$&'()*+,=", b"*" if rng.random() < 0.2 else b"/star*", b"/" + b"/".join(b"%d" % j for j in range(200)),
            b"/UPPER/Case/%d" % i, b"/.well-known/x", b"/a b" if rng.random() < 0.3 else b"/a+b",
        ])
        if c.target in (b"*", b"/a b"):
            c.valid_request = False  # mitmproxy refuses it: what matters is the answer and the next request
    elif kind == "json":
        c.method = rng.choice([b"POST", b"PUT", b"PATCH"])
        c.body = json.dumps({"name": f"n{i}", "n": i, "nested": {"list": [1, 2, {"k": "v"}]}}).encode()
        c.headers = [(b"Content-Type", b"application/json")]
    elif kind == "brokenjson":
        c.method, c.body, c.headers = b"POST", broken_json(rng), [(b"Content-Type", b"application/json")]
    elif kind == "oddjson":
        c.method, c.body, c.headers = b"POST", odd_json(rng), [(b"Content-Type", b"application/json")]
    elif kind == "deepjson":
        c.method = b"POST"
        c.body = deep_json(rng.choice([50, 127, 129, 1000, 100_000]), rng.choice(["list", "dict"]))
        c.headers = [(b"Content-Type", b"application/json")]
    elif kind == "hugearray":
        c.method, c.body, c.headers = b"POST", huge_array(rng.choice([10_000, 100_000, 400_000]), rng), [(b"Content-Type", b"application/json")]
    elif kind == "badutf8":
        where = rng.choice(["path", "query", "header", "hname", "body", "form"])
        odd = bad_utf8(rng)
        if where == "path":
            c.target += b"/" + odd
        elif where == "query":
            c.target += b"?q=" + odd + b"&" + odd + b"=1"
        elif where == "header":
            c.headers = [(b"X-Odd", odd), (b"User-Agent", b"agent " + odd), (b"Cookie", b"c=" + odd)]
        elif where == "hname":  # not a token: refused (400), and the next request is served
            c.headers, c.valid_request = [(b"X-" + odd + b"-H", b"1")], False
        elif where == "body":
            c.method, c.body, c.headers = b"POST", b'{"s": "' + odd + b'"}', [(b"Content-Type", b"application/json")]
        else:
            c.method, c.body = b"POST", b"a=" + odd + b"&password=" + odd
            c.headers = [(b"Content-Type", b"application/x-www-form-urlencoded; charset=\xff")]
    elif kind == "headerflood":
        n = rng.choice([100, 500, 1000])
        c.headers = [(b"X-Flood-%d" % j, b"v" * rng.randint(1, 40)) for j in range(n)]
        if rng.random() < 0.3:
            c.headers.append((b"X-Long", b"L" * rng.choice([8000, 60000])))
    elif kind == "bomb":
        encoding = rng.choice(BOMB_ENCODINGS)
        c.method, c.body = b"POST", encoding
        c.headers = [(b"Content-Type", b"application/json"), (b"Content-Encoding", encoding.encode())]
    elif kind == "chunked":
        c.method, c.framing = b"POST", "chunked"
        c.body = json.dumps({"chunked": i, "pad": "p" * rng.randint(0, 90000)}).encode()
        c.headers = [(b"Content-Type", b"application/json")]
    elif kind == "badframing":
        c.method, c.framing, c.valid_request = b"POST", rng.choice(["badcl-long", "badcl-short", "badchunk", "cl-te"]), False
        c.body = json.dumps({"framing": i}).encode()
        c.headers = [(b"Content-Type", b"application/json")]
    return c
