"""Forwarding a request ourselves, for failover mode.

mitmproxy answers an unreachable or reset upstream with its own error page and gives addons
no way to substitute a response at that point (the `error` hook is informational). So in
failover mode the addon forwards the request itself and falls back to a mocked answer when
that fails.

It forwards on the proxy's own event loop (httpx's AsyncClient: a pool of kept-alive
connections, HTTP/1.1 framing), so a hanging upstream holds no thread and every client of it
waits its own deadline, not its turn in a thread pool. The deadline covers the whole
exchange, connect, headers and body: an upstream trickling a byte a second cannot hold a
client longer than a silent one. The response is kept as it came: status, reason, headers
in order and spelling, the body as raw bytes (still compressed if it was).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

import certifi
import httpx

from .exchange import authority

HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailers",
     b"transfer-encoding", b"upgrade", b"proxy-connection"}
)
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
MAX_CONNECTIONS = 512  # per forwarder, all upstreams: beyond it a request waits (within its deadline)

# why forwarding failed: what a failover answer and the log say
REFUSED, RESET, TIMEOUT, TLS, UNREACHABLE, SERVER_ERROR = "refused", "reset", "timeout", "tls", "unreachable", "5xx"


class UpstreamError(Exception):
    """The upstream could not be reached, reset the connection, or did not answer in time."""

    def __init__(self, cause: str, message: str):
        super().__init__(message)
        self.cause = cause


@dataclass(frozen=True)
class Tls:
    """How to verify upstream certificates: mitmproxy's own options, as its TlsConfig reads
    them (`ssl_insecure`, `ssl_verify_upstream_trusted_ca`, `..._confdir`; certifi when
    neither is set)."""

    insecure: bool = False
    ca_file: str | None = None
    ca_dir: str | None = None

    def context(self) -> ssl.SSLContext:
        if self.insecure:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        ca_file = self.ca_file or (None if self.ca_dir else certifi.where())
        try:
            return ssl.create_default_context(cafile=ca_file, capath=self.ca_dir)
        except (OSError, ssl.SSLError) as e:
            raise ValueError(f"cannot load trusted certificates (ca={ca_file!r}, dir={self.ca_dir!r}): {e}") from None


@dataclass
class Reply:
    status: int
    reason: bytes
    http_version: bytes
    headers: list[tuple[bytes, bytes]]  # as received, less hop-by-hop ones
    body: bytes  # raw: content-encoding not undone


class Forwarder:
    def __init__(self, *, timeout: float, tls: Tls = Tls()):
        self.timeout = timeout
        self.tls = tls
        self._ssl = tls.context()
        self._client = httpx.AsyncClient(
            verify=self._ssl, timeout=None, follow_redirects=False, trust_env=False,
            limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=64),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def forward(
        self, method: str, scheme: str, host: str, port: int, target: str,
        headers: list[tuple[bytes, bytes]], body: bytes, *, sni: str | None = None,
    ) -> Reply:
        """One exchange with the upstream within `timeout` seconds in all, or UpstreamError.
        A request on a kept-alive connection that the server had closed meanwhile fails as a
        reset: an idempotent one is sent once more on a fresh connection, as browsers do."""
        send = [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP]
        url = f"{scheme}://{authority(scheme, host, port)}{target}"
        extensions = {"sni_hostname": sni} if sni and sni != host and scheme == "https" else {}
        try:
            async with asyncio.timeout(self.timeout):
                for attempt in (1, 2):
                    request = httpx.Request(method, url, headers=send, content=body, extensions=extensions)
                    try:
                        return await self._exchange(request)
                    except UpstreamError as e:
                        if attempt == 2 or e.cause != RESET or method not in IDEMPOTENT:
                            raise
        except TimeoutError:
            raise UpstreamError(TIMEOUT, f"upstream did not answer within {self.timeout:g} s") from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _exchange(self, request: httpx.Request) -> Reply:
        try:
            response = await self._client.send(request, stream=True)
            try:
                body = b"".join([chunk async for chunk in response.aiter_raw()])
            finally:
                await response.aclose()
        except httpx.ConnectError as e:
            raise _classified(e) from None
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError) as e:
            raise UpstreamError(RESET, f"upstream closed the connection: {e or type(e).__name__}") from None
        except httpx.HTTPError as e:
            raise UpstreamError(UNREACHABLE, f"upstream unreachable: {e or type(e).__name__}") from None
        fields = [(k, v) for k, v in response.headers.raw if k.lower() not in HOP_BY_HOP]
        return Reply(
            response.status_code, response.reason_phrase.encode("latin-1", "replace"),
            response.http_version.encode(), fields, body,
        )

    async def reachable(self, scheme: str, host: str, port: int, sni: str | None = None) -> bool:
        """A connection (and TLS handshake) succeeds within the deadline: the probe of an
        upstream whose failed requests were not safe to send again."""
        try:
            async with asyncio.timeout(self.timeout):
                tls = {"ssl": self._ssl, "server_hostname": sni or host} if scheme == "https" else {}
                _, writer = await asyncio.open_connection(host, port, **tls)
                writer.close()
                return True
        except (OSError, TimeoutError, ssl.SSLError):
            return False


def _classified(e: httpx.ConnectError) -> UpstreamError:
    """Why a connection failed, from the chain of exceptions under httpx's (anyio says "All
    connection attempts failed" over the refusal)."""
    text = str(e) or type(e).__name__
    chain, x = [], e
    while x is not None and len(chain) < 16:
        chain.append(x)
        x = x.__cause__ or x.__context__
    if any(isinstance(x, ssl.SSLError) for x in chain) or "SSL" in text or "certificate" in text:
        return UpstreamError(TLS, f"upstream TLS failed: {text}")
    for x in reversed(chain):  # the first cause
        if isinstance(x, ConnectionRefusedError):
            return UpstreamError(REFUSED, f"upstream refused the connection: {x}")
        if isinstance(x, ConnectionResetError):
            return UpstreamError(RESET, f"upstream closed the connection: {x}")
    return UpstreamError(UNREACHABLE, f"upstream unreachable: {text}")
