"""What the pytest plugin (`mockstore.pytest_plugin`) loads into its proxy next to mockstore's
addon: a journal of the requests the proxy answered, and a control path for the test.

The control path (`/__mockstore__/...`) is answered by the proxy itself, in order with the
test's requests, so what a test reads back is exactly what was answered before it asked:

    GET  /__mockstore__/requests         the journal, oldest first (JSON)
    POST /__mockstore__/reset            empty the journal
    POST /__mockstore__/sync             read the stubs from the store now (after a change)
    POST /__mockstore__/command/NAME     run a mitmproxy command, JSON list of arguments

Never loaded by `mockstore serve` or the addon script: only the plugin's own proxy has it.
"""

from __future__ import annotations

import asyncio
import json

from mitmproxy import ctx, http

from . import flows

PREFIX = "/__mockstore__/"
JOURNAL_LIMIT = 10_000  # requests kept; the oldest go first


class Control:
    def __init__(self, mockstore):
        self.mockstore = mockstore
        self.journal: list[dict] = []

    def request(self, f: http.HTTPFlow):
        if f.request.path.startswith(PREFIX):
            f.metadata[flows.META_KEY] = {"source": "control"}  # never learned
            return self._control(f)
        return None

    async def _control(self, f: http.HTTPFlow) -> None:
        action = f.request.path[len(PREFIX):].split("?", 1)[0]
        status, body = 200, {"ok": True}
        try:
            if action == "requests":
                body = self.journal
            elif action == "reset":
                self.journal.clear()
            elif action == "sync":
                state = self.mockstore.state
                watch = state.stubs
                if watch is not None:
                    await asyncio.to_thread(watch.refresh)
                    if watch is state.stubs:
                        state.stub_index = watch.index
            elif action.startswith("command/"):
                args = json.loads(f.request.get_text() or "[]")
                result = ctx.master.commands.call(action[len("command/"):], *args)
                body = {"ok": True, "result": result if isinstance(result, (str, int, float, list, type(None))) else str(result)}
            else:
                status, body = 404, {"error": f"no control action {action!r}"}
        except Exception as e:  # the test sees why, the proxy goes on
            status, body = 400, {"error": f"{type(e).__name__}: {e}"}
        f.response = http.Response.make(status, json.dumps(body, default=str), {"Content-Type": "application/json"})

    def response(self, f: http.HTTPFlow) -> None:
        meta = f.metadata.get(flows.META_KEY) or {}
        if meta.get("source") == "control":
            return
        r = f.request
        self.journal.append({
            "method": r.method, "path": r.path.split("?", 1)[0], "url": r.pretty_url,
            "query": dict(r.query.items(multi=False)) if "?" in r.path else {},
            "headers": dict(r.headers.items(multi=False)),
            "body": r.get_text(strict=False) or "",
            "status": f.response.status_code, "source": meta.get("source", "real"),
            "stub": meta.get("stub"),
        })
        if len(self.journal) > JOURNAL_LIMIT:
            del self.journal[: len(self.journal) - JOURNAL_LIMIT]
