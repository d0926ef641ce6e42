"""Merging what one process learned into the store, and what the others learned back.

Several proxy processes can share one store (`serve --workers N`, or a CLI import while a
proxy runs). Whole rows written by each would be last-writer-wins; instead every process
hands the store only what it learned since its last persist, and the store's rows add up:

- counts (requests, statuses, latency buckets, query names, schema samples) as differences:
  the model keeps what it has handed over (`Endpoint.handed`), and hands `stats - handed`;
- shapes (schemas, path templates) as unions: merging twice what was merged once changes
  nothing, so a process hands its whole shape and the writer unites it with the row's.

The writer thread keeps what this process last saw of each row (`Sync`). In the same
transaction as its own write, it reads every row another process changed since (each row
carries the `seq` of the transaction that wrote it), and hands the difference back to the
model (`Model.apply_synced`), which adds it in on the event loop. So each process's model
is its own learning plus everyone else's, and each count in the store is counted once.

The same transaction records, per worker slot, the last exchange id the model has counted
(`counted.SLOT` in `meta`): rows after it were stored but not yet counted when the process
died, and are learned again when it opens the store (`mockstore.rebuild`).
"""

from __future__ import annotations

import json
import queue
from dataclasses import dataclass, field, replace

import sqlite_utils

from . import recordings
from .paths import PathTemplates
from .sqltext import from_column, to_column
from .schemas import SchemaModel
from .stats import EndpointStats

SchemaKey = tuple[str, int]  # (kind, status): ('request', 0) or ('response', 200)


@dataclass
class EndpointChange:
    """One endpoint's part of a persist, computed on the event loop."""

    id: str
    host: str
    method: str
    template: str
    first_seen: float
    last_seen: float
    delta: EndpointStats  # counts learned here since the last persist
    ema_ms: float | None
    schemas: dict[SchemaKey, tuple[str, int]] = field(default_factory=dict)  # key -> (schema text, samples delta)


@dataclass
class Changes:
    endpoints: list[EndpointChange]
    folds: list[tuple[str, str]]  # (old endpoint id, the id it folded into)
    retemplated: list[tuple[str, str, str]]  # (authority, old template, new template)
    templates: dict[str, dict]  # host -> its template trie's state
    counted: tuple[int, int] | None  # (worker slot, last exchange id the model has counted)


@dataclass
class Row:
    """An endpoint row as this process last saw it."""

    host: str
    method: str
    template: str
    first_seen: float
    last_seen: float
    stats: EndpointStats
    schemas: dict[SchemaKey, tuple[str, int]] = field(default_factory=dict)  # key -> (text, samples)


@dataclass
class Synced:
    """What the others added since this process last looked, for `Model.apply_synced`."""

    endpoints: list[tuple[str, Row, EndpointStats, dict[SchemaKey, tuple[str, int]]]] = field(default_factory=list)
    # rows another process folded away, as this one had seen them: they are in the target row now
    gone: list[tuple[str, Row]] = field(default_factory=list)
    templates: dict[str, dict] = field(default_factory=dict)  # host -> the merged state


def schema_text(schema: SchemaModel) -> str:
    return json.dumps(schema.to_schema())


def unite_schemas(a: str, b: str) -> str:
    m = SchemaModel()
    for text in (a, b):
        try:
            m.merge(json.loads(text))
        except (TypeError, ValueError):
            pass  # a damaged row: the other side stands
    return schema_text(m)


def unite_templates(a: dict, b: dict) -> dict:
    t = PathTemplates({"hosts": {"h": a}})
    t.merge({"hosts": {"h": b}})
    return t.to_state()["hosts"]["h"]


class Sync:
    """The writer thread's side: what this process last saw of the store's model rows."""

    def __init__(self):
        self.seq = 0  # the store's `seq` when this process last looked
        self.rows: dict[str, Row] = {}
        self.templates: dict[str, str] = {}  # host -> state text as last seen
        self.folds = 0  # the store's count of folds (rows removed) when this process last looked
        self.results: queue.SimpleQueue[Synced] = queue.SimpleQueue()

    # --- loading ------------------------------------------------------------------------

    def load(self, db: sqlite_utils.Database) -> None:
        """Read every row: what the model starts from (`Model.load`)."""
        self.seq, self.folds = current_seq(db), _counter(db, "folds")
        self.rows, self.templates = {}, {}
        for id_, host, method, template, first, last, stats in db.execute(
            "select id, host, method, template, first_seen, last_seen, stats from endpoints"
        ):
            self.rows[from_column(id_)] = Row(from_column(host), method, from_column(template), first or 0.0, last or 0.0, _stats(stats))
        for ep_id, kind, status, text, samples in db.execute(
            "select endpoint, kind, status, schema, samples from schemas"
        ):
            row = self.rows.get(from_column(ep_id))
            if row is not None:
                row.schemas[(kind, status)] = (text, samples or 0)
        for host, state in db.execute("select host, state from path_templates"):
            self.templates[from_column(host)] = state

    # --- one persist, on the writer thread, in the writer's transaction -----------------

    def write(self, db: sqlite_utils.Database, changes: Changes):
        """Merge `changes` into the store; return what to do once the transaction commits
        (keep the new view, hand what others added to the model)."""
        # The view as it will be once this commits; rows are copied before they change, so
        # a transaction that fails leaves the view as it was.
        rows, templates = dict(self.rows), dict(self.templates)
        synced, folds_seen = self._poll(db, rows, templates)
        seq = _bump_seq(db)

        if changes.folds:
            folds_seen = _bump(db, "folds")
        for old, new in changes.folds:
            gone = rows.pop(old, None)
            if gone is None:
                continue
            target = _fresh(rows, new)
            if target is None:
                h, m, t = _split_id(new, gone)
                target = rows[new] = Row(h, m, t, gone.first_seen, gone.last_seen, EndpointStats())
            target.stats.combine(gone.stats)
            for key, (text, samples) in gone.schemas.items():
                mine = target.schemas.get(key)
                target.schemas[key] = (text, samples) if mine is None else (unite_schemas(mine[0], text), mine[1] + samples)
            db.execute("delete from endpoints where id = ?", [to_column(old)])
            db.execute("delete from schemas where endpoint = ?", [to_column(old)])
            _write_row(db, new, target, seq)
        for authority, old, new in changes.retemplated:
            recordings.retemplate(db, authority, old, new)

        for ch in changes.endpoints:
            row = _fresh(rows, ch.id)
            if row is None:
                row = rows[ch.id] = Row(ch.host, ch.method, ch.template, ch.first_seen, ch.last_seen, EndpointStats())
            row.stats.combine(ch.delta)
            if ch.ema_ms is not None:
                row.stats.ema_ms = ch.ema_ms
            row.first_seen = min(x for x in (row.first_seen, ch.first_seen) if x) if ch.first_seen else row.first_seen
            row.last_seen = max(row.last_seen, ch.last_seen)
            for key, (text, samples) in ch.schemas.items():
                stored = row.schemas.get(key)
                if stored is None:
                    row.schemas[key] = (text, samples)
                else:
                    merged = text if stored[0] == text else unite_schemas(stored[0], text)
                    row.schemas[key] = (merged, stored[1] + samples)
            _write_row(db, ch.id, row, seq)

        for host, state in changes.templates.items():
            text = json.dumps(state)
            stored = templates.get(host)
            if stored is not None and stored != text:
                merged = unite_templates(json.loads(stored), state)
                text = json.dumps(merged)
                synced.templates[host] = merged
            templates[host] = text
            db.execute(
                "insert or replace into path_templates (host, state, seq) values (?, ?, ?)", [to_column(host), text, seq]
            )
        if changes.counted is not None:
            mark_counted(db, *changes.counted)

        def commit():
            self.rows, self.templates, self.seq, self.folds = rows, templates, seq, folds_seen
            if synced.endpoints or synced.gone or synced.templates:
                self.results.put(synced)

        return commit

    def poll(self, db: sqlite_utils.Database):
        """A write with nothing of this process's own: only look at what the others did."""
        if current_seq(db) == self.seq:
            return None
        return self.write(db, Changes([], [], [], {}, None))

    def _poll(self, db, rows: dict[str, Row], templates: dict[str, str]) -> tuple[Synced, int]:
        """What others wrote since this process last looked: `rows` and `templates` are
        brought up to date, and the differences returned (with the store's fold count)."""
        synced = Synced()
        folds = _counter(db, "folds")
        if current_seq(db) == self.seq:
            return synced, folds
        changed: dict[str, Row] = {}
        for id_, host, method, template, first, last, stats in db.execute(
            "select id, host, method, template, first_seen, last_seen, stats from endpoints where seq > ?", [self.seq]
        ):
            id_ = from_column(id_)
            before = rows.get(id_)
            changed[id_] = Row(from_column(host), method, from_column(template), first or 0.0, last or 0.0, _stats(stats),
                               dict(before.schemas) if before else {})
        for ep_id, kind, status, text, samples in db.execute(
            "select endpoint, kind, status, schema, samples from schemas where seq > ?", [self.seq]
        ):
            ep_id = from_column(ep_id)
            row = changed.get(ep_id)
            if row is None:  # a schema row alone changed (its endpoint row did not): rare
                if ep_id not in rows:
                    continue
                row = changed[ep_id] = replace(rows[ep_id], schemas=dict(rows[ep_id].schemas))
            row.schemas[(kind, status)] = (text, samples or 0)
        for id_, row in changed.items():
            before = rows.get(id_)
            added = row.stats.minus(before.stats) if before else row.stats.copy()
            schemas = {}
            for key, (text, samples) in row.schemas.items():
                seen = before.schemas.get(key) if before else None
                if seen != (text, samples):
                    schemas[key] = (text, samples - (seen[1] if seen else 0))
            rows[id_] = row
            synced.endpoints.append((id_, row, added, schemas))
        if folds != self.folds:  # another process folded endpoints away: their rows are gone
            present = {from_column(r[0]) for r in db.execute("select id from endpoints")}
            for id_ in [i for i in rows if i not in present]:
                synced.gone.append((id_, rows.pop(id_)))
        for host, state in db.execute("select host, state from path_templates where seq > ?", [self.seq]):
            host = from_column(host)
            if templates.get(host) != state:
                templates[host] = state
                synced.templates[host] = json.loads(state)
        return synced, folds


def counted(db, slot: int) -> int:
    """The last exchange id of this worker slot that the stored model has counted."""
    return _counter(db, f"counted.{slot}")


def mark_counted(db, slot: int, exchange_id: int) -> None:
    db.execute("insert or replace into meta (key, value) values (?, ?)", [f"counted.{slot}", str(exchange_id)])


def forget(db) -> None:
    """Every learned row gone, and every mark: the model is to be learned again."""
    for table in ("endpoints", "schemas", "path_templates"):
        db.execute(f"delete from {table}")
    db.execute("delete from meta where key like 'counted.%'")


def current_seq(db) -> int:
    """The number of model writes the store has had (each row carries the one that wrote it)."""
    return _counter(db, "seq")


def _counter(db, name: str) -> int:
    row = db.execute("select value from meta where key = ?", [name]).fetchone()
    return int(row[0]) if row else 0


def _bump(db, name: str) -> int:
    n = _counter(db, name) + 1
    db.execute("insert or replace into meta (key, value) values (?, ?)", [name, str(n)])
    return n


def _bump_seq(db) -> int:
    return _bump(db, "seq")


def _fresh(rows: dict[str, Row], ep_id: str) -> Row | None:
    """rows[ep_id], copied so that changing it leaves the committed view alone."""
    row = rows.get(ep_id)
    if row is not None:
        row = rows[ep_id] = replace(row, stats=row.stats.copy(), schemas=dict(row.schemas))
    return row


def _write_row(db, ep_id: str, row: Row, seq: int) -> None:
    key = to_column(ep_id)
    db.execute(
        "insert or replace into endpoints (id, host, method, template, count, first_seen, last_seen, stats, seq) "
        "values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [key, to_column(row.host), row.method, to_column(row.template), row.stats.count, row.first_seen,
         row.last_seen, json.dumps(row.stats.to_json()), seq],
    )
    for (kind, status), (text, samples) in row.schemas.items():
        db.execute(
            "insert or replace into schemas (endpoint, kind, status, schema, samples, seq) values (?, ?, ?, ?, ?, ?)",
            [key, kind, status, text, samples, seq],
        )


def _split_id(ep_id: str, like: Row) -> tuple[str, str, str]:
    method, rest = ep_id.split(" ", 1)
    return like.host, method, rest[len(like.host):]


def _stats(text: str | None) -> EndpointStats:
    try:
        return EndpointStats.from_json(json.loads(text or "{}"))
    except (TypeError, ValueError):
        return EndpointStats()
