"""Forwarding a request ourselves, for failover mode.

mitmproxy answers an unreachable or reset upstream with its own error page and gives addons
no way to substitute a response at that point (the `error` hook is informational). So in
failover mode the addon forwards the request itself, on a worker thread with a deadline,
and falls back to a mocked answer when that fails. Connections are kept alive per thread.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
     "transfer-encoding", "upgrade", "proxy-connection"}
)


class UpstreamError(Exception):
    """The upstream could not be reached, reset the connection, or did not answer in time."""


_local = threading.local()


def _connection(scheme: str, host: str, port: int, timeout: float, verify: bool) -> http.client.HTTPConnection:
    pool = getattr(_local, "pool", None)
    if pool is None:
        pool = _local.pool = {}
    key = (scheme, host, port, verify)
    conn = pool.get(key)
    if conn is None:
        if scheme == "https":
            ctx = ssl.create_default_context() if verify else ssl._create_unverified_context()
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        pool[key] = conn
    conn.timeout = timeout
    if conn.sock is not None:
        conn.sock.settimeout(timeout)
    return conn


def _drop(scheme: str, host: str, port: int, verify: bool) -> None:
    conn = getattr(_local, "pool", {}).pop((scheme, host, port, verify), None)
    if conn is not None:
        conn.close()


def forward(
    method: str, scheme: str, host: str, port: int, target: str,
    headers: list[tuple[str, str]], body: bytes, *, timeout: float, verify: bool = True,
) -> tuple[int, list[tuple[str, str]], bytes]:
    """Send one request upstream; (status, headers, raw body) or UpstreamError.

    A request on a kept-alive connection that the server had closed is retried once on a
    fresh connection, as browsers do; anything else that fails is the upstream's failure.
    """
    send_headers = [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP]
    for attempt in (1, 2):
        conn = _connection(scheme, host, port, timeout, verify)
        reused = conn.sock is not None
        try:
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for k, v in send_headers:
                conn.putheader(k, v)
            if body and not any(k.lower() == "content-length" for k, _ in send_headers):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body or None)
            resp = conn.getresponse()
            data = resp.read()
            out = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP]
            if resp.will_close:
                _drop(scheme, host, port, verify)
            return resp.status, out, data
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
            _drop(scheme, host, port, verify)
            if reused and attempt == 1:
                continue
            raise UpstreamError(f"upstream closed the connection: {e}") from None
        except (socket.timeout, TimeoutError):
            _drop(scheme, host, port, verify)
            raise UpstreamError(f"upstream did not answer within {timeout:g} s") from None
        except (OSError, http.client.HTTPException, ssl.SSLError) as e:
            _drop(scheme, host, port, verify)
            raise UpstreamError(f"upstream unreachable: {e}") from None
    raise UpstreamError("upstream unreachable")  # pragma: no cover
