"""The request hook: whether mockstore answers a request (the mode, `X-Mock-Enabled`, chaos,
stubs) and its answer, first that applies: a chaos fault, a stub, the virtual backend, a
recorded or synthesized response (`mockstore.answer`), or, in failover, the real API's
(`failover`). A request mockstore is to answer always gets one: a 500 saying what failed if
nothing else."""

from __future__ import annotations

import asyncio
import json
import logging
import traceback

from mitmproxy import http

from .. import flows
from ..answer import Answer
from ..exchange import Request
from ..stubmatch import SOURCE as STUB
from .failover import Failover
from .state import State

log = logging.getLogger("mockstore")

STATE = "state"  # the source of answers from the stateful virtual backend
MOCK_HEADER = b"x-mock-enabled"  # X-Mock-Enabled, as flows.take_header looks for it
ERROR = "error"  # the source of an answer mockstore failed to make
_PACKAGE = __name__.partition(".")[0]


class Answering:
    name = "mockstore.answering"

    def __init__(self, state: State):
        self.state = state
        self.failover = Failover(state, self._answer)

    # mitmproxy awaits what a hook returns if it is awaitable, so the hooks are plain
    # functions that hand back a coroutine only when there is something to wait for: an
    # exchange learned again makes none (a coroutine and its await cost ~0.5 us a hook).

    def request(self, f: http.HTTPFlow):
        state = self.state
        try:
            if f.response is not None or state.responder is None:
                return None
            override = flows.take_header(f.request, MOCK_HEADER)
            mode = state.mode
            if override is not None:
                wanted = override.strip().lower() in ("1", "true", "yes", "on")
                if wanted and mode not in ("mock", "replay"):
                    mode = "mock"
                elif not wanted:
                    mode = "learn"
            chaos = state.chaos is not None and state.chaos_on and state.chaos.rules.active()
            stub = None
            if state.stub_index is not None and not _is_upgrade(f):
                # a stub is what the user asked for: it answers in every mode, learn included
                found = state.stub_index.routes_for(f.request.method, f.request.path.split("?", 1)[0])
                stub = found[0] if found else None
            if stub is None and not chaos and (mode == "learn" or _is_upgrade(f)):
                return None
        except Exception as e:
            if state.mode in ("mock", "replay"):  # a mock never lets a request through
                self.fail(f, e)
                return None
            raise
        return self._stand_in(f, mode, chaos, stub)

    async def _stand_in(self, f: http.HTTPFlow, mode: str, chaos: bool, stub=None) -> None:
        """Whatever goes wrong here, a request mockstore is to answer gets an answer: left
        without one, mitmproxy would forward it to the real API (which mock and replay modes
        must never contact), or, in failover, answer with a dead upstream's error page."""
        try:
            if chaos:
                await self._chaos(f)
                if f.response is not None or not f.live or f.error:
                    return
            if stub is not None:
                await self._stub(f, *stub)
                return
            if mode == "learn" or _is_upgrade(f):
                return
            if mode == "failover":
                await self.failover.forward(f)
            else:
                await self._answer(f, exact_only=mode == "replay")
        except Exception as e:
            if mode == "learn" or not f.live:
                raise
            self.fail(f, e)
        else:
            if mode != "failover" and f.response is None and f.live and not f.error:
                self.fail(f, RuntimeError("no answer was made"))

    def fail(self, f: http.HTTPFlow, e: BaseException) -> None:
        """Answer a 500 that says mockstore could not answer (source `error`), logged once
        per cause (the exception's type and where it was raised)."""
        frames = traceback.extract_tb(e.__traceback__) if e.__traceback__ else []
        ours = [fr for fr in frames if f"{_PACKAGE}/" in fr.filename] or frames  # the library line that failed
        where = f" at {ours[-1].filename.rsplit('/', 1)[-1]}:{ours[-1].lineno}" if ours else ""
        cause = type(e).__name__ + where
        if cause not in self.state.warned:
            self.state.warned.add(cause)
            log.error(f"mockstore: could not answer a request ({cause}); answered 500 instead, never the real API",
                      exc_info=e)
        r = f.request
        body = json.dumps({
            "error": f"mockstore could not answer this request: {type(e).__name__}: {e}",
            "request": f"{r.method} {r.host}:{r.port}{r.path}",
        }).encode()
        f.response = http.Response.make(500, body, {"content-type": "application/json", flows.SOURCE_HEADER: ERROR})
        try:
            flows.mark(f, ERROR, str(e))
        except Exception:  # the answer is what matters
            pass

    async def _chaos(self, f: http.HTTPFlow) -> None:
        state = self.state
        r = f.request
        path = r.path.split("?", 1)[0]
        ep, _ = state.model.find_endpoint(r.method, flows.authority(r), path)
        template = ep.template if ep else None
        if template is None and state.vb is not None:  # a virtual resource, unlearned
            template = state.vb.template(Request(r.method, r.host, path))
        fault = state.chaos.decide(
            f, r.method, template,
            (lambda stat: _learned_latency(ep.stats, stat)) if ep else None,
            endpoint_id=ep.id if ep else None,
        )
        if fault is not None:
            state.faults[f.id] = fault
            await state.chaos.apply_request(f, fault)

    async def _answer(self, f: http.HTTPFlow, *, exact_only: bool = False, avoid_errors: bool = False,
                      prefix: str = "", note: str = "") -> Answer | None:
        state = self.state
        state.catch_up()
        if flows.encoded_size(f.request) > flows.OFF_LOOP_ENCODED:
            req, problem = await asyncio.to_thread(flows.to_request, f.request, state.max_body)
        else:
            req, problem = flows.to_request(f.request, state.max_body)
        if problem:
            state.warn_once(f"request body: {problem}")
        if state.vb is not None and await self._virtual(f, req, prefix, body_dropped=problem is not None):
            return None
        if state.sessions.new(req.headers):  # a client starting its run again: sequences too
            state.model.reset_cursors()
        key = state.responder.key(req)
        answer: Answer | None = None if exact_only else state.responder.exact_cached(req, key, avoid_errors=avoid_errors)
        if answer is None:
            answer = await state.off_loop.run(
                state.responder.answer, req, key, exact_only=exact_only, avoid_errors=avoid_errors
            )
        if answer.delay_ms > 0:
            await asyncio.sleep(answer.delay_ms / 1000)
        flows.respond(f, answer.response, prefix + answer.source, note)
        if answer.endpoint:
            f.metadata[flows.META_KEY]["endpoint"] = answer.endpoint
        return answer

    async def _stub(self, f: http.HTTPFlow, route, values: list[str]) -> None:
        req, problem = flows.to_request(f.request, self.state.max_body)
        if problem:
            self.state.warn_once(f"request body: {problem}")
        answer = route.answer(req, values)
        if answer.delay_ms > 0:
            await asyncio.sleep(answer.delay_ms / 1000)
        which = "default" if answer.condition is None else f"condition #{answer.condition + 1}"
        flows.respond(f, answer.response, STUB, f"{answer.mock}: {answer.route}, {which}")
        f.metadata[flows.META_KEY]["stub"] = {"mock": answer.mock, "route": answer.route, "condition": answer.condition}

    async def _virtual(self, f: http.HTTPFlow, req: Request, prefix: str, *, body_dropped: bool) -> bool:
        if body_dropped and f.request.raw_content and "content-encoding" not in f.request.headers:
            req.body = f.request.raw_content  # over mock_max_body: the vb has its own limit (413)
        response = await self.state.vb.answer(req)
        if response is None:
            return False
        flows.respond(f, response, prefix + STATE)
        return True


def _learned_latency(stats, stat: str) -> float | None:
    """A chaos rule's learned statistic ('p99', 'median', 'max', ...) in milliseconds.
    The latency histogram keeps no mean: the median stands in for it."""
    named = {"median": 50.0, "mean": 50.0, "max": 100.0, "min": 0.0}
    return stats.percentile(named[stat] if stat in named else float(stat.lstrip("p")))


def _is_upgrade(f: http.HTTPFlow) -> bool:
    return "upgrade" in f.request.headers.get("connection", "").lower()
