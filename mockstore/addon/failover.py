"""Failover: the request forwarded by mockstore itself (`mockstore.upstream`, one deadline per
exchange), since mitmproxy gives addons no way to answer a flow whose upstream connection
failed; a circuit breaker per upstream (`mockstore.breaker`); and the answer that stands in
for an upstream that failed."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from mitmproxy import ctx, http

from .. import flows, upstream
from ..answer import Answer
from ..breaker import Breaker
from .state import State

log = logging.getLogger("mockstore")

UPSTREAM_HEADER = "X-Mockstore-Upstream"  # on a failover answer: why the real API was not used


class Failover:
    def __init__(self, state: State, answer: Callable[..., Awaitable[Answer | None]]):
        self.state = state
        self._answer = answer  # Answering._answer: mockstore's answer to a flow
        self.breaker = Breaker()
        self._forwarder: upstream.Forwarder | None = None
        self._forwarder_key: tuple | None = None

    def close(self) -> None:
        self.breaker.close()

    async def forward(self, f: http.HTTPFlow) -> None:
        r = f.request
        name = f"{r.scheme}://{flows.authority(r)}"
        if self.breaker.is_open(name):  # known down: not worth a try
            await self.stand_in(f, "down", f"upstream {name} is down")
            return
        if r.raw_content is None:  # streamed (stream_large_bodies): only mitmproxy can forward it
            return
        started = time.time()
        try:
            forwarder = self._forwarding()
        except ValueError as e:  # the trusted CA options name no usable certificates
            await self.stand_in(f, upstream.TLS, str(e))
            return
        sni = f.server_conn.sni if isinstance(f.server_conn.sni, str) else None
        request = (r.method, r.scheme, r.host, r.port, r.path, list(r.headers.fields), r.raw_content)
        try:
            try:
                reply = await forwarder.forward(*request, sni=sni)
            except upstream.UpstreamError:
                raise
            except Exception as e:  # a request httpx refuses to send (a header it cannot encode, ...)
                log.debug("mockstore: forwarding failed", exc_info=True)
                raise upstream.UpstreamError(upstream.UNREACHABLE, f"forwarding failed: {type(e).__name__}: {e}") from None
        except upstream.UpstreamError as e:
            self.breaker.failed(name, e.cause, self._probe(forwarder, request, sni))
            await self.stand_in(f, e.cause, str(e))
            return
        headers = reply.headers
        bodiless = r.method == "HEAD" or reply.status in (204, 304) or reply.status < 200
        if not bodiless:  # the length of the body read (a chunked one sent with a Content-Length too: not that)
            headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(reply.body)).encode()))
        # as it came: raw bytes under their own content-encoding (Response.make would encode again)
        f.response = http.Response(
            reply.http_version, reply.status, reply.reason, http.Headers(headers), reply.body, None, started, time.time()
        )
        if reply.status < 500:
            self.breaker.succeeded(name)
        # A 5xx is answered from mockstore in the response hook, after it is learned. It is
        # no sign of a dead upstream for the breaker: one failing endpoint would open it for all.
        f.metadata.setdefault(flows.META_KEY, {}).update(forwarded=True, duration_ms=(time.time() - started) * 1000)

    async def stand_in(self, f: http.HTTPFlow, cause: str, note: str) -> None:
        """A failover answer: never a recorded error when a success of the request is known;
        logged once per endpoint and cause."""
        answer = await self._answer(f, prefix="failover-", note=note, avoid_errors=True)
        if f.response is not None:
            f.response.headers[UPSTREAM_HEADER] = cause
        endpoint = answer.endpoint if answer is not None and answer.endpoint else "a virtual or unknown endpoint"
        key = f"failover\n{endpoint}\n{cause}"
        if key not in self.state.warned:
            self.state.warned.add(key)
            source = f.metadata.get(flows.META_KEY, {}).get("source", "?")
            log.warning(f"mockstore: failover for {endpoint}: {note}; answered {source} (logged once per endpoint and cause)")

    def _forwarding(self) -> upstream.Forwarder:
        """The forwarder for the current options (made again when they change)."""
        o = ctx.options
        key = (self.state.upstream_timeout, o.ssl_insecure, o.ssl_verify_upstream_trusted_ca, o.ssl_verify_upstream_trusted_confdir)
        if key != self._forwarder_key:
            old = self._forwarder
            self._forwarder = upstream.Forwarder(timeout=key[0], tls=upstream.Tls(*key[1:]))
            self._forwarder_key = key
            if old is not None:
                asyncio.get_running_loop().create_task(old.aclose())
        return self._forwarder

    @staticmethod
    def _probe(forwarder: upstream.Forwarder, request: tuple, sni: str | None):
        """How the breaker tells the upstream is back: the failed request sent again when it
        is safe to (GET, HEAD, OPTIONS) is answered, whatever the status (a hanging upstream
        accepts connections); otherwise a connection is made."""
        method, scheme, host, port = request[:4]

        async def probe() -> bool:
            if method in ("GET", "HEAD", "OPTIONS"):
                try:
                    await forwarder.forward(*request, sni=sni)
                    return True
                except upstream.UpstreamError:
                    return False
            return await forwarder.reachable(scheme, host, port, sni)

        return probe
