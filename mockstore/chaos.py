"""Chaos on live flows: the faults a drawn rule injects into a mitmproxy HTTPFlow.

With `mockstore.flows`, the only library module that imports mitmproxy: a fault has to touch
the flow (kill it, answer it) and the client's connection (throttle it). Nothing here blocks
the event loop: delays are `asyncio.sleep`, and a slow body is trickled out by a task.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from mitmproxy import ctx, flowfilter, http

from mockstore.chaosrules import ChaosRules, Rule, parse_learned

log = logging.getLogger("mockstore.chaos")

SOURCE_HEADER = "X-Mockstore-Source"
CHAOS_HEADER = "X-Mockstore-Chaos"

ErrorSample = Callable[[str, int], "tuple[int, list, bytes] | None"]


def compile_filter(expr: str) -> flowfilter.TFilter:
    """A mitmproxy filter expression, compiled; ValueError when it does not parse."""
    return flowfilter.parse(expr)


@dataclass
class Fault:
    rule_id: str
    effect: str  # latency | error | reset | slow_body | timeout
    endpoint: str = ""
    delay_s: float = 0.0
    status: int = 0
    body: bytes | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    bytes_per_second: float = 0.0
    timeout_s: float | None = None

    def describe(self) -> str:
        if self.effect == "latency":
            return f"latency {self.delay_s * 1000:.0f} ms"
        if self.effect == "error":
            return f"error {self.status}"
        if self.effect == "slow_body":
            return f"slow body {self.bytes_per_second:g} B/s"
        return self.effect


class Chaos:
    """Decides, per flow, whether a rule fires, and applies the fault."""

    def __init__(self, rules: ChaosRules, *, max_timeout: float = 120.0,
                 error_sample: ErrorSample | None = None):
        self.rules = rules
        self.max_timeout = max_timeout
        self.error_sample = error_sample
        if rules.filter_compiler is None:
            rules.filter_compiler = compile_filter
        self._filters: dict[str, tuple[str, flowfilter.TFilter | None]] = {}
        self._tasks: set[asyncio.Task] = set()
        self._warned: set[str] = set()

    # --- deciding -------------------------------------------------------------------

    def decide(self, flow: http.HTTPFlow, method: str, template: str | None,
               learned_latency: Callable[[str], float | None] | None = None,
               *, endpoint_id: str | None = None) -> Fault | None:
        """The fault for this flow, if a rule fires. The first matching rule that fires wins.

        `learned_latency(stat)` gives the endpoint's learned latency in milliseconds for a
        statistic such as 'p99', or None when nothing is learned yet.
        """
        rules = self.rules
        rules.reload_if_changed()
        if not rules.enabled or not rules.rules:
            return None
        req = flow.request
        path = req.path.split("?", 1)[0]
        host = req.pretty_host
        for rule in rules.rules:
            if not rule.enabled or not rule.matches(method, template, path, host):
                continue
            if rule.filter and not self._matches_filter(rule, flow):
                continue
            coin, spread = rules.draw(rule)
            fault = self._fault(rule, spread, learned_latency) if coin < rule.probability else None
            rules.count(rule, fault is not None)
            if fault is not None:
                fault.endpoint = endpoint_id or f"{method} {host}{template or path}"
                return fault
        return None

    def _matches_filter(self, rule: Rule, flow: http.HTTPFlow) -> bool:
        cached = self._filters.get(rule.id)
        if cached is None or cached[0] != rule.filter:
            try:
                cached = (rule.filter, compile_filter(rule.filter))
            except ValueError as e:
                log.warning("chaos rule %r: field 'filter' is not valid, the rule never fires: %s", rule.id, e)
                cached = (rule.filter, None)
            self._filters[rule.id] = cached
        flt = cached[1]
        return bool(flt and flt(flow))

    def _fault(self, rule: Rule, spread: float, learned_latency) -> Fault | None:
        p = rule.params
        if rule.effect == "latency":
            if "ms" in p:
                ms = float(p["ms"])
            elif "min_ms" in p:
                ms = p["min_ms"] + spread * (p["max_ms"] - p["min_ms"])
            else:
                stat, factor = parse_learned(p["learned"])
                base = learned_latency(stat) if learned_latency else None
                if base is None:
                    if "fallback_ms" not in p:
                        return None  # nothing learned yet: no basis for the delay
                    ms = float(p["fallback_ms"])
                else:
                    ms = float(base) * factor
            return Fault(rule.id, "latency", delay_s=max(0.0, ms) / 1000)
        if rule.effect == "error":
            body = p.get("body")
            headers = [(str(k), str(v)) for k, v in (p.get("headers") or {}).items()]
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
                headers.insert(0, ("content-type", p.get("content_type", "application/json")))
            elif isinstance(body, str):
                body = body.encode()
                headers.insert(0, ("content-type", p.get("content_type", "text/plain; charset=utf-8")))
            return Fault(rule.id, "error", status=int(p.get("status", 500)), body=body, headers=headers)
        if rule.effect == "slow_body":
            return Fault(rule.id, "slow_body", bytes_per_second=float(p["bytes_per_second"]))
        if rule.effect == "timeout":
            seconds = float(p.get("seconds", self.max_timeout))
            return Fault(rule.id, "timeout", timeout_s=min(seconds, self.max_timeout))
        return Fault(rule.id, rule.effect)

    # --- applying -------------------------------------------------------------------

    async def apply_request(self, flow: http.HTTPFlow, fault: Fault) -> None:
        """Apply a fault in the request hook (slow bodies wait for apply_response)."""
        _mark(flow, fault)
        if fault.effect == "latency":
            await asyncio.sleep(fault.delay_s)
        elif fault.effect == "error":
            flow.response = self._error_response(fault)
            flow.metadata["mockstore"]["source"] = "chaos"
        elif fault.effect == "reset":
            flow.metadata["mockstore"]["source"] = "chaos"
            if flow.killable:
                flow.kill()
        elif fault.effect == "timeout":
            flow.metadata["mockstore"]["source"] = "chaos"
            await asyncio.sleep(fault.timeout_s if fault.timeout_s is not None else self.max_timeout)
            if flow.killable:  # the client is still there: it gets nothing, ever
                flow.kill()

    def apply_response(self, flow: http.HTTPFlow, fault: Fault) -> None:
        """In the response hook: mark the response, and throttle a slow body."""
        resp = flow.response
        if resp is None:
            return
        _mark(flow, fault)
        if fault.effect == "error":
            resp.headers[SOURCE_HEADER] = "chaos"
        resp.headers[CHAOS_HEADER] = f"{fault.describe()}; rule={fault.rule_id}"
        if fault.effect == "slow_body":
            size = len(resp.raw_content or b"")
            if not self._throttle(flow, fault.bytes_per_second, size):
                self._warn_once("throttle", "chaos: slow body is not possible on this connection; "
                                "the body goes out at full speed")

    def _error_response(self, fault: Fault) -> http.Response:
        status, headers, body = fault.status, list(fault.headers), fault.body
        if body is None and self.error_sample is not None:
            try:
                sample = self.error_sample(fault.endpoint, status)
            except Exception as e:  # a failing lookup must not break the flow
                log.debug("chaos: no error sample for %s: %s", fault.endpoint, e)
                sample = None
            if sample:
                _, sample_headers, body = sample
                headers = [
                    (k, v) for k, v in sample_headers
                    if _s(k).lower() not in {"content-length", "transfer-encoding", "content-encoding",
                                              "connection", "date"}
                ] + headers
        if body is None:
            body = json.dumps({"error": http.status_codes.RESPONSES.get(status, "Error"),
                               "status": status, "chaos": fault.rule_id}).encode()
            headers.insert(0, ("content-type", "application/json"))
        resp = http.Response.make(status, body, http.Headers([(_b(k), _b(v)) for k, v in headers]))
        resp.headers[SOURCE_HEADER] = "chaos"
        resp.headers[CHAOS_HEADER] = f"{fault.describe()}; rule={fault.rule_id}"
        return resp

    def _throttle(self, flow: http.HTTPFlow, bps: float, size: int) -> bool:
        """Trickle this flow's next `size` bytes to the client at `bps` bytes per second.

        mitmproxy 11 has no async hook per body chunk (a `stream` callable is synchronous),
        so the client connection's writer is wrapped: what mitmproxy writes after the response
        headers is queued and written by a task that sleeps between chunks.
        """
        try:
            server = ctx.master.addons.get("proxyserver")
            handler = server.connections.get(flow.client_conn.id)
            writer = handler.transports[handler.client].writer
        except (AttributeError, KeyError, TypeError):
            return False
        if writer is None or not isinstance(writer, asyncio.StreamWriter) or getattr(writer, "_mockstore_throttle", None):
            return False
        throttle = _Throttle(writer, bps, size)
        task = asyncio.get_running_loop().create_task(throttle.pump())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)


def _b(x: str | bytes) -> bytes:
    return x if isinstance(x, bytes) else str(x).encode("utf-8", "surrogateescape")


def _s(x: str | bytes) -> str:
    return x.decode("latin-1") if isinstance(x, bytes) else str(x)


def _mark(flow: http.HTTPFlow, fault: Fault) -> None:
    meta = flow.metadata.get("mockstore")
    if not isinstance(meta, dict):
        meta = flow.metadata["mockstore"] = {}
    meta["chaos"] = {"rule": fault.rule_id, "effect": fault.effect, "what": fault.describe()}
    note = f"mockstore chaos: {fault.describe()} (rule {fault.rule_id})"
    if note not in (flow.comment or ""):
        flow.comment = f"{flow.comment}\n{note}".strip() if flow.comment else note
    flow.marked = flow.marked or ":warning:"


class _Throttle:
    """Stands in for a StreamWriter's write/close while a slow body drains."""

    tick = 0.05

    def __init__(self, writer: asyncio.StreamWriter, bps: float, size: int):
        self.writer, self.bps, self.size = writer, bps, size
        self.buf = bytearray()
        self.first = True  # the response head goes out at once; the body trickles
        self.sent = 0
        self.closing = self.eof = False
        self.orig = {name: getattr(writer, name) for name in ("write", "close", "write_eof", "is_closing")}
        writer.write = self.write
        writer.close = self.close
        writer.write_eof = self.write_eof
        writer.is_closing = self.is_closing
        writer._mockstore_throttle = self

    def write(self, data: bytes) -> None:
        if self.first:
            self.first = False
            self.orig["write"](data)
        else:
            self.buf += data

    def close(self) -> None:
        self.closing = True

    def write_eof(self) -> None:
        self.eof = True

    def is_closing(self) -> bool:
        return self.closing or self.orig["is_closing"]()

    async def pump(self) -> None:
        per_tick = max(1, int(self.bps * self.tick))
        try:
            while not self.orig["is_closing"]():
                if self.buf:
                    chunk = bytes(self.buf[:per_tick])
                    del self.buf[:per_tick]
                    self.orig["write"](chunk)
                    self.sent += len(chunk)
                    await asyncio.sleep(len(chunk) / self.bps)
                elif self.sent >= self.size or self.closing or self.eof:
                    break
                else:
                    await asyncio.sleep(self.tick)
        finally:
            w = self.writer
            for name in ("write", "close", "write_eof", "is_closing"):
                delattr(w, name) if name in vars(w) else None
            del w._mockstore_throttle
            if self.buf and not w.is_closing():
                w.write(bytes(self.buf))
            if self.eof and not w.is_closing():
                w.write_eof()
            if self.closing:
                w.close()
