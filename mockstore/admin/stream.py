"""The live stream behind `/admin/stream`: every exchange, drift alert and mode change, to
whoever subscribes, in batches, without the proxy ever waiting for a subscriber.

Publishing costs one truth test when nobody listens (`Hub.active`). Each subscriber has a
bounded queue: a subscriber that does not keep up loses the events that do not fit, and its
next batch says how many. A batch is written only once the previous one left the socket.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque

log = logging.getLogger("mockstore.admin")

# An exchange travels as a row of these, not as an object: half the JSON to write, per flow.
EXCHANGE_FIELDS = ("time", "method", "host", "path", "template", "status", "source", "latency_ms", "drift")

BATCH_INTERVAL = 0.1  # seconds between two batches to one subscriber
MAX_PENDING = 2000  # events queued for one subscriber; past that they are lost (and counted)


class Subscriber:
    def __init__(self, send):
        self.send = send  # (text) -> awaitable, resolved once the text left (tornado's write_message)
        self.pending: deque = deque()
        self.lost = 0
        self.writing = None

    def offer(self, event) -> None:
        if len(self.pending) >= MAX_PENDING:
            self.lost += 1
        else:
            self.pending.append(event)


class Hub:
    def __init__(self, on_watched=None):
        self.subscribers: set[Subscriber] = set()
        self._task: asyncio.Task | None = None
        self.on_watched = on_watched  # (bool): someone watches now / nobody does any more

    @property
    def active(self) -> bool:
        return bool(self.subscribers)

    def publish(self, event) -> None:
        """An exchange (a tuple of EXCHANGE_FIELDS) or another event (a dict with a "type")."""
        for s in self.subscribers:
            s.offer(event)

    def subscribe(self, send) -> Subscriber:
        s = Subscriber(send)
        first = not self.subscribers
        self.subscribers.add(s)
        if first and self.on_watched is not None:
            self.on_watched(True)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush_forever())
        return s

    def unsubscribe(self, s: Subscriber) -> None:
        if s in self.subscribers:
            self.subscribers.discard(s)
            if not self.subscribers and self.on_watched is not None:
                self.on_watched(False)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.subscribers.clear()

    async def _flush_forever(self) -> None:
        while self.subscribers:
            await asyncio.sleep(BATCH_INTERVAL)
            for s in list(self.subscribers):
                try:
                    self.flush(s)
                except Exception:  # a closed socket: that subscriber is gone, the others go on
                    self.unsubscribe(s)

    def flush(self, s: Subscriber) -> None:
        if s.writing is not None and not s.writing.done():
            return  # the last batch has not left yet: this one waits (and may overflow)
        if not s.pending and not s.lost:
            return
        rows, events = [], []
        for e in s.pending:
            (events if isinstance(e, dict) else rows).append(e)
        s.pending.clear()
        batch = {"type": "batch", "fields": EXCHANGE_FIELDS, "exchanges": rows, "events": events}
        if s.lost:
            batch["lost"], s.lost = s.lost, 0
        s.writing = s.send(json.dumps(batch, default=str))
