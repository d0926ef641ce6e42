"""The loops that run while the proxy runs: the model handed to the store's writer every
second and caught up in between, what other processes changed in the store (the CLI, the admin
API served by another worker: `mockstore.changes`), stubs changed in the store or their file,
and `mockstore rewind`. None of them reads the disk on the event loop."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable

from mitmproxy import ctx

from .. import options, sessions, stubwatch
from ..store import StoreError
from .state import State

log = logging.getLogger("mockstore")

MODES = options.MODES
PERSIST_INTERVAL = 1.0  # seconds between handing model changes to the writer
CATCH_UP_INTERVAL = 0.05  # seconds between counting the exchanges learned again (Learner.catch_up)


class Timers:
    def __init__(self, state: State, relay_to: Callable[[str], None]):
        self.state = state
        self.relay_to = relay_to  # another worker's dashboard watches (an address) or not ("")
        self._persister: asyncio.Task | None = None
        self._stub_watcher: asyncio.Task | None = None
        self._failing: dict[str, str] = {}  # loop -> the failure it last logged, until it works again

    @property
    def started(self) -> bool:
        return self._persister is not None

    def start(self) -> None:
        if self._persister is None:
            self._persister = asyncio.get_running_loop().create_task(self._persist_forever())
        if self._stub_watcher is None:
            self._stub_watcher = asyncio.get_running_loop().create_task(self._watch_stubs())

    def stop(self) -> None:
        for task in (self._persister, self._stub_watcher):
            if task is not None:
                task.cancel()

    def take_changes(self) -> None:
        """What another process changed in the store (the CLI, the admin API served by
        another worker), read on the writer thread at the last tick (`mockstore.changes`)."""
        state = self.state
        for concern, value in state.watch.take():
            if concern == "chaos" and value is not None and state.chaos is not None:
                state.chaos.rules.apply_stored(value)
            elif concern == "chaos-counts" and value is not None and state.chaos is not None:
                state.chaos.rules.apply_counts(value)
            elif concern == "mode" and value in MODES and value != state.mode:
                ctx.options.update(mock_mode=value)
                log.info(f"mockstore: mode {value} (changed on the store)")
            elif concern == "stream" and ctx.options.mock_worker != 0:
                self.relay_to(value or "")
            elif concern == "vb":
                log.info("mockstore: virtual data changed on the store (snapshot restore or reset)")

    async def _persist_forever(self):
        ticks = max(1, round(PERSIST_INTERVAL / CATCH_UP_INTERVAL))
        n = 0
        while True:
            await asyncio.sleep(CATCH_UP_INTERVAL)
            n += 1
            try:
                if self.state.watch is not None:
                    self.take_changes()  # what the writer read at the last persist, at once
                if n % ticks:
                    self.state.catch_up()
                else:
                    self.state.persist()
                    await self._rewind_if_asked()
            except Exception as e:  # never let the timer die
                self._failed("persisting the model", e)
            else:
                self._failing.pop("persisting the model", None)

    async def _watch_stubs(self):
        """Stubs changed in the store (the CLI, a scenario, another worker) or in the stubs
        file reach this proxy within stubwatch.POLL_INTERVAL; reading them is off the loop."""
        while True:
            await asyncio.sleep(stubwatch.POLL_INTERVAL)
            watch = self.state.stubs
            if watch is None:
                continue
            try:
                if await asyncio.to_thread(watch.poll) and watch is self.state.stubs:
                    self.state.stub_index = watch.index
            except Exception as e:  # never let the timer die
                self._failed("reading the stubs", e)
            else:
                self._failing.pop("reading the stubs", None)

    def _failed(self, what: str, e: Exception) -> None:
        """A loop's failure, logged with its traceback once, not at every turn while it lasts
        (a store that cannot be opened fails the same way every second)."""
        said = f"{type(e).__name__}: {e}"
        if self._failing.get(what) != said:
            self._failing[what] = said
            log.exception(f"mockstore: {what} failed (said once while it lasts)")

    async def _rewind_if_asked(self) -> None:
        """`mockstore rewind` bumped the store's counter: rewind (read off the event loop)."""
        state = self.state
        store, model = state.store, state.model
        if store is None or model is None:
            return

        def read() -> int:
            try:
                return sessions.read_rewinds(store.reader())
            except (StoreError, sqlite3.Error):  # the store went away: nothing asked
                return state.rewinds

        n = await asyncio.to_thread(read)
        if n != state.rewinds and store is state.store:
            state.rewinds = n
            model.reset_cursors()
            log.info("mockstore: rewound recorded sequences (mockstore rewind)")
