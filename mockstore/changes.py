"""Change counters: how a running proxy learns that another process changed its settings.

The CLI, the admin API and every worker of `serve --workers N` share one store. Settings a
proxy keeps in memory (chaos rules and their switch, the virtual backend's data after a
snapshot restore or a reset, the mode) are written to the store by whoever changes them, and
in the same transaction a counter per concern is bumped in the `meta` table
(`changed.chaos`, `changed.vb`, `changed.mode`, `changed.stream`: see CONCERNS). Each proxy reads the counters once a second,
on its store's writer thread (never on the event loop), and reloads only the concerns whose
counter moved. A row per concern, not `PRAGMA data_version`: that one moves on every commit,
and the proxies commit learned traffic many times a second.
"""

from __future__ import annotations

import queue
from collections.abc import Callable

PREFIX = "changed."
CONCERNS = (
    "chaos",  # chaos rules and their switches (mockstore.chaosrules)
    "vb",  # the virtual backend's data: a snapshot restored, a reset (mockstore.vb)
    "mode",  # setting.mode: the mode every process on the store follows
    "stream",  # setting.stream: where worker 0's dashboard wants exchanges (mockstore.admin.relay)
)


def bump(db, concern: str) -> None:
    """Count one change of `concern`, inside the caller's transaction (`db`: a sqlite3
    connection or a sqlite_utils Database on the store file)."""
    db.execute(
        "insert into meta (key, value) values (?, '1') "
        "on conflict(key) do update set value = cast(value as integer) + 1",
        [PREFIX + concern],
    )


def read(db) -> dict[str, int]:
    rows = db.execute("select key, value from meta where key like 'changed.%'").fetchall()
    return {k[len(PREFIX):]: int(v or 0) for k, v in rows}


def get_setting(db, key: str) -> str | None:
    row = db.execute("select value from meta where key = ?", ["setting." + key]).fetchone()
    return row[0] if row else None


def put_setting(db, key: str, value: str, concern: str) -> None:
    """A shared setting (e.g. the mode) and the bump that tells the other processes."""
    db.execute("insert or replace into meta (key, value) values (?, ?)", ["setting." + key, value])
    bump(db, concern)


class Watch:
    """One process's view of the counters. `look` runs on the writer thread: for each concern
    whose counter moved it calls that concern's reader there (its store reads stay off the
    event loop) and queues (concern, what the reader returned); `take` hands them to the loop.

    A process's own changes bump the counters too. A look that was queued before one of them
    may read the store as it was before it, so `take` drops a concern's result if this process
    changed that concern since the look was queued (`generations`: a number per concern that
    the process raises at each change of its own); the bump of that change brings a new look.
    """

    def __init__(self, db, readers: dict[str, Callable], generations: dict[str, Callable[[], int]] | None = None):
        self.readers = readers
        self.generations = generations or {}
        self.seen = read(db)  # what is in the store now is what this process starts from
        self.results: queue.SimpleQueue[tuple[str, object, dict]] = queue.SimpleQueue()
        self._pending = False

    def _generations(self) -> dict[str, int]:
        return {c: g() for c, g in self.generations.items()}

    def look(self, db, asked: dict[str, int] | None = None) -> None:
        self._pending = False
        now = read(db)
        for concern, reader in self.readers.items():
            if now.get(concern, 0) != self.seen.get(concern, 0):
                self.seen[concern] = now.get(concern, 0)
                self.results.put((concern, reader(db), asked or {}))

    def schedule(self, store) -> None:
        """Have the writer thread look (once, however often the loop asks before it did)."""
        if not self._pending:
            self._pending = True
            asked = self._generations()
            store.submit(lambda db: self.look(db, asked))

    def take(self) -> list[tuple[str, object]]:
        out = []
        now = self._generations()
        while True:
            try:
                concern, value, asked = self.results.get_nowait()
            except queue.Empty:
                return out
            if asked.get(concern) == now.get(concern):
                out.append((concern, value))
