"""Per-endpoint statistics: latency distribution, its EMA, the status and content-type mix.

Latency lives in a fixed log-scale histogram (about 5% wide buckets from 0.1 ms to ~10 min):
constant memory per endpoint however much traffic, mergeable when templates fold together,
and it gives both percentiles and draws for simulated latency.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

_BASE = 1.05
_MIN_MS = 0.1
_BUCKETS = 370  # 0.1 ms * 1.05**370 ~ 690 s


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
        for name, q in other.query.items():
            mine = self.query.get(name)
            if mine is None:
                if sign > 0:
                    self.query[name] = dict(q)
                continue
            mine["count"] = mine.get("count", 0) + sign * q.get("count", 0)
            if sign > 0 and mine.get("schema") != q.get("schema"):
                mine["schema"] = {"type": "string"}
            if mine["count"] <= 0:
                del self.query[name]

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
            {k: dict(v) for k, v in self.query.items()},
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
            "p50": self.percentile(50),
            "p95": self.percentile(95),
            "p99": self.percentile(99),
            "error_rate": self.error_rate,
        }

    @classmethod
    def from_json(cls, d: dict) -> "EndpointStats":
        return cls(
            count=d.get("count", 0),
            ema_ms=d.get("ema_ms"),
            latency={int(k): v for k, v in d.get("latency", {}).items()},
            statuses={int(k): v for k, v in d.get("statuses", {}).items()},
            content_types=dict(d.get("content_types", {})),
            query=dict(d.get("query", {})),
        )
