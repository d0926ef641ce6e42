"""Named copies of the data, kept in the store: create, list, restore, delete, save, load.

A snapshot name is a name, never a path: files are only touched by `save` and `load`,
which take an explicit file argument from the person at the command line.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
BASELINE = "vb_baseline"


class SnapshotError(ValueError):
    pass


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise SnapshotError(
            f"snapshot name {name!r} is not allowed: use letters, digits, '.', '_' or '-' "
            "(at most 64, no '..'); it is a name, not a path"
        )
    return name


def migrate(conn) -> None:
    conn.execute(
        "create table if not exists vb_snapshots (name text primary key, description text, "
        "created real, data text)"
    )
    conn.execute("create table if not exists vb_state (key text primary key, value text)")


class Snapshots:
    def __init__(self, conn):
        self.conn = conn
        migrate(conn)

    def create(self, name: str, data: dict, description: str = "") -> dict:
        check_name(name)
        self.conn.execute(
            "insert or replace into vb_snapshots (name, description, created, data) values (?, ?, ?, ?)",
            [name, description or "", time.time(), json.dumps(data, ensure_ascii=False)],
        )
        return {"name": name, "description": description or "", "rows": _count(data)}

    def get(self, name: str) -> dict:
        check_name(name)
        row = self.conn.execute(
            "select name, description, created, data from vb_snapshots where name = ?", [name]
        ).fetchone()
        if row is None:
            raise SnapshotError(f"no snapshot named {name!r}; see `mockstore snapshot list`")
        return {"name": row[0], "description": row[1], "created": row[2], "data": json.loads(row[3])}

    def list(self) -> list[dict]:
        out = []
        for name, desc, created, data in self.conn.execute(
            "select name, description, created, data from vb_snapshots order by created"
        ):
            out.append({"name": name, "description": desc, "created": created, "rows": _count(json.loads(data))})
        return out

    def delete(self, name: str) -> bool:
        check_name(name)
        return self.conn.execute("delete from vb_snapshots where name = ?", [name]).rowcount > 0

    def save(self, name: str, path: str | Path) -> Path:
        snap = self.get(name)
        p = Path(path)
        p.write_text(json.dumps({"mockstore_snapshot": 1, **snap}, indent=2, ensure_ascii=False), "utf-8")
        return p

    def load(self, path: str | Path, name: str | None = None) -> dict:
        try:
            doc = json.loads(Path(path).read_text("utf-8"))
        except (OSError, ValueError) as e:
            raise SnapshotError(f"cannot read the snapshot file {path}: {e}") from e
        if not isinstance(doc, dict) or not isinstance(doc.get("data"), dict):
            raise SnapshotError(f"{path} is not a mockstore snapshot file")
        return self.create(name or str(doc.get("name") or ""), doc["data"], str(doc.get("description") or ""))

    # --- the seeded state, which "reset" returns to ------------------------------------

    def baseline(self, fingerprint: str) -> dict | None:
        row = self.conn.execute("select value from vb_state where key = ?", [BASELINE]).fetchone()
        if not row:
            return None
        doc = json.loads(row[0])
        return doc["data"] if doc.get("fingerprint") == fingerprint else None

    def set_baseline(self, fingerprint: str, data: dict) -> None:
        self.conn.execute(
            "insert or replace into vb_state (key, value) values (?, ?)",
            [BASELINE, json.dumps({"fingerprint": fingerprint, "data": data}, ensure_ascii=False)],
        )

    def state(self, key: str) -> str | None:
        row = self.conn.execute("select value from vb_state where key = ?", [key]).fetchone()
        return row[0] if row else None

    def set_state(self, key: str, value: str) -> None:
        self.conn.execute("insert or replace into vb_state (key, value) values (?, ?)", [key, value])


def _count(data: dict) -> int:
    return sum(len(v) for v in data.values() if isinstance(v, list))
