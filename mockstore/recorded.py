"""The index of recorded exchanges: match key -> exchange ids, in recorded order.

Loading every (match key, id) of a big store into a dict at start took 4 s and 250 MB for a
million exchanges. The store already has that index (`exchanges_match`), and one lookup in it
costs a few microseconds, so this asks SQLite on first use of a key and remembers the answer
(a bounded LRU, so random keys cannot grow memory without end). Ids recorded by this process
are kept in memory as well, so they are found before the writer thread has flushed them.

It reads through its own read-only connection per thread: the event loop (exact-match fast
path) and the worker threads (`Responder.answer`) never share one.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterator

from . import recordings
from .store import StoreError, connect

CACHE_KEYS = 16_384

_EMPTY: tuple[int, ...] = ()


class RecordedIndex:
    def __init__(self, path: str | None = None, *, cache_keys: int = CACHE_KEYS):
        self.path = path or None
        self.cache_keys = cache_keys
        self._added: dict[int, list[int]] = {}  # recorded by this process
        self._stored: OrderedDict[int, tuple[int, ...]] = OrderedDict()  # the store's, LRU
        self._lock = threading.Lock()
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []  # every thread's, for close()
        self._closed = False

    # --- the mapping API the model and the responder use ------------------------------

    def get(self, key: int, default=None) -> list[int] | None:
        return self._merge(key, self._lookup(key), default)

    def peek(self, key: int) -> list[int] | None:
        """The ids known without asking the store (for the event loop, which must not wait
        on the disk); None when only the store can tell."""
        if self.path is None:
            stored = _EMPTY
        else:
            with self._lock:
                stored = self._stored.get(key)
            if stored is None:
                return None
        return self._merge(key, stored, [])

    def _merge(self, key: int, stored: tuple[int, ...], default):
        added = self._added.get(key)
        if not stored:
            return list(added) if added else default
        if not added:
            return list(stored)
        return sorted(set(stored).union(added))

    def __getitem__(self, key: int) -> list[int]:
        ids = self.get(key)
        if ids is None:
            raise KeyError(key)
        return ids

    def __contains__(self, key: object) -> bool:
        return isinstance(key, int) and self.get(key) is not None

    def __len__(self) -> int:
        """Distinct keys: the store's, and this process's that the store does not have yet.
        (For reports and tests: it counts over the store's index.)"""
        conn = self._conn()
        if conn is None:
            return len(self._added)
        try:
            return self._count() + sum(
                1 for k in list(self._added)
                if not recordings.has_key(conn, k)
            )
        except sqlite3.Error:
            return len(self._added)

    def __bool__(self) -> bool:
        return len(self) > 0

    def __iter__(self) -> Iterator[int]:
        """Every key: the store's (one pass over its index), then this process's new ones."""
        seen = set()
        conn = self._conn()
        if conn is not None:
            for key in recordings.keys(conn):
                seen.add(key)
                yield key
        for key in list(self._added):
            if key not in seen:
                yield key

    def add(self, key: int, exchange_id: int) -> None:
        """Runs on the event loop for every recorded exchange: memory only."""
        lst = self._added.get(key)
        if lst is None:
            self._added[key] = [exchange_id]
        else:
            lst.append(exchange_id)

    # --- the store ---------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection | None:
        if self.path is None:
            return None
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise sqlite3.ProgrammingError("the recorded index is closed")
            try:
                conn = self._local.conn = connect(self.path, readonly=True).conn
            except StoreError as e:  # as a query's failure: the callers know nothing then
                raise sqlite3.OperationalError(str(e)) from None
            with self._lock:
                self._conns.append(conn)
        return conn

    def close(self) -> None:
        """Close every thread's connection: an open one keeps the store's WAL from being
        folded back into the file when the store closes."""
        with self._lock:
            conns, self._conns, self._closed = self._conns, [], True
        for conn in conns:
            conn.close()

    def _lookup(self, key: int) -> tuple[int, ...]:
        if self.path is None:
            return _EMPTY
        with self._lock:
            ids = self._stored.get(key)
            if ids is not None:
                self._stored.move_to_end(key)
                return ids
        try:
            ids = recordings.ids_of_key(self._conn(), key)
        except sqlite3.Error:  # the store went away or is busy beyond the timeout: we know nothing
            return _EMPTY
        ids = ids or _EMPTY
        with self._lock:
            self._stored[key] = ids
            if len(self._stored) > self.cache_keys:
                self._stored.popitem(last=False)
        return ids

    def _count(self) -> int:
        conn = self._conn()
        if conn is None:
            return 0
        try:
            return recordings.count_keys(conn)
        except sqlite3.Error:
            return 0


def db_path(conn: sqlite3.Connection) -> str | None:
    """The file behind a connection, or None for an in-memory or temporary database."""
    for _, name, file in conn.execute("PRAGMA database_list"):
        if name == "main":
            return file or None
    return None
