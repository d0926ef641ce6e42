"""The response hook: a real exchange learned (`mockstore.learn`; one identical to one learned
before cheaply, on the event loop; a large one on a worker thread) and its drift noted on the
flow, a failover's 5xx answered from mockstore once learned, a chaos fault's response part
applied, and the exchange published to the dashboards watching."""

from __future__ import annotations

import asyncio
import logging
import time

from mitmproxy import http

from .. import flows, upstream
from .adminserver import AdminServer
from .answering import Answering
from .state import State

log = logging.getLogger("mockstore")

INLINE_LEARN_LIMIT = 64 * 1024  # bytes; larger bodies are learned on a worker thread


class Learning:
    name = "mockstore.learning"

    def __init__(self, state: State, answering: Answering, adminserver: AdminServer):
        self.state = state
        self.answering = answering
        self.adminserver = adminserver

    # Like the request hook, a plain function that hands back a coroutine only when there is
    # something to wait for (see Answering).

    def response(self, f: http.HTTPFlow):
        faults = self.state.faults
        fault = faults.pop(f.id, None) if faults else None
        when = self._when(f, fault)
        fingerprint = None
        if when is not None:
            # the common case: a real exchange like one learned before, queued right here
            fingerprint = flows.fingerprint(f, INLINE_LEARN_LIMIT)
            if fingerprint is not None and self._learn_again(fingerprint, *when):
                when = None
        meta = f.metadata.get(flows.META_KEY)
        failed_over = meta is not None and "source" not in meta and meta.get("forwarded") and f.response.status_code >= 500
        if when is None and fault is None and not failed_over:
            if self.adminserver.watched():
                self.adminserver.publish_exchange(f)
            return None
        return self._response(f, fault, when, fingerprint, failed_over)

    async def _response(self, f: http.HTTPFlow, fault, when, fingerprint, failed_over: bool) -> None:
        if when is not None:
            await self._learn(f, *when, fingerprint)
        if failed_over:
            try:
                await self.answering.failover.stand_in(f, upstream.SERVER_ERROR, f"upstream answered {f.response.status_code}")
            except Exception as e:
                self.answering.fail(f, e)
        if fault is not None:
            self.state.chaos.apply_response(f, fault)
        if self.adminserver.watched():
            self.adminserver.publish_exchange(f)

    def error(self, f: http.HTTPFlow) -> None:
        self.state.faults.pop(f.id, None)

    def _when(self, f: http.HTTPFlow, fault) -> tuple[float, float] | None:
        """When a real exchange started and how long the real API took to answer it; None
        for a flow not to learn from (mockstore's own answer, a replayed response)."""
        meta = f.metadata.get(flows.META_KEY)
        if self.state.learner is None or f.is_replay == "response" or (meta is not None and "source" in meta):
            return None
        started, duration_ms = flows.timing(f)
        if meta is not None and "duration_ms" in meta:  # failover forwarded it itself
            duration_ms = meta["duration_ms"]
        elif fault is not None and fault.effect == "latency":  # the delay chaos held it is ours
            duration_ms = max(0.0, duration_ms - fault.delay_s * 1000)
        return started, duration_ms

    def _learn_again(self, fingerprint, started: float, duration_ms: float) -> bool:
        """Learn an exchange identical to one learned before (see `Learner.learn_again`):
        no conversion, parsing or encoding, most of learning's cost. False if it is not one,
        or if a worker thread is learning right now."""
        state = self.state
        if not state.learn_lock.acquire(blocking=False):
            return False
        try:
            return state.learner.learn_again(fingerprint, started, duration_ms) is not None
        finally:
            state.learn_lock.release()

    async def _learn(self, f: http.HTTPFlow, started: float, duration_ms: float, fingerprint) -> None:
        """Learning's full path: an exchange not seen before (or not cheaply)."""
        state = self.state
        if flows.encoded_size(f.request) + flows.encoded_size(f.response) > flows.OFF_LOOP_ENCODED:
            ex, problem = await asyncio.to_thread(flows.to_exchange, f, state.max_body)
        else:
            ex, problem = flows.to_exchange(f, state.max_body)
        ex.started, ex.duration_ms = started, duration_ms
        if problem:
            state.warn_once(problem)
        big = len(ex.request.body) + len(ex.response.body) > INLINE_LEARN_LIMIT
        if not big and state.learn_lock.acquire(blocking=False):
            try:
                learned = state.learner.learn(ex, record_body=problem is None, fingerprint=fingerprint)
            finally:
                state.learn_lock.release()
        else:
            learned = await asyncio.to_thread(self._learn_locked, ex, problem is None, fingerprint)
        for alert in learned.alerts:
            flows.note(f, "drift", f"{alert.kind} drift, score {alert.score}: {alert.summary}")
            self.adminserver.publish({"type": "drift", "time": time.time(), **alert.to_dict()})
            log.warning(f"mockstore drift: {learned.endpoint.id}: {alert.summary} (alert {alert.id or 'new'}, seen {alert.count}x)")

    def _learn_locked(self, ex, record_body: bool, fingerprint):
        with self.state.learn_lock:
            return self.state.learner.learn(ex, record_body=record_body, fingerprint=fingerprint)
