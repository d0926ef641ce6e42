"""A circuit breaker per upstream, for failover mode.

An upstream that is down costs every request its failure first: a refused connection a
little, a hanging one the whole deadline. After `threshold` failures in a row (refused,
reset, timed out, TLS; a 5xx is an answer, and says nothing of the others' endpoints) the
breaker opens: requests to that upstream are answered from
mockstore at once, and one background task probes the upstream every `interval` seconds,
one probe at a time, each within the forwarding deadline, until it answers; then the breaker
closes and requests are forwarded again. Each transition is logged once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("mockstore")

THRESHOLD = 3  # failures in a row that open the breaker
INTERVAL = 1.0  # seconds between probes of an upstream that is down

Probe = Callable[[], Awaitable[bool]]


class Breaker:
    def __init__(self, *, threshold: int = THRESHOLD, interval: float = INTERVAL):
        self.threshold, self.interval = threshold, interval
        self._failures: dict[str, int] = {}  # upstream -> failures in a row
        self._probes: dict[str, Probe] = {}  # upstream -> how to tell it is back (the latest)
        self._open: dict[str, asyncio.Task] = {}  # upstream -> its probing task

    def is_open(self, upstream: str) -> bool:
        return upstream in self._open

    def succeeded(self, upstream: str) -> None:
        """A real answer: the count starts again; an open breaker closes."""
        if self._failures.pop(upstream, None) is not None:
            self._probes.pop(upstream, None)
        task = self._open.get(upstream)
        if task is not None:
            task.cancel()
            self._close(upstream, "it answered")

    def failed(self, upstream: str, cause: str, probe: Probe) -> None:
        """One more failure; `probe` (the latest one given is used) tells whether it is back."""
        n = self._failures.get(upstream, 0) + 1
        self._failures[upstream] = n
        self._probes[upstream] = probe
        if n >= self.threshold and upstream not in self._open:
            log.warning(
                f"mockstore: upstream {upstream} is down ({n} failures in a row, the last: {cause}): "
                f"answering from mockstore at once, probing it every {self.interval:g} s"
            )
            self._open[upstream] = asyncio.get_running_loop().create_task(self._probe(upstream))

    async def _probe(self, upstream: str) -> None:
        failed_once = False
        while True:
            await asyncio.sleep(self.interval)
            try:
                if await self._probes[upstream]():
                    break
            except asyncio.CancelledError:
                raise
            except Exception:  # a broken probe must not leave the breaker open for good
                if not failed_once:
                    log.exception(f"mockstore: probing upstream {upstream} failed")
                failed_once = True
        self._close(upstream, "a probe succeeded")

    def _close(self, upstream: str, why: str) -> None:
        if self._open.pop(upstream, None) is not None:
            self._failures.pop(upstream, None)
            self._probes.pop(upstream, None)
            log.warning(f"mockstore: upstream {upstream} is back ({why}): forwarding to it again")

    def close(self) -> None:
        for task in self._open.values():
            task.cancel()
        self._open.clear()
