"""Where virtual rows live: SQLite (the default, in the store), a JSON file, or memory.

Each backend keeps rows per namespace (the shared "default" data, or one session's copy)
and per resource, in insertion order, keyed by the primary key as text. Querying
(filters, sorting, paging) happens above, on plain rows, so the three behave the same.
Callers hold the backend's lock; `transaction()` groups the writes of one request, and in
every kind a transaction that raises leaves nothing behind (SQLite rolls back; memory and
JSON replay an undo log), so a refused request or seed file never half-happens.

Beside the rows, each namespace keeps a high-water mark per resource: the largest counter
an id ever had there. Ids are minted above it, so an id, once deleted or aged out, is never
handed out again (SQLite's AUTOINCREMENT promise), whichever kind holds the rows.

Why SQLite storage has its own connection rather than the store's writer thread: the
writer batches writes and commits them later, but a virtual backend must read its own
writes at once (a POST, then a GET of what it made, answer back to back), and its checks
(is this key taken, does this reference exist) must read and write in one transaction.
So it writes on its own connection, always inside BEGIN IMMEDIATE: it takes SQLite's write
lock before it reads, waits (busy_timeout) while the writer thread or another worker
process holds it, and commits or rolls back as a whole. Its tables are all created when
it opens, in one committed transaction, so no request ever creates (and, failing,
un-creates) a table.

The one speed trick here: SQLite storage keeps the rows it read decoded in memory (a list
or a create reads every row of a resource, and decoding each row's JSON again was most of
their cost). What is kept is right while `PRAGMA data_version` stays the same: it changes
when any other connection (another worker, the CLI, the store's writer) commits, and then
everything kept is dropped. This connection's own writes update what is kept; a rollback
drops it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from mockstore.store import connect

DEFAULT = "default"
KINDS = ("sqlite", "json", "memory")
INT64 = (-(2**63), 2**63 - 1)


def table_name(resource: str) -> str:
    """A table name that is safe whatever the resource is called, and unique per name."""
    safe = re.sub(r"[^A-Za-z0-9_]", "_", resource)[:40]
    return f"vb_r_{safe}_{hashlib.sha1(resource.encode()).hexdigest()[:6]}"


class Storage:
    kind = "?"

    def rows(self, ns: str, resource: str) -> list[dict]: ...

    def view(self, ns: str, resource: str) -> list[dict]:
        """The rows themselves, not copies, for a reader that changes none of them (a list,
        a uniqueness check): copying every row of a big resource was most of their cost."""
        return self.rows(ns, resource)

    def get(self, ns: str, resource: str, key: str) -> dict | None: ...
    def keys(self, ns: str, resource: str) -> set[str]: ...
    def put(self, ns: str, resource: str, key: str, row: dict) -> None: ...
    def delete(self, ns: str, resource: str, key: str) -> bool: ...
    def drop(self, ns: str) -> None: ...
    def namespaces(self) -> list[str]: ...
    def mark(self, ns: str, resource: str) -> int: ...
    def raise_mark(self, ns: str, resource: str, n: int) -> None: ...

    def dump(self, ns: str, resources: list[str]) -> dict[str, list[dict]]:
        return {r: self.rows(ns, r) for r in resources}

    def load(self, ns: str, data: dict[str, list[dict]], pks: dict[str, str]) -> None:
        """Replace a namespace's rows with `data` (rows without a key are skipped)."""
        with self.transaction():
            self.drop(ns)
            for resource, rows in data.items():
                pk = pks.get(resource)
                if pk is None:
                    continue
                for row in rows:
                    if isinstance(row, dict) and row.get(pk) is not None:
                        self.put(ns, resource, str(row[pk]), row)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        yield

    def reload(self) -> None:
        """Read again what another process may have written (nothing kept: nothing to do)."""

    def close(self) -> None:
        pass


class MemoryStorage(Storage):
    kind = "memory"

    def __init__(self) -> None:
        self.data: dict[str, dict[str, dict[str, dict]]] = {}
        self.marks: dict[str, dict[str, int]] = {}
        self._depth = 0
        self._undo: list[tuple] | None = None  # inside a transaction: how to put things back
        self._saved: set[tuple] = set()

    def _save(self, what: tuple) -> None:
        """Before a table is made, or a namespace's marks first change, in a transaction:
        how to put it back (a copy of the marks, which are one number per resource)."""
        if self._undo is None or what in self._saved:
            return
        self._saved.add(what)
        ns = what[1]
        if what[0] == "table":
            self._undo.append((what, None))
        else:
            old = self.marks.get(ns)
            self._undo.append((what, None if old is None else dict(old)))

    def _rollback(self) -> None:
        """Undo, newest first: each entry puts back the state just before its change."""
        for what, old in reversed(self._undo or []):
            ns = what[1]
            if what[0] == "table":  # made in the transaction
                tables = self.data.get(ns, {})
                tables.pop(what[2], None)
                if not tables:
                    self.data.pop(ns, None)
            elif what[0] == "row":  # a put: the row as it was, or none
                table = self.data[ns][what[2]]
                if old is None:
                    table.pop(what[3], None)
                else:
                    table[what[3]] = old
            elif what[0] == "del":  # a delete: the row, back in its place in the order
                table = self.data[ns][what[2]]
                items = list(table.items())
                items.insert(old[1], (what[3], old[0]))
                table.clear()
                table.update(items)
            elif what[0] == "marks":
                if old is None:
                    self.marks.pop(ns, None)
                else:
                    self.marks[ns] = old
            elif what[0] == "ns":  # a dropped namespace: its tables and marks as they were
                self.data.pop(ns, None)
                self.marks.pop(ns, None)
                if old is not None:
                    if old[0]:
                        self.data[ns] = old[0]
                    if old[1]:
                        self.marks[ns] = old[1]

    @contextlib.contextmanager
    def transaction(self):
        outer = self._depth == 0
        if outer:
            self._undo, self._saved = [], set()
        self._depth += 1
        try:
            yield
        except BaseException:
            if outer:
                self._rollback()
            raise
        finally:
            self._depth -= 1
            if outer:
                self._undo, self._saved = None, set()

    def _table(self, ns: str, resource: str) -> dict[str, dict]:
        return self.data.setdefault(ns, {}).setdefault(resource, {})

    def rows(self, ns, resource):
        return [dict(r) for r in self.data.get(ns, {}).get(resource, {}).values()]

    def view(self, ns, resource):
        return list(self.data.get(ns, {}).get(resource, {}).values())

    def get(self, ns, resource, key):
        row = self.data.get(ns, {}).get(resource, {}).get(key)
        return dict(row) if row is not None else None

    def keys(self, ns, resource):
        return set(self.data.get(ns, {}).get(resource, {}))

    def put(self, ns, resource, key, row):
        table = self.data.get(ns, {}).get(resource)
        if self._undo is not None:
            if table is None:
                self._save(("table", ns, resource))
            else:
                self._undo.append((("row", ns, resource, key), table.get(key)))
        self._table(ns, resource)[key] = json.loads(json.dumps(row))

    def delete(self, ns, resource, key):
        table = self.data.get(ns, {}).get(resource, {})
        if key not in table:
            return False
        if self._undo is not None:
            self._undo.append((("del", ns, resource, key), (table[key], list(table).index(key))))
        del table[key]
        return True

    def drop(self, ns):
        if self._undo is not None:
            # everything in the namespace goes back as one; later changes need no saving
            had = ns in self.data or ns in self.marks
            self._undo.append((("ns", ns), (self.data.get(ns, {}), self.marks.get(ns, {})) if had else None))
        self.data.pop(ns, None)
        self.marks.pop(ns, None)

    def namespaces(self):
        return list(self.data)

    def mark(self, ns, resource):
        return self.marks.get(ns, {}).get(resource, 0)

    def raise_mark(self, ns, resource, n):
        if n > self.mark(ns, resource):
            self._save(("marks", ns))
            self.marks.setdefault(ns, {})[resource] = n


class JsonStorage(MemoryStorage):
    """Memory, saved to a readable JSON file after every change (atomically, via rename);
    inside a transaction, once at its end, and not at all when it rolls back."""

    kind = "json"

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self._dirty = False
        self.reload()

    def reload(self) -> None:
        self.data, self.meta = {}, {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text("utf-8"))
            except (OSError, ValueError) as e:
                raise ValueError(f"mock_vb_file: {self.path} is not a readable JSON file: {e}") from e
            if not isinstance(data, dict) or not isinstance(data.get("namespaces", {}), dict):
                raise ValueError(f"mock_vb_file: {self.path} is not a mockstore data file")
            for ns, tables in data.get("namespaces", {}).items():
                for resource, rows in (tables or {}).items():
                    self.data.setdefault(ns, {})[resource] = dict(rows or {})
            for ns, marks in (data.get("marks") or {}).items():
                if isinstance(marks, dict):
                    self.marks[ns] = {r: n for r, n in marks.items() if isinstance(n, int)}
            self.meta = data.get("meta", {})

    @contextlib.contextmanager
    def transaction(self):
        outer = self._depth == 0
        try:
            with super().transaction():
                yield
        except BaseException:
            if outer:
                self._dirty = False  # rolled back: the file already holds this state
            raise
        if outer and self._dirty:
            self.save()

    def set_meta(self, key: str, value) -> None:
        if self._undo is not None:
            self._undo.append((("meta", key), (key in self.meta, self.meta.get(key))))
        self.meta[key] = value
        self._changed()

    def _rollback(self) -> None:
        for what, (had, old) in [(w, o) for w, o in reversed(self._undo or []) if w[0] == "meta"]:
            if had:
                self.meta[what[1]] = old
            else:
                self.meta.pop(what[1], None)
        super()._rollback()

    def _changed(self):
        self._dirty = True
        if self._depth == 0:
            self.save()

    def put(self, ns, resource, key, row):
        super().put(ns, resource, key, row)
        self._changed()

    def delete(self, ns, resource, key):
        done = super().delete(ns, resource, key)
        if done:
            self._changed()
        return done

    def drop(self, ns):
        if ns in self.data or ns in self.marks:
            super().drop(ns)
            self._changed()

    def raise_mark(self, ns, resource, n):
        if n > self.mark(ns, resource):
            super().raise_mark(ns, resource, n)
            self._changed()

    def save(self) -> None:
        self._dirty = False
        doc = {"meta": self.meta, "namespaces": self.data, "marks": self.marks}
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".vb-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(doc, f, indent=2, ensure_ascii=False)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


class SqliteStorage(Storage):
    """One table per resource in the store file: (ns, pk, seq, data JSON); marks in vb_marks."""

    kind = "sqlite"

    def __init__(self, db_path: str | Path, resources: Iterable[str] = ()) -> None:
        self.db = connect(db_path)
        self.conn = self.db.conn
        self._tables: dict[str, str] = {}
        self._depth = 0
        self._lock = threading.RLock()
        self._kept: dict[tuple[str, str], dict[str, dict]] = {}  # (ns, resource) -> key -> row, decoded
        self._version: int | None = None  # data_version when _kept was last right
        self.add_resources(resources)

    def add_resources(self, resources: Iterable[str]) -> None:
        """Create the tables for these resources, in one transaction of its own that commits
        before any request can touch them (creating them inside a request's transaction would
        undo the creation whenever the request failed)."""
        new = {r: table_name(r) for r in resources if r not in self._tables}
        with self._lock:
            if self._depth:
                raise RuntimeError("vb storage: tables are created when it opens, not inside a transaction")
            self.conn.execute("begin immediate")
            try:
                self.conn.execute(
                    "create table if not exists vb_marks (ns text not null, resource text not null, "
                    "mark integer not null, primary key (ns, resource))"
                )
                for name in new.values():
                    self.conn.execute(
                        f'create table if not exists "{name}" (ns text not null, pk text not null, '
                        f"seq integer not null, data text not null, primary key (ns, pk))"
                    )
            except BaseException:
                self.conn.execute("rollback")
                raise
            self.conn.execute("commit")
            self._tables.update(new)

    def _t(self, resource: str) -> str:
        try:
            return self._tables[resource]
        except KeyError:
            raise KeyError(f"vb storage: no table for resource {resource!r} (not opened with it)") from None

    def _table(self, ns: str, resource: str) -> dict[str, dict]:
        """A resource's rows in order, decoded: kept, unless another connection wrote since."""
        t = self._t(resource)
        with self._lock:
            table = self._kept_table(ns, resource)
            if table is None:
                cur = self.conn.execute(f'select pk, data from "{t}" where ns = ? order by seq', [ns])
                table = self._kept[(ns, resource)] = {pk: json.loads(data) for pk, data in cur}
            return table

    def _kept_table(self, ns: str, resource: str) -> dict[str, dict] | None:
        """What is kept of a resource's rows, if anything, once another connection's writes
        have dropped what they made wrong."""
        version = self.conn.execute("pragma data_version").fetchone()[0]
        if version != self._version:
            self._kept.clear()
            self._version = version
        return self._kept.get((ns, resource))

    def rows(self, ns, resource):
        return [dict(r) for r in self._table(ns, resource).values()]

    def view(self, ns, resource):
        return list(self._table(ns, resource).values())

    def get(self, ns, resource, key):
        row = self._table(ns, resource).get(key)
        return dict(row) if row is not None else None

    def keys(self, ns, resource):
        return set(self._table(ns, resource))

    def put(self, ns, resource, key, row):
        t = self._t(resource)
        data = json.dumps(row, ensure_ascii=False)
        with self._lock:
            table = self._kept_table(ns, resource)  # a write reads nothing it does not keep
            self.conn.execute(
                f'insert into "{t}" (ns, pk, seq, data) values (?, ?, '
                f'(select coalesce(max(seq), 0) + 1 from "{t}"), ?) '
                f"on conflict (ns, pk) do update set data = excluded.data",
                [ns, key, data],
            )
            if table is not None:
                table[key] = json.loads(data)  # a replaced row keeps its place, as its seq does

    def delete(self, ns, resource, key):
        t = self._t(resource)
        with self._lock:
            table = self._kept_table(ns, resource)
            gone = self.conn.execute(f'delete from "{t}" where ns = ? and pk = ?', [ns, key]).rowcount > 0
            if table is not None:
                table.pop(key, None)
            return gone

    def _all_tables(self) -> list[str]:
        return [
            r[0]
            for r in self.conn.execute(
                "select name from sqlite_master where type = 'table' and name like 'vb\\_r\\_%' escape '\\'"
            )
        ]

    def drop(self, ns):
        with self._lock:
            for t in self._all_tables():
                self.conn.execute(f'delete from "{t}" where ns = ?', [ns])
            self.conn.execute("delete from vb_marks where ns = ?", [ns])
            for kept in [k for k in self._kept if k[0] == ns]:
                del self._kept[kept]

    def namespaces(self):
        found: set[str] = set()
        for t in self._all_tables():
            found.update(r[0] for r in self.conn.execute(f'select distinct ns from "{t}"'))
        return sorted(found)

    def mark(self, ns, resource):
        r = self.conn.execute("select mark from vb_marks where ns = ? and resource = ?", [ns, resource]).fetchone()
        return r[0] if r else 0

    def raise_mark(self, ns, resource, n):
        self.conn.execute(
            "insert into vb_marks (ns, resource, mark) values (?, ?, ?) "
            "on conflict (ns, resource) do update set mark = max(mark, excluded.mark)",
            [ns, resource, n],
        )

    @contextlib.contextmanager
    def transaction(self):
        with self._lock:
            outer = self._depth == 0
            if outer:
                self.conn.execute("begin immediate")  # the write lock first: no upgrade deadlock
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if outer:
                    self.conn.execute("rollback")
                    self._kept.clear()  # it had this transaction's writes
                raise
            self._depth -= 1
            if outer:
                self.conn.execute("commit")

    def reload(self) -> None:
        with self._lock:
            self._kept.clear()

    def close(self):
        self.conn.close()


def open_storage(kind: str, db_path: str | Path, json_path: str | Path | None = None,
                 resources: Iterable[str] = ()) -> Storage:
    if kind == "sqlite":
        return SqliteStorage(db_path, resources)
    if kind == "json":
        path = Path(json_path) if json_path else Path(db_path).with_suffix(".vb.json")
        return JsonStorage(path)
    if kind == "memory":
        return MemoryStorage()
    raise ValueError(f"mock_vb_storage: {kind!r} is not one of {', '.join(KINDS)}")
