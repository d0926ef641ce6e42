"""The SQLite store: one file, WAL, a schema version, and a single writer thread.

The proxy's event loop never touches the disk. Reads on the request path come from
in-memory indexes (see `mockstore.model`); every write is a callable handed to
`Store.submit`, run on the writer thread, many of them in one transaction. A crash loses
at most the batch in flight; SQLite's WAL guarantees the file itself stays whole.

Other modules own their own tables: they register a `migrate(db)` function with
`register_tables`, and every Store runs them all when it opens.
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import sqlite_utils

log = logging.getLogger("mockstore.store")

SCHEMA_VERSION = 1

Write = Callable[[sqlite_utils.Database], object]  # or (sql, row): see Store.insert

_table_hooks: list[Callable[[sqlite_utils.Database], None]] = []


def register_tables(migrate: Callable[[sqlite_utils.Database], None]) -> Callable:
    """Register a function that creates (idempotently) the tables a module owns."""
    if migrate not in _table_hooks:
        _table_hooks.append(migrate)
    return migrate


class StoreError(Exception):
    """The store cannot be opened or used; the message says why and what to do."""


def connect(path: str | Path, *, readonly: bool = False) -> sqlite_utils.Database:
    """Open the database with the settings every connection here must have."""
    path = str(path)
    try:
        if readonly:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        else:
            _create_private(path)
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 10000")
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("select count(*) from sqlite_master").fetchone()
    except sqlite3.DatabaseError as e:
        raise StoreError(f"cannot open the store {path!r}: {e}") from e
    return sqlite_utils.Database(conn)


def _create_private(path: str) -> None:
    """A new store is its owner's alone (0600): it holds what an API answered. SQLite gives
    its -wal and -shm files the same mode. An existing file keeps the mode it has."""
    if path == ":memory:" or path.startswith("file:"):
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:  # it exists, or cannot be made: sqlite3 says which, below
        pass


def migrate(db: sqlite_utils.Database) -> None:
    """Create or upgrade the core tables, then every registered module's tables."""
    with db.conn:
        db.execute("create table if not exists meta (key text primary key, value text)")
        row = db.execute("select value from meta where key = 'schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the store was written by a newer mockstore (schema {version}, "
                f"this one knows {SCHEMA_VERSION}); upgrade mockstore"
            )
        if version < 1:
            _create_v1(db)
        db.execute(
            "insert or replace into meta (key, value) values ('schema_version', ?)",
            [str(SCHEMA_VERSION)],
        )
    for hook in _table_hooks:
        with db.conn:
            hook(db)


def _create_v1(db: sqlite_utils.Database) -> None:
    db.execute(
        """create table if not exists exchanges (
            id integer primary key,
            ts real, scheme text, host text, port integer,
            method text, path text, query text,          -- query: JSON list of [name, value]
            req_headers text, req_body blob,             -- headers: JSON list of [name, value]
            status integer, resp_headers text, resp_body blob,
            duration_ms real,
            template text,                               -- path template when recorded
            match_key integer,                           -- see mockstore.model.match_key
            source text default 'proxy'                  -- proxy | import
        )"""
    )
    db.execute("create index if not exists exchanges_match on exchanges (match_key, id)")
    db.execute("create index if not exists exchanges_endpoint on exchanges (host, method, template)")
    db.execute(
        """create table if not exists endpoints (
            id text primary key,                         -- 'METHOD host/template'
            host text, method text, template text,
            count integer, first_seen real, last_seen real,
            stats text                                   -- JSON, see mockstore.stats
        )"""
    )
    db.execute(
        """create table if not exists schemas (
            endpoint text, kind text, status integer,    -- kind: request | response; status 0 for requests
            schema text, samples integer,
            primary key (endpoint, kind, status)
        )"""
    )
    db.execute("create table if not exists path_templates (host text primary key, state text)")


class Store:
    """One SQLite file, its migrations, and the writer thread that owns its writes."""

    def __init__(self, path: str | Path, *, flush_interval: float = 0.2):
        self.path = Path(path)
        self.flush_interval = flush_interval
        if self.path.parent and not self.path.parent.exists():
            raise StoreError(f"the folder for the store does not exist: {self.path.parent}")
        self.db = connect(self.path)
        migrate(self.db)
        self._local = threading.local()
        # Writes wait in one deque, in order: appending is atomic and wakes nobody, so the
        # proxy's per-exchange row costs a bare append. The queue only tells the writer to
        # commit now (flush) or to stop; otherwise it writes every `flush_interval`.
        self._pending: collections.deque[Write | tuple[str, tuple]] = collections.deque()
        self._queue: queue.Queue[threading.Event | None] = queue.Queue()
        self._failures = 0
        self._thread = threading.Thread(target=self._run, name="mockstore-writer", daemon=True)
        self._thread.start()

    # --- reads -----------------------------------------------------------------------

    def reader(self) -> sqlite_utils.Database:
        """A connection for reading on the calling thread (never the writer's)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = connect(self.path)
        return db

    # --- writes ----------------------------------------------------------------------

    def submit(self, write: Write) -> None:
        """Queue a write (a callable given the database); it runs on the writer thread, in
        order with every other write, batched with them in one transaction."""
        self._pending.append(write)

    def insert(self, sql: str, params: tuple) -> None:
        """Queue one row for a plain SQL statement. The writer sends a run of rows for one
        statement to SQLite together (see `_insert_rows`)."""
        self._pending.append((sql, params))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every write queued so far is on disk. True if it got there in time."""
        done = threading.Event()
        self._queue.put(done)  # set by the writer once the batch it ends up in is committed
        return done.wait(timeout)

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=30)
        self.db.conn.close()

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self.flush_interval)  # a flush, a stop, or time
            except queue.Empty:
                item = False
            pending = self._pending
            writes = [pending.popleft() for _ in range(len(pending))]  # all queued before now
            if writes:
                self._write(writes)
            if item is None:
                return
            if item:
                item.set()

    def _write(self, batch: list[Write]) -> None:
        """Run a batch in one transaction; on failure, retry each write alone, log, go on."""
        for attempt in range(3):
            try:
                with self.db.conn:
                    self.db.execute("begin immediate")
                    _apply(self.db, batch)
                self._failures = 0
                return
            except sqlite3.OperationalError as e:
                # locked by another process (a worker), or disk full: wait a little and retry
                log.warning("store write failed (%s), attempt %d of 3", e, attempt + 1)
                time.sleep(0.2 * (attempt + 1))
            except Exception as e:  # one bad write must not take the batch with it
                log.warning("store write failed: %s; retrying writes one by one", e)
                break
        for write in batch:
            try:
                with self.db.conn:
                    _apply(self.db, [write])
            except Exception as e:
                self._failures += 1
                if self._failures <= 5 or self._failures % 1000 == 0:
                    log.error("store write dropped (%d so far): %s", self._failures, e)


ROWS_PER_STATEMENT = 32


@functools.lru_cache(maxsize=64)
def _multi_row(sql: str, n: int) -> str | None:
    """`insert ... values (?, ?)` made to insert n rows at once, or None if it is not that."""
    head, sep, values = sql.rpartition("values")
    values = values.strip()
    if not sep or not (values.startswith("(") and values.endswith(")")) or "(" in values[1:]:
        return None
    return f"{head}values {', '.join([values] * n)}"


def _insert_rows(conn: sqlite3.Connection, sql: str, rows: list[tuple]) -> None:
    """As `executemany`, with far fewer statements: each SQLite step releases and takes back
    the GIL, a hand-off with the proxy's event loop that costs it more than the row does."""
    n = ROWS_PER_STATEMENT
    full = len(rows) - len(rows) % n
    multi = _multi_row(sql, n) if full else None
    if multi is None:
        conn.executemany(sql, rows)
        return
    for i in range(0, full, n):
        conn.execute(multi, [v for row in rows[i:i + n] for v in row])
    if full < len(rows):
        conn.executemany(sql, rows[full:])


def _apply(db: sqlite_utils.Database, batch: list) -> None:
    """Run writes in order: callables as they are, runs of (sql, row) together (`_insert_rows`)."""
    i = 0
    while i < len(batch):
        item = batch[i]
        if isinstance(item, tuple):
            sql, rows = item[0], []
            while i < len(batch) and isinstance(batch[i], tuple) and batch[i][0] == sql:
                rows.append(batch[i][1])
                i += 1
            _insert_rows(db.conn, sql, rows)
        else:
            item(db)
            i += 1
