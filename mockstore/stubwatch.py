"""What a running proxy keeps of the stubs: a stubs file or folder, and the store, watched.

The stubs a proxy answers with are always the store's: a `mock_stubs` file is saved into the
store (its mocks with source `file:PATH`), so the CLI, scenarios and every worker see and
switch them like any other; the file's content is written when it differs from what the
store holds for it (not again by a second worker or a restart). A proxy answers with the mocks added by the CLI and with those of
its own stubs file, not with those another file left in the store. The store's `stubs_version` counter says when to read them
again; `poll` looks at it, and at the file's mtimes, and is meant to run off the event loop
(a thread), every POLL_INTERVAL: a CLI change reaches the proxy well within a second.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

from . import stubs
from .stubmatch import StubIndex
from .store import Store

log = logging.getLogger("mockstore.stubs")

OPTIONS: list[tuple[str, Any, Any, str]] = [
    ("mock_stubs", Optional[str], None,
     "A stubs file (YAML/JSON) or a folder of them, answered before everything else "
     "(reloaded when they change); see `mockstore stub --help`."),
]
POLL_INTERVAL = 0.25  # seconds between two looks at the store's counter and the file


def validate_options(opts: Any) -> None:
    path = getattr(opts, "mock_stubs", None)
    if path and not Path(path).exists():
        raise ValueError(f"mock_stubs: no such stubs file or folder: {path}")


class StubWatch:
    def __init__(self, store: Store, path: str | None = None):
        self.store = store
        self.path = Path(path).resolve() if path else None
        self.index: StubIndex | None = None  # None: no ACTIVE stub (the per-request check)
        self.mocks: list[stubs.Mock] = []
        self.version: int | None = None
        self._file_state: tuple | None = None
        if self.path is not None:
            self._load_file()  # a bad file is refused here, naming what is wrong
        self.refresh()

    @property
    def source(self) -> str:
        return f"file:{self.path}"

    def _load_file(self) -> None:
        state = stubs.files_state(self.path)
        mocks = stubs.load_path(self.path)
        written = stubs.save_file(self.store.reader(), mocks, self.source)
        self._file_state = state
        log.info("mockstore: %d stub mock(s) %s from %s", len(mocks), "loaded" if written else "as stored", self.path)

    def poll(self) -> bool:
        """Reload the file if it changed and the stubs if the store's changed; True if the
        index changed. Reads the disk: call it off the event loop. A broken edit of the file
        is logged once, and the previous stubs stay."""
        if self.path is not None:
            state = stubs.files_state(self.path)
            if state != self._file_state:
                try:
                    self._load_file()
                except stubs.StubError as e:
                    self._file_state = state
                    log.warning("mockstore: stubs not reloaded, keeping the previous ones: %s", e)
        if stubs.version(self.store.reader()) != self.version:
            self.refresh()
            return True
        return False

    def refresh(self) -> None:
        db = self.store.reader()
        version = stubs.version(db)
        # another proxy's (or an earlier run's) stubs file is not this proxy's to answer with
        mocks = [m for m in stubs.load(db) if not m.source.startswith("file:") or m.source == self.source]
        index = StubIndex(mocks)
        self.mocks, self.version, self.index = mocks, version, index if index else None

    def describe(self) -> list[str]:
        out = []
        for m in self.mocks:
            conditions = sum(len(r.conditions) for r in m.routes)
            out.append(f"{m.name}  {m.status}  delay={m.response_delay}ms  routes={len(m.routes)} "
                       f"conditions={conditions}  ({m.source})")
        return out
