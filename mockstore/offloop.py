"""Blocking calls off the event loop, in batches: `await OffLoop("name").run(fn, *args)`.

`asyncio.to_thread` costs two thread wake-ups a call (a worker's, then the loop's). On a
2-core machine that was about 250 us of CPU a request, more than the answer it carried: a
synthesized answer (`scripts/bench` M2) ran at 0.59x a recorded one through it, 0.88x made
on the loop itself. Here one thread takes every call queued since it last looked and hands
all their results back to the loop in one wake-up, so under load the cost is paid a batch,
not a call. Calls run one at a time, in the order they came.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Callable
from typing import Any


class OffLoop:
    def __init__(self, name: str):
        self.name = name
        self._calls: collections.deque = collections.deque()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    async def run(self, fn: Callable[..., Any], *args, **kwargs) -> Any:
        if self._closed:
            raise RuntimeError(f"{self.name}: closed")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._calls.append((loop, future, fn, args, kwargs))
        if self._thread is None:
            self._start()
        self._wake.set()
        return await future

    def close(self) -> None:
        """Stop the thread once the calls queued so far have run."""
        self._closed = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
                self._thread.start()

    def _serve(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()  # a call queued from here on sets it again
            while self._calls:
                settled: dict[asyncio.AbstractEventLoop, list] = {}
                for _ in range(len(self._calls)):  # the calls queued until now: one batch
                    loop, future, fn, args, kwargs = self._calls.popleft()
                    try:
                        outcome = (future, fn(*args, **kwargs), None)
                    except BaseException as e:  # the caller's to see
                        outcome = (future, None, e)
                    settled.setdefault(loop, []).append(outcome)
                for loop, outcomes in settled.items():
                    try:
                        loop.call_soon_threadsafe(_settle, outcomes)
                    except RuntimeError:  # that loop is closed: nobody waits any more
                        pass
            if self._closed:
                return


def _settle(outcomes: list) -> None:
    for future, result, error in outcomes:
        if future.cancelled():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
