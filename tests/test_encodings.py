"""Bodies stay exact, and decoding them is bounded: a compressed body goes through failover
as it came (not compressed twice), and a small body that would decode to gigabytes costs
the proxy no more than about mock_max_body."""

from __future__ import annotations

import functools
import gzip
import json
import sqlite3
import tracemalloc
import zlib

import brotli
import httpx
import pytest
import zstandard
from conftest import free_port
from faulty_backend import Faulty

from mockstore import bodies

LIMIT = 1 << 20
BOMB = 512 << 20  # bytes a bomb decodes to


@functools.cache
def bomb(encoding: str) -> bytes:
    zeros = bytes(16 << 20)
    if encoding == "br":
        c = brotli.Compressor(quality=5)
        return b"".join(c.process(zeros) for _ in range(BOMB // len(zeros))) + c.finish()
    if encoding == "zstd":
        c = zstandard.ZstdCompressor().compressobj()
        return b"".join(c.compress(zeros) for _ in range(BOMB // len(zeros))) + c.flush()
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS)
    return b"".join(c.compress(zeros) for _ in range(BOMB // len(zeros))) + c.flush()


ENCODE = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": lambda b: zstandard.ZstdCompressor().compress(b),
}


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
def test_decoding_stops_at_the_limit(encoding):
    body = json.dumps({"n": list(range(1000))}).encode()
    assert bodies.decode(ENCODE[encoding](body), encoding, limit=LIMIT) == body
    data = bomb(encoding)
    tracemalloc.start()
    try:
        with pytest.raises(bodies.BodyError, match="over mock_max_body"):
            bodies.decode(data, encoding, limit=LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40 * LIMIT, f"{len(data)} bytes of {encoding} took {peak >> 20} MB to refuse"


def test_lists_of_encodings_and_broken_bodies():
    body = b'{"a": 1}'
    assert bodies.decode(brotli.compress(gzip.compress(body)), "gzip, br", limit=LIMIT) == body
    assert bodies.decode(zlib.compress(body)[2:-4], "deflate", limit=LIMIT) == body  # raw deflate
    for encoding, data in [("gzip", gzip.compress(body)[:-6]), ("br", b"nope"), ("zstd", b"nope"), ("snappy", body)]:
        with pytest.raises(bodies.BodyError):
            bodies.decode(data, encoding, limit=LIMIT)


def peak_rss_mb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) >> 10
    raise AssertionError("no VmHWM")


@pytest.mark.parametrize("encoding", ["br", "zstd"])
def test_a_compressed_bomb_costs_the_proxy_little(backend, proxy, encoding):
    """A 1 KB request body that decodes to 512 MB: refused at mock_max_body, not decoded whole."""
    api, url = backend()
    p = proxy(url, mode="mock")
    with p.client() as c:
        c.get("/users/1")  # warmed up
        before = peak_rss_mb(p.proc.proc.pid)
        r = c.post("/items", content=bomb(encoding), headers={"content-encoding": encoding, "content-type": "application/json"})
        assert "x-mockstore-source" in r.headers, "answered by mockstore"
        assert c.get("/users/1").headers["x-mockstore-source"], "and it goes on serving"
        grown = peak_rss_mb(p.proc.proc.pid) - before
    assert grown < 200, f"the proxy's peak memory grew {grown} MB"
    assert "over mock_max_body" in p.stop()


def test_failover_keeps_a_compressed_body_as_it_came(procs, proxy):
    api = Faulty(procs, free_port())
    p = proxy(api.url, mode="failover", mock_upstream_timeout=1)
    with httpx.Client(base_url=api.url) as direct, p.client() as c:
        with direct.stream("GET", "/gzip") as r:
            expected = b"".join(r.iter_raw())
        with c.stream("GET", "/gzip") as r:
            assert "x-mockstore-source" not in r.headers
            assert r.headers["content-encoding"] == "gzip"
            assert b"".join(r.iter_raw()) == expected, "gzip once, as the upstream sent it"
        api.kill()
        r = c.get("/gzip")
        assert r.headers["x-mockstore-source"] == "failover-recorded"
        assert r.json() == {"compressed": True, "n": 42}, "the recording is the body, not a second gzip of it"
    p.stop()
    (body,) = sqlite3.connect(p.db).execute("select resp_body from exchanges where path = '/gzip'").fetchone()
    assert json.loads(body) == {"compressed": True, "n": 42}
