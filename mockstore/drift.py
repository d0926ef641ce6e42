"""Contract drift: say at once, and precisely, when the real API stops answering as it used to.

Each real response is compared with the schema learned for its (endpoint, status) *before*
the model learns from it. The comparison is on the *shape* (field names and JSON types, not
values): the learned schema is projected onto the shape of the response, keeping only what
the response is obliged to have (fields that were always present, types that were ever seen),
and deepdiff reports what differs. Optional and sometimes-null fields are projected away when
absent or null, so they never cry wolf.

The common case, no drift, must be cheap: a fingerprint of every shape that passed is kept per
(endpoint, kind, status), and deepdiff only runs for a shape not seen before.

A status is judged by what it says (see `is_behaviour`): a client error is how the API treats a
request, learned like any answer; a gone endpoint or a server error is a changed contract.

The same drift (same endpoint, same finding set) is one alert whose count grows, in every
process sharing the store. Alerts live in the `drift_alerts` table; the caller's thread never
writes to disk or reads it after the start (see `mockstore.store`, `DriftWatch`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from deepdiff import DeepDiff

from mockstore.store import Store, register_tables

log = logging.getLogger("mockstore.drift")

OPTIONS: list[tuple[str, type, Any, str]] = [
    (
        "mock_drift",
        bool,
        True,
        "Watch real responses and requests for contract drift against the learned schemas "
        "(real traffic only: learn and failover modes).",
    ),
    (
        "mock_drift_warmup",
        int,
        5,
        "Samples an endpoint (and status) needs before drift is reported for it.",
    ),
]

SEVERITY_WEIGHT = {"critical": 50, "high": 30, "medium": 15, "low": 5}
SEVERITY_ORDER = ["critical", "high", "medium", "low"]
MAX_DEPTH = 64
MAX_SAMPLE_BYTES = 64 * 1024
MAX_SHAPES = 256  # accepted shapes remembered per (endpoint, kind, status)
# deepdiff 8 reports an object sharing under a third of its keys with the expected one as one
# changed value ("$ type object->object"): every field missing or new is what drift must say.
_DIFF_EVERY_KEY = (
    {"threshold_to_diff_deeper": 0} if "threshold_to_diff_deeper" in inspect.signature(DeepDiff).parameters else {}
)


class DriftError(Exception):
    """A drift operation cannot be done; the message says why."""


def validate_options(opts: Any) -> None:
    """Raise ValueError with an actionable message for a bad drift option."""
    warmup = getattr(opts, "mock_drift_warmup", 5)
    if not isinstance(warmup, int) or warmup < 1:
        raise ValueError(f"mock_drift_warmup must be a whole number of samples >= 1, got {warmup!r}")


@dataclass
class Alert:
    id: int | None  # given by the store when the alert is first written
    endpoint: str
    kind: str  # response | request
    status: int  # 0 for requests
    score: int
    summary: str
    findings: list[dict]
    sample: Any
    first_seen: float
    last_seen: float
    count: int = 1
    resolved: bool = False
    resolution: str | None = None  # accepted | kept
    merged: bool = False  # accepted and merged into the baseline by on_accept
    key: str = field(default="", repr=False)

    def to_dict(self, *, sample: bool = False) -> dict:
        d = asdict(self)
        d.pop("key")
        if not sample:
            d.pop("sample")
        return d


# --- shapes ----------------------------------------------------------------------------


def shape(value: Any, depth: int = 0) -> Any:
    """The JSON types of a value, keeping structure: {"id": "integer", "tags": ["string"]}.

    Arrays keep one entry per distinct item shape, so a 10,000-item list of users has the
    shape of one user.
    """
    if depth > MAX_DEPTH:
        return "any"
    if isinstance(value, dict):
        return {str(k): shape(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        seen: dict[str, Any] = {}
        for item in value:
            s = shape(item, depth + 1)
            seen.setdefault(_canonical(s), s)
        return list(seen.values())
    return _scalar_type(value)


def _scalar_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


def _canonical(s: Any) -> str:
    return json.dumps(s, sort_keys=True, separators=(",", ":"))


def fingerprint(s: Any) -> str:
    return hashlib.blake2b(_canonical(s).encode(), digest_size=12).hexdigest()


def _type_of(s: Any) -> str:
    if isinstance(s, dict):
        return "object"
    if isinstance(s, list):
        return "array"
    return str(s)


def _example(s: Any) -> Any:
    """A small value with the given shape: what an oversized sample is stored as."""
    if isinstance(s, dict):
        return {k: _example(v) for k, v in s.items()}
    if isinstance(s, list):
        return [_example(v) for v in s]
    return {"string": "", "integer": 0, "number": 0.5, "boolean": False, "null": None}.get(s)


# --- schemas (genson's output: type, properties, required, items, anyOf) ----------------


def _variants(schema: dict) -> list[dict]:
    out = []
    for key in ("anyOf", "oneOf"):
        for sub in schema.get(key) or []:
            if isinstance(sub, dict):
                out.extend(_variants(sub))
    if "type" in schema or "properties" in schema or "items" in schema:
        out.append(schema)
    return out


def _types(schema: dict) -> set[str] | None:
    """The JSON types a schema allows; None when it does not constrain the type."""
    types: set[str] = set()
    for v in _variants(schema):
        t = v.get("type")
        if t is None:
            if "properties" in v:
                types.add("object")
            elif "items" in v:
                types.add("array")
            else:
                return None
        elif isinstance(t, list):
            types.update(str(x) for x in t)
        else:
            types.add(str(t))
    return types or None


def _object_parts(schema: dict) -> tuple[dict[str, dict], set[str]]:
    props: dict[str, dict] = {}
    required: set[str] | None = None
    for v in _variants(schema):
        t = v.get("type")
        if "properties" in v or t == "object" or (isinstance(t, list) and "object" in t):
            for k, sub in (v.get("properties") or {}).items():
                props.setdefault(k, sub if isinstance(sub, dict) else {})
            req = set(v.get("required") or [])
            required = req if required is None else required & req
    return props, required or set()


def _items(schema: dict) -> dict | None:
    for v in _variants(schema):
        items = v.get("items")
        if isinstance(items, dict):
            return items
        if isinstance(items, list) and items and isinstance(items[0], dict):
            return items[0]
    return None


def _expected_shape(schema: dict, depth: int = 0) -> Any:
    """The shape a schema promises, for reporting what a missing field used to be."""
    types = _types(schema) or {"any"}
    if depth < MAX_DEPTH and types == {"object"}:
        props, required = _object_parts(schema)
        return {
            k: _expected_shape(sub, depth + 1) for k, sub in props.items()
            if k in required and "null" not in (_types(sub) or {"null"})
        }
    if depth < MAX_DEPTH and types == {"array"}:
        items = _items(schema)
        return [_expected_shape(items, depth + 1)] if items else []
    return "|".join(sorted(types))


def project(schema: dict, actual: Any, depth: int = 0) -> Any:
    """The schema seen through the actual shape: what this response should have looked like.

    Where the actual shape is allowed, it is returned unchanged; fields that were optional
    and are absent are left out; fields that were always present and are absent come back
    (so deepdiff reports them removed); a type never seen comes back as the allowed types.
    """
    types = _types(schema)
    if types is None or depth > MAX_DEPTH:
        return actual
    atype = _type_of(actual)
    if atype == "integer" and "number" in types:
        return actual
    if atype not in types:
        if types == {"object"} or types == {"array"}:
            return _expected_shape(schema, depth)
        return "|".join(sorted(types))
    if atype == "object":
        props, required = _object_parts(schema)
        out = {}
        for k, sub in props.items():
            if k in actual:
                out[k] = project(sub, actual[k], depth + 1)
            elif k in required and "null" not in (_types(sub) or {"null"}):
                out[k] = _expected_shape(sub, depth + 1)  # always there, never null: must be
        return out
    if atype == "array":
        items = _items(schema)
        if items is None:
            return actual
        return [project(items, a, depth + 1) for a in actual]
    return actual


def _json_path(parts: list) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += "[]"
        else:
            out += f".{p}" if out else str(p)
    return out or "$"


def compare(schema: dict, value: Any) -> list[dict]:
    """Findings for one JSON value against one learned schema (empty when it fits)."""
    actual = shape(value)
    return _compare_shapes(schema, actual)


def _compare_shapes(schema: dict, actual: Any) -> list[dict]:
    expected = project(schema, actual)
    if expected == actual:
        return []
    diff = DeepDiff(expected, actual, view="tree", ignore_order=False, verbose_level=2, **_DIFF_EVERY_KEY)
    findings: dict[tuple, dict] = {}

    def add(path: str, kind: str, severity: str, exp: Any, act: Any) -> None:
        f = {"path": path, "kind": kind, "severity": severity, "expected": exp, "actual": act}
        findings.setdefault((path, kind, str(exp), str(act)), f)

    for level in diff.get("dictionary_item_removed", []):
        add(_json_path(level.path(output_format="list")), "missing", "critical",
            _type_of(level.t1), None)
    for level in diff.get("dictionary_item_added", []):
        add(_json_path(level.path(output_format="list")), "new", "low", None, _type_of(level.t2))
    for key in ("values_changed", "type_changes"):
        for level in diff.get(key, []):
            exp, act = _type_of(level.t1), _type_of(level.t2)
            severity = "low" if exp == "null" else "high"  # always null before: now we know more
            add(_json_path(level.path(output_format="list")), "type", severity, exp, act)
    for key in ("iterable_item_added", "iterable_item_removed"):  # not expected: lists align
        for level in diff.get(key, []):
            add(_json_path(level.path(output_format="list")), "shape", "high",
                _type_of(level.t1), _type_of(level.t2))
    return sorted(findings.values(), key=lambda f: (SEVERITY_ORDER.index(f["severity"]), f["path"]))


def describe(f: dict) -> str:
    kind, path = f["kind"], f["path"]
    if kind == "missing":
        return f"{path} missing"
    if kind == "new":
        return f"{path} new"
    if kind == "type":
        return f"{path} type {f['expected']}->{f['actual']}"
    if kind == "status":
        return f"status {f['actual']} never seen"
    if kind == "content_type":
        return f"content type {f['expected']}->{f['actual']}"
    return f"{path} {kind}"


def score(findings: list[dict]) -> int:
    return min(100, sum(SEVERITY_WEIGHT.get(f["severity"], 0) for f in findings))


def summarize(findings: list[dict], limit: int = 4) -> str:
    counts = Counter(f["severity"] for f in findings)
    head = ", ".join(f"{counts[s]} {s}" for s in SEVERITY_ORDER if counts[s])
    parts = [describe(f) for f in findings[:limit]]
    if len(findings) > limit:
        parts.append(f"+{len(findings) - limit} more")
    return f"{head}: {', '.join(parts)}"


# --- the watch -------------------------------------------------------------------------


# A status answers either the request or the endpoint. A bad or unauthorised request, a
# resource that does not exist or is in conflict, a client going too fast (4xx) or a
# conditional request (304): the API behaving as it does, learned like any other answer.
# A method or an endpoint that is gone (405, 410), a server error (5xx), a success or a
# redirect of another kind than before: the contract changed.
CONTRACT_CLIENT_ERRORS = frozenset({405, 410})
ENVELOPE = ("status", "content_type")


def is_behaviour(status: int) -> bool:
    """A status a learned endpoint may answer for the first time without drifting."""
    return status == 304 or (400 <= status < 500 and status not in CONTRACT_CLIENT_ERRORS)


def alert_key(endpoint: str, kind: str, status: int, findings: list[dict]) -> str:
    """What makes two sightings the same drift, in every process: the endpoint, the kind,
    the status and the finding set. A status or content type drift is keyed by what came,
    not by the list it was compared with (which grows as the endpoint learns behaviour)."""
    parts = [
        [f["path"], f["kind"], str(f["actual"])] if f["kind"] in ENVELOPE
        else [f["path"], f["kind"], str(f["expected"]), str(f["actual"])]
        for f in findings
    ]
    return hashlib.sha1(_canonical([endpoint, kind, status, parts]).encode()).hexdigest()


_COLUMNS = ("id", "key", "endpoint", "kind", "status", "score", "summary", "findings", "sample",
            "first_seen", "last_seen", "count", "resolved", "resolution", "merged", "version")
_CREATE = """create table drift_alerts (
    id integer primary key autoincrement,   -- assigned by SQLite: several workers share the table
    key text unique not null,               -- see alert_key: one row per drift, whoever saw it
    endpoint text, kind text, status integer,
    score integer, summary text,
    findings text, sample text,             -- JSON
    first_seen real, last_seen real, count integer,
    resolved integer default 0, resolution text, merged integer default 0,
    version integer default 0               -- the order of changes: a process reads only newer rows
)"""


@register_tables
def _migrate(db) -> None:
    # `store.migrate` runs every module's tables in its own `begin immediate` (workers may
    # open the store at once)
    row = db.execute("select sql from sqlite_master where type = 'table' and name = 'drift_alerts'").fetchone()
    if row is None:
        db.execute(_CREATE)
    elif "autoincrement" not in row[0].lower():  # before ids came from SQLite: rebuild, keep the rows
        db.execute("alter table drift_alerts rename to drift_alerts_old")
        db.execute(_CREATE)
        kept = ", ".join(c for c in _COLUMNS if c != "version")
        db.execute(f"insert into drift_alerts ({kept}, version) select {kept}, id from drift_alerts_old "
                   "where key is not null")
        db.execute("drop table drift_alerts_old")
    db.execute("create index if not exists drift_alerts_endpoint on drift_alerts (endpoint)")
    db.execute("create index if not exists drift_alerts_version on drift_alerts (version)")


_NEXT_VERSION = "(select coalesce(max(version), 0) + 1 from drift_alerts)"
# A sighting adds to the one row of its drift: the count sums over every process. `reopen`
# (a drift seen again after its old shape was kept) reopens only what is still kept. Update
# first, insert if there was no row (the writer's transaction is immediate: no one in
# between): an upsert would spend an AUTOINCREMENT id on every update, leaving gaps.
_ADD = f"""update drift_alerts set
        count = count + ?1, first_seen = min(first_seen, ?2), last_seen = max(last_seen, ?3),
        resolved = case when ?4 and resolution = 'kept' then 0 else resolved end,
        resolution = case when ?4 and resolution = 'kept' then null else resolution end,
        sample = case when ?4 and resolution = 'kept' then ?5 else sample end,
        version = {_NEXT_VERSION}
    where key = ?6"""
_INSERT = f"""insert into drift_alerts (key, endpoint, kind, status, score, summary, findings, sample,
        first_seen, last_seen, count, resolved, resolution, merged, version)
    values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, null, 0, {_NEXT_VERSION})"""
_RESOLVE = f"update drift_alerts set resolved = 1, resolution = ?, merged = ?, version = {_NEXT_VERSION} where id = ?"
_MERGED = f"update drift_alerts set merged = 1, version = {_NEXT_VERSION} where id = ? and resolution = 'accepted'"


@dataclass
class _Sightings:
    """Sightings of one drift in this process not yet added to its row."""

    count: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0
    reopen: bool = False


class DriftWatch:
    """Compares real traffic with the learned baseline and keeps the resulting alerts.

    Several processes (`mockstore serve --workers N`, the command line) share the alerts
    table: each adds what it saw to the row of its drift (by `alert_key`), SQLite numbers
    the rows, and each reads back, on the store's writer thread, the rows changed since it
    last looked (`sync`). So counts and ids are those one process seeing it all would have.
    An alert learns its id when its first sighting is written (a fraction of a second)."""

    def __init__(self, store: Store, *, warmup: int = 5):
        if warmup < 1:
            raise ValueError(f"warmup must be >= 1, got {warmup}")
        self.store = store
        self.warmup = warmup
        self.on_accept: Callable[[Alert], None] | None = None
        self._alerts: dict[int, Alert] = {}  # by id, once the store numbered it
        self._by_key: dict[str, Alert] = {}
        self._ok: dict[tuple, set[str]] = {}
        self._drift_cache: dict[tuple, list[dict]] = {}
        # (endpoint, "status" | "content_type", value) -> keys of the alerts that hold it out
        # of the baseline: open or kept ones. Such a status stays drift however often it comes.
        self._held: dict[tuple[str, str, str], set[str]] = {}
        self._applied: set[str] = set()  # accepted alerts this process took into its baseline
        self._lock = threading.RLock()
        self._sightings: dict[str, _Sightings] = {}  # not written yet
        self._changes: list[tuple[str, str, tuple]] = []  # (key, sql, params) not written yet
        self._version = 0
        self._write_pending = False
        self._load()

    def _load(self) -> None:
        rows = self.store.reader().execute(f"select {', '.join(_COLUMNS)} from drift_alerts order by id")
        for row in rows.fetchall():
            alert = self._apply_row(dict(zip(_COLUMNS, row)))
            if alert.resolved and alert.resolution == "accepted" and alert.merged:
                self._applied.add(alert.key)  # in the learned model this store holds

    def _apply_row(self, r: dict) -> Alert:
        """Take in a row as the store has it, keeping what this process has not written yet."""
        alert = self._by_key.get(r["key"])
        if alert is None:
            alert = Alert(
                id=r["id"], endpoint=r["endpoint"], kind=r["kind"], status=r["status"] or 0,
                score=r["score"] or 0, summary=r["summary"] or "",
                findings=_loads(r["findings"], []), sample=_loads(r["sample"], None),
                first_seen=r["first_seen"] or 0.0, last_seen=r["last_seen"] or 0.0,
                count=r["count"] or 0, resolved=bool(r["resolved"]), resolution=r["resolution"],
                merged=bool(r["merged"]), key=r["key"],
            )
            self._by_key[alert.key] = alert
        else:
            if alert.id is not None and alert.id != r["id"]:
                self._alerts.pop(alert.id, None)
            mine = self._sightings.get(alert.key)
            alert.id = r["id"]
            alert.count = (r["count"] or 0) + (mine.count if mine else 0)
            alert.first_seen = min(t for t in (alert.first_seen, r["first_seen"], float("inf")) if t)
            alert.last_seen = max(alert.last_seen, r["last_seen"] or 0.0)
            changing = (mine is not None and mine.reopen) or any(k == alert.key for k, _, _ in self._changes)
            if not changing:
                if (alert.resolved, alert.resolution) != (bool(r["resolved"]), r["resolution"]):
                    alert.sample = _loads(r["sample"], alert.sample)  # reopened elsewhere: its sample
                alert.resolved, alert.resolution = bool(r["resolved"]), r["resolution"]
                alert.merged = bool(r["merged"])
        self._alerts[alert.id] = alert
        self._version = max(self._version, r["version"] or 0)
        self._index(alert)
        return alert

    def _index(self, alert: Alert) -> None:
        holds = alert.kind == "response" and not (alert.resolved and alert.resolution == "accepted")
        for f in alert.findings:
            if f["kind"] in ENVELOPE:
                where = (alert.endpoint, f["kind"], str(f["actual"]))
                if holds:
                    self._held.setdefault(where, set()).add(alert.key)
                elif where in self._held:
                    self._held[where].discard(alert.key)
                    if not self._held[where]:
                        del self._held[where]

    def _holds(self, endpoint_id: str, kind: str, value) -> bool:
        """Whether an open (or kept) alert holds this status or content type out of the baseline."""
        return bool(self._held) and (endpoint_id, kind, str(value)) in self._held

    # --- checks ---------------------------------------------------------------------

    def check_response(self, endpoint, status: int, content_type: str, value: Any) -> Alert | None:
        """Check one real response before the model learns it; the alert, if it drifted."""
        if endpoint is None:
            return None
        try:
            findings = self._envelope_findings(endpoint, status, content_type)
            samples = endpoint.response_samples(status) if value is not None else 0
            if samples >= self.warmup:
                findings += self._shape_findings(
                    endpoint.id, "response", status, lambda: endpoint.response_schema(status), value, samples
                )
        except (RecursionError, TypeError, ValueError) as e:  # a body we cannot reason about
            log.debug("drift check skipped for %s: %s", getattr(endpoint, "id", endpoint), e)
            return None
        endpoint.stats.drift_checked += 1
        if not findings:
            return None
        endpoint.stats.drift_drifted += 1
        return self._record(endpoint.id, "response", status, findings, value)

    def check_request(self, endpoint, content_type: str, value: Any) -> Alert | None:
        """Check one request body against the learned request schema."""
        if endpoint is None or value is None:
            return None
        try:
            samples = endpoint.request_samples()
            if samples < self.warmup:
                return None
            findings = self._shape_findings(endpoint.id, "request", 0, endpoint.request_schema, value, samples)
        except (RecursionError, TypeError, ValueError) as e:
            log.debug("request drift check skipped for %s: %s", getattr(endpoint, "id", endpoint), e)
            return None
        return self._record(endpoint.id, "request", 0, findings, value) if findings else None

    def _envelope_findings(self, endpoint, status: int, content_type: str) -> list[dict]:
        """The status and content type against the baseline's: those the endpoint answered,
        less those an open alert holds out (the model counts every status it sees, so the
        second 410 of an API gone 410 would otherwise pass as known)."""
        if endpoint.count < self.warmup:
            return []
        eid, findings = endpoint.id, []
        statuses = endpoint.statuses or {}
        new_behaviour = is_behaviour(status) and status not in statuses
        held = self._holds(eid, "status", status)
        if not is_behaviour(status) and (held or status not in statuses):
            baseline = [s for s in sorted(statuses) if s != status and not self._holds(eid, "status", s)]
            if baseline or held:
                findings.append({
                    "path": "status", "kind": "status", "severity": "high",
                    "expected": ", ".join(str(s) for s in baseline), "actual": status,
                })
        ct = (content_type or "").split(";")[0].strip().lower()
        known = endpoint.content_types or {}
        # a client error new to the endpoint comes with its own content type (an HTML 404 page)
        if ct and known and not new_behaviour and (ct not in known or self._holds(eid, "content_type", ct)):
            expected = [c for c in sorted(known) if c != ct and not self._holds(eid, "content_type", c)]
            if expected or ct in known:
                findings.append({
                    "path": "content-type", "kind": "content_type", "severity": "high",
                    "expected": ", ".join(expected), "actual": ct,
                })
        return findings

    def _shape_findings(self, eid: str, kind: str, status: int, get_schema: Callable[[], dict | None],
                        value: Any, samples: int) -> list[dict]:
        """The schema is only asked for (it may cost a genson export) when the shape is new."""
        s = shape(value)
        fp = fingerprint(s)
        okkey = (eid, kind, status)
        ok = self._ok.setdefault(okkey, set())
        if fp in ok:  # the common path: a shape that passed before still passes (schemas only widen)
            return []
        cachekey = (eid, kind, status, fp, samples)
        cached = self._drift_cache.get(cachekey)
        if cached is not None:
            return list(cached)
        schema = get_schema()
        findings = _compare_shapes(schema, s) if schema else []
        if findings:
            if len(self._drift_cache) > 4096:
                self._drift_cache.clear()
            self._drift_cache[cachekey] = findings
        else:
            if len(ok) >= MAX_SHAPES:
                ok.clear()
            ok.add(fp)
        return list(findings)

    def _record(self, eid: str, kind: str, status: int, findings: list[dict], value: Any) -> Alert:
        findings = sorted(findings, key=lambda f: (SEVERITY_ORDER.index(f["severity"]), f["path"]))
        key = alert_key(eid, kind, status, findings)
        now = time.time()
        with self._lock:
            alert = self._by_key.get(key)
            mine = self._sightings.get(key)
            if mine is None:
                mine = self._sightings[key] = _Sightings(first_seen=now)
            if alert is None:
                alert = Alert(
                    id=None, endpoint=eid, kind=kind, status=status, score=score(findings),
                    summary=summarize(findings), findings=findings, sample=_bounded_sample(value),
                    first_seen=now, last_seen=now, count=0, key=key,
                )
                self._by_key[key] = alert
                self._index(alert)
            elif alert.resolved and alert.resolution == "kept":  # the API still drifts from the kept shape
                alert.resolved, alert.resolution, alert.merged = False, None, False
                alert.sample = _bounded_sample(value)
                mine.reopen = True
                self._index(alert)
            alert.count += 1
            alert.last_seen = mine.last_seen = now
            mine.count += 1
        self._schedule()
        return alert

    # --- alerts ---------------------------------------------------------------------

    def alerts(self, *, unresolved: bool = False, endpoint: str | None = None) -> list[Alert]:
        """The alerts, in the order the store numbered them (those not written yet last)."""
        with self._lock:
            found = list(self._by_key.values())
        found.sort(key=lambda a: (a.id is None, a.id or 0, a.first_seen))
        return [
            a for a in found
            if not (unresolved and a.resolved) and (endpoint is None or a.endpoint == endpoint)
        ]

    def get(self, alert_id: int) -> Alert:
        try:
            return self._alerts[int(alert_id)]
        except (KeyError, ValueError, TypeError):
            raise DriftError(f"no drift alert with id {alert_id!r}") from None

    def resolve(self, alert_id: int, *, accept: bool = True) -> Alert:
        """Close an alert. accept=True takes the new shape into the baseline (via on_accept);
        accept=False keeps the old one, so the same drift seen again reopens the alert."""
        alert = self.get(alert_id)
        with self._lock:
            alert.resolved = True
            alert.resolution = "accepted" if accept else "kept"
            alert.merged = False
            self._applied.discard(alert.key)
            if accept and self.on_accept is not None:
                self.on_accept(alert)
                alert.merged = True
                self._applied.add(alert.key)
            self._index(alert)
            self._changes.append((alert.key, _RESOLVE, (alert.resolution, int(alert.merged), alert.id)))
        self.forget(alert.endpoint)
        self._schedule()
        return alert

    def apply_pending(self) -> int:
        """Take into the baseline the alerts accepted elsewhere (by another worker, by the
        command line while no on_accept was set); how many. Runs where the model is changed
        (the proxy's event loop), never on the writer thread that reads them in."""
        if self.on_accept is None:
            return 0
        with self._lock:
            pending = [a for a in self._by_key.values()
                       if a.resolved and a.resolution == "accepted" and a.key not in self._applied]
            for alert in pending:
                self.on_accept(alert)
                self._applied.add(alert.key)
                if not alert.merged:
                    alert.merged = True
                    self._changes.append((alert.key, _MERGED, (alert.id,)))
        for alert in pending:
            self.forget(alert.endpoint)
        if pending:
            self._schedule()
        return len(pending)

    def sync(self) -> None:
        """Apply acceptances read in since the last call, and have the writer thread write
        this process's sightings and read what others changed. Cheap: call it every second."""
        self.apply_pending()
        self._schedule()

    def forget(self, endpoint_id: str | None = None) -> None:
        """Drop cached shape verdicts (after the baseline changed other than by widening)."""
        if endpoint_id is None:
            self._ok.clear()
            self._drift_cache.clear()
            return
        for k in [k for k in self._ok if k[0] == endpoint_id]:
            del self._ok[k]
        for k in [k for k in self._drift_cache if k[0] == endpoint_id]:
            del self._drift_cache[k]

    def stats(self, endpoint) -> dict:
        """One endpoint's alerts, and the real responses checked and drifted: counted with its
        statistics, so in the store, by every process, since it was learned."""
        mine = self.alerts(endpoint=endpoint.id)
        checked, drifted = endpoint.stats.drift_checked, endpoint.stats.drift_drifted
        return {
            "endpoint": endpoint.id,
            "alerts": len(mine),
            "open": sum(1 for a in mine if not a.resolved),
            "last_drift": max((a.last_seen for a in mine), default=None),
            "checked": checked,
            "drifted": drifted,
            "share": (drifted / checked) if checked else 0.0,
        }

    # --- persistence ----------------------------------------------------------------

    def _schedule(self) -> None:
        with self._lock:
            if self._write_pending:
                return
            self._write_pending = True
        self.store.submit(self._sync)

    def _sync(self, db) -> None:
        """On the writer thread, in its transaction: add this process's sightings to their
        rows, write its resolutions, then read back every row changed since the last time."""
        with self._lock:
            self._write_pending = False
            sightings, self._sightings = self._sightings, {}
            changes, self._changes = self._changes, []
            new = {key: (self._by_key[key], s) for key, s in sightings.items()}
        try:
            for key, (a, s) in new.items():
                sample = json.dumps(a.sample, default=str)
                added = db.execute(_ADD, [s.count, s.first_seen, s.last_seen, int(s.reopen), sample, key])
                if added.rowcount == 0:
                    db.execute(_INSERT, [key, a.endpoint, a.kind, a.status, a.score, a.summary,
                                         json.dumps(a.findings, default=str), sample, s.first_seen,
                                         s.last_seen, s.count])
            for _, sql, params in changes:
                db.execute(sql, params)
            rows = db.execute(
                f"select {', '.join(_COLUMNS)} from drift_alerts where version > ? order by version",
                [self._version],
            ).fetchall()
        except Exception:
            with self._lock:  # the store retries the batch: nothing taken is lost
                for key, (_, s) in new.items():
                    now = self._sightings.setdefault(key, _Sightings(first_seen=s.first_seen))
                    now.count += s.count
                    now.first_seen = min(now.first_seen, s.first_seen)
                    now.last_seen = max(now.last_seen, s.last_seen)
                    now.reopen = now.reopen or s.reopen
                self._changes[:0] = changes
            raise
        with self._lock:
            for row in rows:
                self._apply_row(dict(zip(_COLUMNS, row)))


def _loads(text: str | None, default: Any) -> Any:
    if not text:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def _bounded_sample(value: Any) -> Any:
    """The drifting value itself when small; else a stand-in with the same shape."""
    try:
        if len(json.dumps(value, default=str)) <= MAX_SAMPLE_BYTES:
            return value
    except (TypeError, ValueError, RecursionError):
        pass
    return _example(shape(value))
