"""The SQLite store: one file, WAL, a schema version, and a single writer thread.

The proxy's event loop never touches the disk. Reads on the request path come from
in-memory indexes (see `mockstore.model`); every write is a callable handed to
`Store.submit`, run on the writer thread, many of them in one transaction. A crash loses
at most the batch in flight; SQLite's WAL guarantees the file itself stays whole.

Other modules own their own tables: they register a `migrate(db)` function with
`register_tables`, and every Store runs them all when it opens.

Opening and closing are where a store is lost or kept whole. A clean stop closes every
connection the store handed out and folds the WAL back into the file, so the `.db` alone
holds everything. An open that fails says why in one line (locked, read-only, disk full, not
a mockstore store) and leaves nothing behind it created. A store that cannot be written can
still be opened read-only, for serving from it (`Store(path, readonly=None)`).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import importlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import sqlite_utils

from . import recordings

log = logging.getLogger("mockstore.store")

SCHEMA_VERSION = 2
CORE_TABLES = frozenset({"meta", "exchanges", "endpoints", "schemas", "path_templates"})
BUSY_TIMEOUT_MS = 10_000  # how long a connection waits for another process's lock
CLOSE_BUSY_TIMEOUT_MS = 2_000  # at close, for folding the WAL back in while another worker reads
REPORT_INTERVAL = 10.0  # seconds between reports of rows not stored while writes keep failing

Write = Callable[[sqlite_utils.Database], object]  # or (sql, row): see Store.insert

_table_hooks: list[Callable[[sqlite_utils.Database], None]] = []
# The modules that register tables: imported before a migration, so that a store gets every
# table whichever of them the process opening it happened to use (a store made by `mockstore
# import` is read later by commands that read drift, chaos and stubs, maybe read-only).
TABLE_OWNERS = ("mockstore.chaosrules", "mockstore.drift", "mockstore.redact", "mockstore.scenarios",
                "mockstore.stubs")


def register_tables(migrate: Callable[[sqlite_utils.Database], None]) -> Callable:
    """Register a function that creates (idempotently) the tables a module owns."""
    if migrate not in _table_hooks:
        _table_hooks.append(migrate)
    return migrate


class StoreError(Exception):
    """The store cannot be opened or used; the message says why and what to do."""


class ReadOnlyStoreError(StoreError):
    """The store cannot be written (a read-only file, folder or mount)."""


def connect(path: str | Path, *, readonly: bool = False) -> sqlite_utils.Database:
    """Open the database with the settings every connection here must have."""
    path = str(path)
    conn = None
    try:
        if readonly:
            conn = _connect_readonly(path)
        else:
            _create_private(path)
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            _use_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("select count(*) from sqlite_master").fetchone()
    except sqlite3.Error as e:
        if conn is not None:
            conn.close()
        raise store_error(path, e) from e
    return sqlite_utils.Database(conn)


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch a connection's store to WAL. On a store another process is making right now,
    the switch fails at once with "database is locked" (SQLite waits for no lock there, the
    busy timeout notwithstanding): it is tried again until that timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            busy = _errorname(e).startswith("SQLITE_BUSY") or "database is locked" in str(e)
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _create_private(path: str) -> bool:
    """A new store is its owner's alone (0600): it holds what an API answered. SQLite gives
    its -wal and -shm files the same mode. An existing file keeps the mode it has. True if
    this call made the file."""
    if path == ":memory:" or path.startswith("file:"):
        return False
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return True
    except OSError:  # it exists, or cannot be made: sqlite3 says which, below
        return False


def _connect_readonly(path: str) -> sqlite3.Connection:
    """A connection that never writes. A WAL file needs its `-shm` beside it, which a read-only
    folder or mount cannot hold: there, and only when no `-wal` holds writes the file lacks,
    the file is opened as immutable (nobody can change it there)."""
    uri = f"file:{quote(path)}"
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("select count(*) from sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError as e:
        conn.close()
        wal = Path(path + "-wal")
        if not _errorname(e).startswith("SQLITE_CANTOPEN") or _writable(path) or not Path(path).is_file():
            raise
        if wal.exists() and wal.stat().st_size > 0:
            raise ReadOnlyStoreError(
                f"the store {path} is read-only and has writes in {wal.name} not yet in the file "
                f"(it was not closed cleanly): open it once where it can be written"
            ) from None
    conn = sqlite3.connect(f"{uri}?immutable=1", uri=True, check_same_thread=False)
    conn.execute("select count(*) from sqlite_master").fetchone()
    return conn


def open_readonly(path: str | Path) -> sqlite_utils.Database:
    """A read-only connection to a mockstore store, checked to be one (for commands that read)."""
    if not Path(path).exists():
        raise StoreError(f"no store at {path}: learn some traffic first (mockstore serve)")
    db = connect(path, readonly=True)
    try:
        check_tables(db, path)
    except BaseException:
        db.conn.close()
        raise
    return db


def store_error(path: str | Path, e: sqlite3.Error) -> StoreError:
    """One line saying why SQLite refused, and what to do about it."""
    if isinstance(e, StoreError):
        return e
    name, text = _errorname(e), str(e)
    if name.startswith("SQLITE_BUSY") or "database is locked" in text:
        return StoreError(
            f"the store {path} is locked by another process (waited {BUSY_TIMEOUT_MS / 1000:g} s): "
            f"stop that process, or use another store"
        )
    if name.startswith("SQLITE_FULL") or "disk is full" in text:
        return StoreError(f"the disk holding the store {path} is full: free some space, or use another store")
    if name == "SQLITE_NOTADB" or "not a database" in text:
        return StoreError(f"cannot open the store {path}: not a mockstore store (not an SQLite database)")
    if (name.startswith(("SQLITE_READONLY", "SQLITE_PERM")) or "readonly database" in text
            or (name.startswith("SQLITE_CANTOPEN") and not _writable(path))):
        if not Path(path).exists():
            return ReadOnlyStoreError(f"cannot create the store {path}: its folder is read-only")
        return ReadOnlyStoreError(f"the store {path} is read-only ({text})")
    return StoreError(f"cannot open the store {path}: {text}")


def _errorname(e: Exception) -> str:
    return getattr(e, "sqlite_errorname", None) or ""


def _writable(path: str | Path) -> bool:
    """Whether this process may write the store: the file, and the folder its `-wal` and
    `-shm` go in. (A read-only mount says no even to root; plain permissions do not.)"""
    p = Path(path)
    if p.exists() and not os.access(p, os.W_OK):
        return False
    beside = [Path(f"{p}-wal"), Path(f"{p}-shm")]
    if all(b.exists() and os.access(b, os.W_OK) for b in beside):
        return True
    return os.access(p.parent, os.W_OK)


def remove_files(path: str | Path) -> None:
    """Remove a store and the files SQLite keeps beside it."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        name = f"{path}{suffix}"
        if os.path.lexists(name):
            try:
                os.unlink(name)
            except OSError as e:
                log.warning("store: could not remove %s: %s", name, e)


def tables(db: sqlite_utils.Database) -> set[str]:
    return {r[0] for r in db.execute("select name from sqlite_master where type = 'table'")}


def check_tables(db: sqlite_utils.Database, path: str | Path) -> None:
    """Refuse, with the reason, a file that is not a mockstore store this version can read
    without changing it."""
    found = tables(db)
    if not found:
        raise StoreError(
            f"not a mockstore store: {path} has no tables (a copy of a running store's .db "
            f"without its -wal file looks like this)"
        )
    if "meta" not in found:
        raise StoreError(f"not a mockstore store: {path} has other tables ({', '.join(sorted(found)[:5])})")
    row = db.execute("select value from meta where key = 'schema_version'").fetchone()
    version = int(row[0]) if row else 0
    if version > SCHEMA_VERSION:
        raise _newer(version)
    missing = CORE_TABLES - found
    if version < SCHEMA_VERSION or missing:
        raise StoreError(
            f"the store {path} needs upgrading (schema {version}"
            + (f", no {', '.join(sorted(missing))}" if missing else "")
            + "): open it once where it can be written"
        )


def _newer(version: int) -> StoreError:
    return StoreError(
        f"the store was written by a newer mockstore (schema {version}, "
        f"this one knows {SCHEMA_VERSION}); upgrade mockstore"
    )


def migrate(db: sqlite_utils.Database) -> bool:
    """Create or upgrade the core tables, then every registered module's tables; True if
    the file had no tables at all (a new store).

    All in one `begin immediate`: it waits for (and so finds) another process's lock now, not
    at the first write, and writes nothing when the store is up to date (a full disk opens)."""
    for name in TABLE_OWNERS:
        importlib.import_module(name)  # registers its tables (before the lock: drift's import is slow)
    with db.conn:
        db.execute("begin immediate")
        found = tables(db)
        if found and "meta" not in found:
            raise StoreError(
                f"not a mockstore store: {db_path_of(db)} has other tables ({', '.join(sorted(found)[:5])})"
            )
        version = 0
        if "meta" in found:
            row = db.execute("select value from meta where key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise _newer(version)
        if version < SCHEMA_VERSION or not CORE_TABLES <= found:
            db.execute("create table if not exists meta (key text primary key, value text)")
            _create_v1(db)
            _add_v2(db, upgrading=version == 1)
            db.execute(
                "insert or replace into meta (key, value) values ('schema_version', ?)",
                [str(SCHEMA_VERSION)],
            )
        # a recording of the same path (Responder._closest) is one seek, not a scan of the
        # endpoint's rows; an index only makes reads faster, so the schema version stays
        db.execute("create index if not exists exchanges_path on exchanges (host, method, path)")
        for hook in _table_hooks:
            hook(db)
    return not found


@contextlib.contextmanager
def migrated(path: str | Path) -> Iterator[sqlite_utils.Database]:
    """A connection to the store at `path`, its tables made or upgraded; closed after (for a
    command that reads and writes with its module's functions, without a writer thread)."""
    db = connect(path)
    try:
        migrate(db)
        yield db
    finally:
        db.conn.close()


def db_path_of(db: sqlite_utils.Database) -> str:
    for _, name, file in db.execute("PRAGMA database_list"):
        if name == "main":
            return file or ":memory:"
    return ":memory:"


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


def _add_v2(db: sqlite_utils.Database, *, upgrading: bool) -> None:
    """Model rows carry the `seq` of the write that changed them last, so each process
    reads only what the others changed (see mockstore.sync)."""
    for table in ("endpoints", "schemas", "path_templates"):
        if "seq" not in {c[1] for c in db.execute(f"pragma table_info({table})")}:
            db.execute(f"alter table {table} add column seq integer not null default 0")
    db.execute("create index if not exists endpoints_seq on endpoints (seq)")
    db.execute("create index if not exists schemas_seq on schemas (seq)")
    if upgrading:
        # What a store from before had recorded, its model had counted, as far as anyone
        # knows (the marks of mockstore.rebuild: from here on, rows after a slot's mark are
        # uncounted).
        for slot, top in recordings.last_ids(db).items():
            db.execute("insert or replace into meta (key, value) values (?, ?)", [f"counted.{slot}", str(top)])


class Store:
    """One SQLite file, its migrations, and the writer thread that owns its writes."""

    def __init__(self, path: str | Path, *, flush_interval: float = 0.2, readonly: bool | None = False):
        """`readonly`: False, the store must be writable (learning); True, opened only to
        read; None, writable if it can be, else read-only (serving from it: mock, replay).
        A read-only store runs no writer: what is handed to it is counted, not stored."""
        self.path = Path(path)
        self.flush_interval = flush_interval
        if self.path.parent and not self.path.parent.exists():
            raise StoreError(f"the folder for the store does not exist: {self.path.parent}")
        try:
            size, missing = self.path.stat().st_size, False
        except OSError:
            size, missing = 0, True
        self._had_bytes = size > 0  # a file with something in it, not one being made right now
        self.created = False  # the file made by this open (not by another process at once): removed if it fails
        self.readonly = readonly is True
        self.readonly_reason = ""  # why a store opened with readonly=None is read-only
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []  # every connection handed out: closed by close()
        self._conns_lock = threading.Lock()
        self._closed = False
        try:
            try:
                if not self.readonly:
                    self.created = _create_private(str(self.path))
                self.db = self._open()
            except ReadOnlyStoreError as e:
                if readonly is not None or missing:
                    raise
                self.readonly, self.readonly_reason = True, str(e)
                self.db = self._open()
        except BaseException:
            if self.created:
                remove_files(self.path)
            raise
        # Writes wait in one deque, in order: appending is atomic and wakes nobody, so the
        # proxy's per-exchange row costs a bare append. The queue only tells the writer to
        # commit now (flush) or to stop; otherwise it writes every `flush_interval`.
        self._pending: collections.deque[Write | tuple[str, tuple]] = collections.deque()
        self._queue: queue.Queue[threading.Event | None] = queue.Queue()
        self.unstored = 0  # writes that never reached the file (a full disk, a bad write, read-only)
        self._failing_since: float | None = None  # the first of the current run of failures
        self._reported = 0.0
        self._thread: threading.Thread | None = None
        if self.readonly:
            # nothing to write with: the write API counts and drops (no queue to grow)
            self.submit = self.insert = self._unstore  # type: ignore[method-assign]
        else:
            self._thread = threading.Thread(target=self._run, name="mockstore-writer", daemon=True)
            self._thread.start()

    def _open(self) -> sqlite_utils.Database:
        db = connect(self.path, readonly=self.readonly)
        try:
            if self.readonly:
                check_tables(db, self.path)
                for hook in _table_hooks:  # a no-op when the tables are there, as they must be
                    hook(db)
            elif migrate(db) and self._had_bytes:
                log.warning("store: %s had no tables: it starts as a new store (a .db copied without "
                            "its -wal file while mockstore ran looks like this)", self.path)
        except sqlite3.Error as e:
            db.conn.close()
            if self.readonly:
                raise StoreError(
                    f"the store {self.path} needs upgrading ({e}): open it once where it can be written"
                ) from None
            raise store_error(self.path, e) from None
        except BaseException:
            db.conn.close()
            raise
        with self._conns_lock:
            self._conns.append(db.conn)
        return db

    # --- reads -----------------------------------------------------------------------

    def reader(self) -> sqlite_utils.Database:
        """A connection for reading on the calling thread (never the writer's)."""
        db = getattr(self._local, "db", None)
        if db is None or self._closed:
            db = self._local.db = self.connection()
        return db

    def connection(self) -> sqlite_utils.Database:
        """A new connection to the store, closed with it (`close`): for anything that keeps
        one of its own, so that a clean stop leaves no connection holding the WAL open."""
        if self._closed:
            raise StoreError(f"the store {self.path} is closed")
        db = connect(self.path, readonly=self.readonly)
        with self._conns_lock:
            self._conns.append(db.conn)
        return db

    # --- writes ----------------------------------------------------------------------

    def submit(self, write: Write) -> None:
        """Queue a write (a callable given the database); it runs on the writer thread, in
        order with every other write, batched with them in one transaction. If it returns a
        callable, that is called once the transaction has committed (and not if it failed)."""
        self._pending.append(write)

    def insert(self, sql: str, params: tuple) -> None:
        """Queue one row for a plain SQL statement. The writer sends a run of rows for one
        statement to SQLite together (see `_insert_rows`)."""
        self._pending.append((sql, params))

    def _unstore(self, *_) -> None:
        self.unstored += 1

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every write queued so far is on disk. True if it got there in time."""
        if self._thread is None:
            return True
        done = threading.Event()
        self._queue.put(done)  # set by the writer once the batch it ends up in is committed
        return done.wait(timeout)

    def close(self) -> None:
        """Write what is queued, close every connection handed out, and fold the WAL back
        into the file: after a clean stop the `.db` alone holds everything. With several
        processes on one store, the last to close finds no reader left and folds it all."""
        if self._closed:
            return
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=30)
        self._closed = True
        with self._conns_lock:
            conns, self._conns = [c for c in self._conns if c is not self.db.conn], []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error as e:  # pragma: no cover - a connection busy in another thread
                log.warning("store: closing a connection to %s: %s", self.path, e)
        if not self.readonly:
            try:
                self.db.execute(f"PRAGMA busy_timeout = {CLOSE_BUSY_TIMEOUT_MS}")
                busy, _, _ = self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if busy:
                    log.info("store: %s is still read by another process, which folds the WAL in when it stops", self.path)
            except sqlite3.Error as e:
                log.warning("store: could not fold the WAL back into %s: %s", self.path, e)
        self.db.conn.close()
        if self.unstored and not self.readonly:
            log.error("store: %d rows were not stored in %s", self.unstored, self.path)

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
        """Run a batch in one transaction; on failure, retry each write alone, log, go on.
        A full disk drops the batch (counted): traffic flows on, and writing resumes once
        there is room again."""
        for attempt in range(3):
            try:
                with self.db.conn:
                    self.db.execute("begin immediate")
                    committed = _apply(self.db, batch)
                self._stored()
                _after_commit(committed)
                return
            except sqlite3.OperationalError as e:
                if _is_full(e):
                    self._not_stored(len(batch), e)
                    return
                # locked by another process (a worker): wait a little and retry
                log.warning("store write failed (%s), attempt %d of 3", e, attempt + 1)
                time.sleep(0.2 * (attempt + 1))
            except Exception as e:  # one bad write must not take the batch with it
                log.warning("store write failed: %s; retrying writes one by one", e)
                break
        stored = True
        for write in batch:
            try:
                with self.db.conn:
                    self.db.execute("begin immediate")
                    committed = _apply(self.db, [write])
                _after_commit(committed)
            except Exception as e:
                stored = False
                self._not_stored(1, e)
        if stored:
            self._stored()

    def _not_stored(self, n: int, e: Exception) -> None:
        """Count writes lost, and say so: at the first, then every REPORT_INTERVAL with the
        total, for as long as it goes on."""
        self.unstored += n
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = self._reported = now
            log.error("store: %d rows not stored in %s (%s); traffic keeps flowing, and this is counted",
                      self.unstored, self.path, e)
        elif now - self._reported >= REPORT_INTERVAL:
            self._reported = now
            log.error("store: %d rows not stored so far in %s (%s)", self.unstored, self.path, e)

    def _stored(self) -> None:
        if self._failing_since is not None:
            self._failing_since = None
            log.warning("store: writing to %s again; %d rows were not stored", self.path, self.unstored)


def _is_full(e: sqlite3.Error) -> bool:
    return _errorname(e).startswith("SQLITE_FULL") or "disk is full" in str(e)


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


def _apply(db: sqlite_utils.Database, batch: list) -> list[Callable]:
    """Run writes in order: callables as they are, runs of (sql, row) together (`_insert_rows`);
    what the callables returned to run after the commit."""
    after = []
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
            done = item(db)
            if callable(done):
                after.append(done)
            i += 1
    return after


def _after_commit(callbacks: list[Callable]) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception:
            log.exception("store: after a commit")


def readonly_for(mode: str) -> bool | None:
    """How a proxy in this mode opens its store (`Store(readonly=...)`): mock and replay only
    read it, so a store that cannot be written still serves; learn and failover write."""
    return None if mode in ("mock", "replay") else False


def probe(path: str | Path, *, readonly: bool | None = False) -> None:
    """Open and close the store, to fail with the reason before anything else starts (and
    creates files, such as a proxy's CA). A store this creates is removed again."""
    store = Store(path, readonly=readonly)
    store.close()
    if store.created:
        remove_files(path)
