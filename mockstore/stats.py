"""Per-endpoint statistics: latency distribution, its EMA, the status and content-type mix,
the query parameters.

Latency lives in a fixed log-scale histogram (about 5% wide buckets from 0.1 ms to ~10 min):
constant memory per endpoint however much traffic, mergeable when templates fold together,
and it gives both percentiles and draws for simulated latency.

Query parameters are kept by name up to `QUERY_NAMES` per endpoint; names that look generated
(numbers, uuids, hashes, dates, long random tokens) and names beyond that many fold into one
entry per shape (`query_patterns`). An API whose clients put ids in query names (600 requests
of 1,000 new names each) made 34 MB of statistics, written again every second: now an
endpoint's statistics have a size bound whatever comes, and so has the cost of one request.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field

from . import values as _values
from .paths import classify
from .schemas import scalar_type

_BASE = 1.05
_MIN_MS = 0.1
_BUCKETS = 370  # 0.1 ms * 1.05**370 ~ 690 s


QUERY_NAMES = 64  # query parameter names kept by name, per endpoint
OTHER = "*"  # the pattern of names beyond QUERY_NAMES that look like nothing in particular
_EXAMPLE = 64  # characters of a folded name kept as the pattern's example
_TOKEN = re.compile(r"[A-Za-z0-9_\-+/=.]{20,}")
_STRING = {"type": "string"}  # shared: never changed in place


def query_shape(name: str) -> str | None:
    """The pattern a query parameter name folds into when it looks generated: `{id}` (numbers,
    uuids, hex digests, ulids), `{date}`, `{token}` (long and random-looking); None for a name
    a person chose (`page`, `sort-by`, `filter[status]`)."""
    kind = classify(name)
    if kind == "id" or kind == "date":
        return "{" + kind + "}"
    n = len(name)
    if n > _EXAMPLE:
        return "{token}"
    if n >= 20 and _TOKEN.fullmatch(name):
        digits = sum(c.isdigit() for c in name)
        if digits >= 2 and n - digits >= 2:
            return "{token}"
    return None


# Schemas of query values seen lately: values repeat (`page=1`, `sort=name`), and the
# learned-again path counts every exchange's query. Schemas are shared, never changed in place.
_VALUE_SCHEMAS: dict[str, dict] = {}
_VALUE_SCHEMAS_MAX = 4096


def _value_schema(value: str) -> dict:
    schema = _VALUE_SCHEMAS.get(value)
    if schema is None:
        if len(_VALUE_SCHEMAS) >= _VALUE_SCHEMAS_MAX:
            _VALUE_SCHEMAS.clear()
        schema = _VALUE_SCHEMAS[value] = scalar_type(value)
    return schema


def _count_value(entry: dict, value: str) -> None:
    entry["count"] = entry.get("count", 0) + 1
    schema = entry.get("schema")
    if schema is not _STRING:  # a plain string takes every value
        t = _value_schema(value)
        if t is not schema and t != schema:
            entry["schema"] = _STRING


def _merge_entry(into: dict, entry: dict) -> None:
    into["count"] = into.get("count", 0) + entry.get("count", 0)
    if into.get("schema") != entry.get("schema"):
        into["schema"] = _STRING


def _bucket(ms: float) -> int:
    if ms <= _MIN_MS:
        return 0
    return min(_BUCKETS - 1, int(math.log(ms / _MIN_MS, _BASE)))


def _bucket_ms(i: int) -> float:
    """The middle of bucket i, in milliseconds."""
    return _MIN_MS * _BASE ** (i + 0.5)


@dataclass
class EndpointStats:
    count: int = 0
    ema_ms: float | None = None
    latency: dict[int, int] = field(default_factory=dict)  # bucket -> count
    statuses: dict[int, int] = field(default_factory=dict)
    content_types: dict[str, int] = field(default_factory=dict)
    query: dict[str, dict] = field(default_factory=dict)  # name -> {"schema": {...}, "count": n}
    # shape (`{id}`, `{date}`, `{token}`, `*`) -> {"schema": {...}, "count": n, "example": name}
    query_patterns: dict[str, dict] = field(default_factory=dict)
    # status text -> response field -> the values it took (see mockstore.values)
    values: dict[str, dict] = field(default_factory=dict)
    # real responses the drift watch checked, and those of them that drifted (every process's)
    drift_checked: int = 0
    drift_drifted: int = 0

    EMA_ALPHA = 0.1

    def add(self, status: int, duration_ms: float, content_type: str = "") -> None:
        self.count += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if content_type:
            self.content_types[content_type] = self.content_types.get(content_type, 0) + 1
        if duration_ms >= 0:
            b = _bucket(duration_ms)
            self.latency[b] = self.latency.get(b, 0) + 1
            a = self.EMA_ALPHA
            self.ema_ms = duration_ms if self.ema_ms is None else a * duration_ms + (1 - a) * self.ema_ms

    def add_values(self, status: int, body, params: dict[str, str] | None = None) -> None:
        """Count the values of one response body learned afresh (see mockstore.values)."""
        _values.observe(self.values, status, body, params)

    def add_query(self, pairs: list[tuple[str, str]]) -> None:
        """Count one request's query parameters: by name, or in the pattern the name folds
        into. A name already kept costs a dict lookup; a new one a look at its shape."""
        query = self.query
        for name, value in pairs:
            entry = query.get(name)
            if entry is None:
                entry = self._new_name(name, value)
                if entry is None:
                    continue
            _count_value(entry, value)

    def _new_name(self, name: str, value: str) -> dict | None:
        """The pattern entry a name not kept folds into, to be counted; None once the name is
        kept (and counted) or its new pattern made."""
        shape = query_shape(name) or (OTHER if len(self.query) >= QUERY_NAMES else None)
        if shape is None:
            self.query[name] = {"schema": _value_schema(value), "count": 1}
            return None
        entry = self.query_patterns.get(shape)
        if entry is None:
            self.query_patterns[shape] = {"schema": _value_schema(value), "count": 1, "example": name[:_EXAMPLE]}
        return entry

    def _merge_query(self, names: dict, patterns: dict) -> None:
        for name, entry in names.items():
            if not isinstance(entry, dict):
                continue  # a damaged row: nothing to count
            mine = self.query.get(name)
            if mine is None:
                shape = query_shape(name) or (OTHER if len(self.query) >= QUERY_NAMES else None)
                if shape is None:
                    self.query[name] = {"schema": entry.get("schema") or _STRING, "count": entry.get("count", 0)}
                    continue
                mine = self.query_patterns.get(shape)
                if mine is None:
                    self.query_patterns[shape] = {
                        "schema": entry.get("schema") or _STRING, "count": entry.get("count", 0),
                        "example": name[:_EXAMPLE],
                    }
                    continue
            _merge_entry(mine, entry)
        for shape, entry in patterns.items():
            if not isinstance(entry, dict):
                continue
            mine = self.query_patterns.get(shape)
            if mine is None:
                self.query_patterns[shape] = dict(entry)
            else:
                _merge_entry(mine, entry)

    def merge(self, other: "EndpointStats") -> None:
        self.combine(other)
        if other.ema_ms is not None:
            self.ema_ms = other.ema_ms if self.ema_ms is None else (self.ema_ms + other.ema_ms) / 2

    def combine(self, other: "EndpointStats", sign: int = 1) -> None:
        """Add (sign 1) or take away (sign -1) another's counts: statistics learned by several
        processes add up (see `mockstore.sync`). The EMA is not a count: it is left alone."""
        self.count += sign * other.count
        for src, dst in (
            (other.latency, self.latency),
            (other.statuses, self.statuses),
            (other.content_types, self.content_types),
        ):
            for k, v in src.items():
                n = dst.get(k, 0) + sign * v
                if n:
                    dst[k] = n
                else:
                    dst.pop(k, None)
        self.drift_checked += sign * other.drift_checked
        self.drift_drifted += sign * other.drift_drifted
        if other.values:
            _values.combine(self.values, other.values, sign)
        if sign > 0:
            self._merge_query(other.query, other.query_patterns)
            return
        for mine, theirs in ((self.query, other.query), (self.query_patterns, other.query_patterns)):
            for name, entry in theirs.items():
                kept = mine.get(name)
                if kept is None:
                    continue
                n = kept.get("count", 0) - entry.get("count", 0)
                if n > 0:
                    mine[name] = {**kept, "count": n}
                else:
                    del mine[name]

    def minus(self, other: "EndpointStats") -> "EndpointStats":
        """What this has that `other` (an earlier copy of it) has not."""
        d = self.copy()
        d.combine(other, -1)
        return d

    def plus(self, other: "EndpointStats") -> "EndpointStats":
        d = self.copy()
        d.combine(other)
        return d

    def copy(self) -> "EndpointStats":
        return EndpointStats(
            self.count, self.ema_ms, dict(self.latency), dict(self.statuses), dict(self.content_types),
            {k: dict(v) for k, v in self.query.items()}, {k: dict(v) for k, v in self.query_patterns.items()},
            _values.copy(self.values) if self.values else {}, self.drift_checked, self.drift_drifted,
        )

    def percentile(self, p: float) -> float | None:
        """Latency at percentile p (0-100), in ms; None before any sample."""
        total = sum(self.latency.values())
        if not total:
            return None
        rank = p / 100 * total
        seen = 0
        for b in sorted(self.latency):
            seen += self.latency[b]
            if seen >= rank:
                return _bucket_ms(b)
        return _bucket_ms(max(self.latency))

    def draw_latency(self, rng: random.Random) -> float:
        """A latency drawn from the learned distribution, in ms (0 before any sample)."""
        if not self.latency:
            return 0.0
        buckets = list(self.latency)
        (b,) = rng.choices(buckets, weights=[self.latency[x] for x in buckets])
        return _bucket_ms(b)

    @property
    def main_status(self) -> int | None:
        """The most frequent status, 2xx preferred."""
        ok = {s: n for s, n in self.statuses.items() if 200 <= s < 300}
        pool = ok or self.statuses
        return max(pool, key=pool.get) if pool else None

    @property
    def error_rate(self) -> float:
        errors = sum(n for s, n in self.statuses.items() if s >= 500)
        return errors / self.count if self.count else 0.0

    def to_json(self) -> dict:
        return {
            "count": self.count,
            "ema_ms": self.ema_ms,
            "latency": {str(k): v for k, v in self.latency.items()},
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "content_types": self.content_types,
            "query": self.query,
            "query_patterns": self.query_patterns,
            "values": self.values,
            "drift_checked": self.drift_checked,
            "drift_drifted": self.drift_drifted,
            "p50": self.percentile(50),
            "p95": self.percentile(95),
            "p99": self.percentile(99),
            "error_rate": self.error_rate,
        }

    @classmethod
    def from_json(cls, d: dict) -> "EndpointStats":
        """Statistics as `to_json` wrote them; a store written before names were bounded has
        its names folded here, the most counted kept."""
        query, patterns = d.get("query") or {}, d.get("query_patterns") or {}
        s = cls(
            count=d.get("count", 0),
            ema_ms=d.get("ema_ms"),
            latency={int(k): v for k, v in d.get("latency", {}).items()},
            statuses={int(k): v for k, v in d.get("statuses", {}).items()},
            content_types=dict(d.get("content_types", {})),
            values=_values.from_json(d.get("values")),
            drift_checked=d.get("drift_checked", 0),
            drift_drifted=d.get("drift_drifted", 0),
        )
        if len(query) <= QUERY_NAMES:
            s.query, s.query_patterns = dict(query), dict(patterns)
        else:
            ranked = sorted(query.items(), key=lambda kv: -kv[1].get("count", 0) if isinstance(kv[1], dict) else 0)
            s._merge_query(dict(ranked), patterns)
        return s
