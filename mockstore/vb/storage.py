"""Where virtual rows live: SQLite (the default, in the store), a JSON file, or memory.

Each backend keeps rows per namespace (the shared "default" data, or one session's copy)
and per resource, in insertion order, keyed by the primary key as text. Querying
(filters, sorting, paging) happens above, on plain rows, so the three behave the same.
Callers hold the backend's lock; `transaction()` groups the writes of one request.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from mockstore.store import connect

DEFAULT = "default"
KINDS = ("sqlite", "json", "memory")


def table_name(resource: str) -> str:
    """A table name that is safe whatever the resource is called, and unique per name."""
    safe = re.sub(r"[^A-Za-z0-9_]", "_", resource)[:40]
    return f"vb_r_{safe}_{hashlib.sha1(resource.encode()).hexdigest()[:6]}"


class Storage:
    kind = "?"

    def rows(self, ns: str, resource: str) -> list[dict]: ...
    def get(self, ns: str, resource: str, key: str) -> dict | None: ...
    def keys(self, ns: str, resource: str) -> set[str]: ...
    def put(self, ns: str, resource: str, key: str, row: dict) -> None: ...
    def delete(self, ns: str, resource: str, key: str) -> bool: ...
    def drop(self, ns: str) -> None: ...
    def namespaces(self) -> list[str]: ...

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

    def _table(self, ns: str, resource: str) -> dict[str, dict]:
        return self.data.setdefault(ns, {}).setdefault(resource, {})

    def rows(self, ns, resource):
        return [dict(r) for r in self.data.get(ns, {}).get(resource, {}).values()]

    def get(self, ns, resource, key):
        row = self.data.get(ns, {}).get(resource, {}).get(key)
        return dict(row) if row is not None else None

    def keys(self, ns, resource):
        return set(self.data.get(ns, {}).get(resource, {}))

    def put(self, ns, resource, key, row):
        self._table(ns, resource)[key] = json.loads(json.dumps(row))

    def delete(self, ns, resource, key):
        return self.data.get(ns, {}).get(resource, {}).pop(key, None) is not None

    def drop(self, ns):
        self.data.pop(ns, None)

    def namespaces(self):
        return list(self.data)


class JsonStorage(MemoryStorage):
    """Memory, saved to a readable JSON file after every change (atomically, via rename)."""

    kind = "json"

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self._depth = 0
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
            self.meta = data.get("meta", {})

    @contextlib.contextmanager
    def transaction(self):
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0 and self._dirty:
                self.save()

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
        if ns in self.data:
            super().drop(ns)
            self._changed()

    def save(self) -> None:
        self._dirty = False
        doc = {"meta": self.meta, "namespaces": self.data}
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
    """One table per resource in the store file: (ns, pk, seq, data JSON)."""

    kind = "sqlite"

    def __init__(self, db_path: str | Path) -> None:
        self.db = connect(db_path)
        self.conn = self.db.conn
        self._tables: set[str] = set()
        self._depth = 0
        self._lock = threading.RLock()

    def _t(self, resource: str) -> str:
        name = table_name(resource)
        if name not in self._tables:
            self.conn.execute(
                f'create table if not exists "{name}" (ns text not null, pk text not null, '
                f"seq integer not null, data text not null, primary key (ns, pk))"
            )
            self._tables.add(name)
        return name

    def rows(self, ns, resource):
        t = self._t(resource)
        cur = self.conn.execute(f'select data from "{t}" where ns = ? order by seq', [ns])
        return [json.loads(r[0]) for r in cur]

    def get(self, ns, resource, key):
        t = self._t(resource)
        r = self.conn.execute(f'select data from "{t}" where ns = ? and pk = ?', [ns, key]).fetchone()
        return json.loads(r[0]) if r else None

    def keys(self, ns, resource):
        t = self._t(resource)
        return {r[0] for r in self.conn.execute(f'select pk from "{t}" where ns = ?', [ns])}

    def put(self, ns, resource, key, row):
        t = self._t(resource)
        self.conn.execute(
            f'insert into "{t}" (ns, pk, seq, data) values (?, ?, '
            f'(select coalesce(max(seq), 0) + 1 from "{t}"), ?) '
            f"on conflict (ns, pk) do update set data = excluded.data",
            [ns, key, json.dumps(row, ensure_ascii=False)],
        )

    def delete(self, ns, resource, key):
        t = self._t(resource)
        return self.conn.execute(f'delete from "{t}" where ns = ? and pk = ?', [ns, key]).rowcount > 0

    def _all_tables(self) -> list[str]:
        return [
            r[0]
            for r in self.conn.execute(
                "select name from sqlite_master where type = 'table' and name like 'vb\\_r\\_%' escape '\\'"
            )
        ]

    def drop(self, ns):
        for t in self._all_tables():
            self.conn.execute(f'delete from "{t}" where ns = ?', [ns])

    def namespaces(self):
        found: set[str] = set()
        for t in self._all_tables():
            found.update(r[0] for r in self.conn.execute(f'select distinct ns from "{t}"'))
        return sorted(found)

    @contextlib.contextmanager
    def transaction(self):
        with self._lock:
            outer = self._depth == 0
            if outer:
                self.conn.execute("begin immediate")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if outer:
                    self.conn.execute("rollback")
                raise
            self._depth -= 1
            if outer:
                self.conn.execute("commit")

    def close(self):
        self.conn.close()


def open_storage(kind: str, db_path: str | Path, json_path: str | Path | None = None) -> Storage:
    if kind == "sqlite":
        return SqliteStorage(db_path)
    if kind == "json":
        path = Path(json_path) if json_path else Path(db_path).with_suffix(".vb.json")
        return JsonStorage(path)
    if kind == "memory":
        return MemoryStorage()
    raise ValueError(f"mock_vb_storage: {kind!r} is not one of {', '.join(KINDS)}")
