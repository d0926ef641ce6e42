"""Contract drift: say at once, and precisely, when the real API stops answering as it used to.

Each real response is compared with the schema learned for its (endpoint, status) *before*
the model learns from it. The comparison is on the *shape* (field names and JSON types, not
values): the learned schema is projected onto the shape of the response, keeping only what
the response is obliged to have (fields that were always present, types that were ever seen),
and deepdiff reports what differs. Optional and sometimes-null fields are projected away when
absent or null, so they never cry wolf.

The common case, no drift, must be cheap: a fingerprint of every shape that passed is kept per
(endpoint, kind, status), and deepdiff only runs for a shape not seen before.

The same drift (same endpoint, same finding set) is one alert whose count grows. Alerts live in
the `drift_alerts` table; the caller's thread never writes to disk (see `mockstore.store`).
"""

from __future__ import annotations

import hashlib
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


class DriftError(Exception):
    """A drift operation cannot be done; the message says why."""


def validate_options(opts: Any) -> None:
    """Raise ValueError with an actionable message for a bad drift option."""
    warmup = getattr(opts, "mock_drift_warmup", 5)
    if not isinstance(warmup, int) or warmup < 1:
        raise ValueError(f"mock_drift_warmup must be a whole number of samples >= 1, got {warmup!r}")


@dataclass
class Alert:
    id: int
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
    diff = DeepDiff(expected, actual, view="tree", ignore_order=False, verbose_level=2)
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


@register_tables
def _migrate(db) -> None:
    db.execute(
        """create table if not exists drift_alerts (
            id integer primary key,
            key text unique,                 -- endpoint + kind + status + finding set
            endpoint text, kind text, status integer,
            score integer, summary text,
            findings text, sample text,      -- JSON
            first_seen real, last_seen real, count integer,
            resolved integer default 0, resolution text, merged integer default 0
        )"""
    )
    db.execute("create index if not exists drift_alerts_endpoint on drift_alerts (endpoint)")


_COLUMNS = ("id", "key", "endpoint", "kind", "status", "score", "summary", "findings", "sample",
            "first_seen", "last_seen", "count", "resolved", "resolution", "merged")


class DriftWatch:
    """Compares real traffic with the learned baseline and keeps the resulting alerts."""

    def __init__(self, store: Store, *, warmup: int = 5):
        if warmup < 1:
            raise ValueError(f"warmup must be >= 1, got {warmup}")
        self.store = store
        self.warmup = warmup
        self.on_accept: Callable[[Alert], None] | None = None
        self._alerts: dict[int, Alert] = {}
        self._by_key: dict[str, Alert] = {}
        self._ok: dict[tuple, set[str]] = {}
        self._drift_cache: dict[tuple, list[dict]] = {}
        self._checked: Counter[str] = Counter()
        self._drifted: Counter[str] = Counter()
        self._dirty: set[int] = set()
        self._lock = threading.Lock()
        self._write_pending = False
        self._load()
        self._next_id = max(self._alerts, default=0) + 1

    def _load(self) -> None:
        rows = self.store.reader().execute(f"select {', '.join(_COLUMNS)} from drift_alerts order by id")
        for row in rows.fetchall():
            r = dict(zip(_COLUMNS, row))
            alert = Alert(
                id=r["id"], endpoint=r["endpoint"], kind=r["kind"], status=r["status"] or 0,
                score=r["score"] or 0, summary=r["summary"] or "",
                findings=_loads(r["findings"], []), sample=_loads(r["sample"], None),
                first_seen=r["first_seen"] or 0.0, last_seen=r["last_seen"] or 0.0,
                count=r["count"] or 0, resolved=bool(r["resolved"]), resolution=r["resolution"],
                merged=bool(r["merged"]), key=r["key"],
            )
            self._alerts[alert.id] = alert
            self._by_key[alert.key] = alert

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
        self._checked[endpoint.id] += 1
        return self._record(endpoint.id, "response", status, findings, value) if findings else None

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
        if endpoint.count < self.warmup:
            return []
        findings = []
        statuses = endpoint.statuses or {}
        if statuses and status not in statuses:
            findings.append({
                "path": "status", "kind": "status", "severity": "high",
                "expected": ", ".join(str(s) for s in sorted(statuses)), "actual": status,
            })
        ct = (content_type or "").split(";")[0].strip().lower()
        known = endpoint.content_types or {}
        if ct and known and ct not in known:
            findings.append({
                "path": "content-type", "kind": "content_type", "severity": "high",
                "expected": ", ".join(sorted(known)), "actual": ct,
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
        key = hashlib.sha1(_canonical([eid, kind, status, [
            [f["path"], f["kind"], str(f["expected"]), str(f["actual"])] for f in findings
        ]]).encode()).hexdigest()
        now = time.time()
        alert = self._by_key.get(key)
        if alert is None:
            alert = Alert(
                id=self._next_id, endpoint=eid, kind=kind, status=status, score=score(findings),
                summary=summarize(findings), findings=findings, sample=_bounded_sample(value),
                first_seen=now, last_seen=now, count=1, key=key,
            )
            self._next_id += 1
            self._alerts[alert.id] = alert
            self._by_key[key] = alert
        else:
            alert.count += 1
            alert.last_seen = now
            if alert.resolved:  # the old shape was kept, and the API still drifts from it
                alert.resolved, alert.resolution, alert.merged = False, None, False
                alert.sample = _bounded_sample(value)
        self._drifted[eid] += 1
        self._persist(alert)
        return alert

    # --- alerts ---------------------------------------------------------------------

    def alerts(self, *, unresolved: bool = False, endpoint: str | None = None) -> list[Alert]:
        return [
            a for a in self._alerts.values()
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
        alert.resolved = True
        alert.resolution = "accepted" if accept else "kept"
        alert.merged = False
        if accept and self.on_accept is not None:
            self.on_accept(alert)
            alert.merged = True
        self.forget(alert.endpoint)
        self._persist(alert)
        return alert

    def apply_pending(self) -> int:
        """Merge alerts accepted while no on_accept was set (e.g. from the CLI); how many."""
        if self.on_accept is None:
            return 0
        n = 0
        for alert in self._alerts.values():
            if alert.resolved and alert.resolution == "accepted" and not alert.merged:
                self.on_accept(alert)
                alert.merged = True
                self._persist(alert)
                n += 1
        if n:
            self._drift_cache.clear()
        return n

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

    def stats(self, endpoint_id: str) -> dict:
        mine = self.alerts(endpoint=endpoint_id)
        checked, drifted = self._checked[endpoint_id], self._drifted[endpoint_id]
        return {
            "endpoint": endpoint_id,
            "alerts": len(mine),
            "open": sum(1 for a in mine if not a.resolved),
            "last_drift": max((a.last_seen for a in mine), default=None),
            "checked": checked,  # since this process started
            "drifted": drifted,
            "share": (drifted / checked) if checked else 0.0,
        }

    # --- persistence ----------------------------------------------------------------

    def _persist(self, alert: Alert) -> None:
        with self._lock:
            self._dirty.add(alert.id)
            if self._write_pending:
                return
            self._write_pending = True
        self.store.submit(self._write_dirty)

    def _write_dirty(self, db) -> None:
        with self._lock:
            ids, self._dirty = self._dirty, set()
            self._write_pending = False
            rows = [_row(self._alerts[i]) for i in ids if i in self._alerts]
        placeholders = ", ".join("?" for _ in _COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c != "id")
        for row in rows:
            db.execute(
                f"insert into drift_alerts ({', '.join(_COLUMNS)}) values ({placeholders}) "
                f"on conflict(id) do update set {updates}",
                row,
            )


def _row(a: Alert) -> list:
    return [a.id, a.key, a.endpoint, a.kind, a.status, a.score, a.summary,
            json.dumps(a.findings, default=str), json.dumps(a.sample, default=str),
            a.first_seen, a.last_seen, a.count, int(a.resolved), a.resolution, int(a.merged)]


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
