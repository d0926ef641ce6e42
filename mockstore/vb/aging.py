"""Data that gets old: rows past a maximum age are deleted or marked expired.

Applied on read (so a client never sees a row that should be gone) and by the backend's
background sweep (so storage does not grow without bound).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from .model import AgingRule, Model
from .storage import Storage


def timestamp(value: Any) -> float | None:
    """Seconds since the epoch from an epoch number (s or ms) or an ISO 8601 string."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return value / 1000 if value > 1e11 else float(value)
    if isinstance(value, str):
        try:
            d = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return (d if d.tzinfo else d.replace(tzinfo=dt.timezone.utc)).timestamp()
    return None


def apply(model: Model, storage: Storage, ns: str, crud, resource: str | None = None,
          now: float | None = None) -> int:
    """Apply the rules (for one resource, or all) in one namespace; returns rows affected."""
    now = time.time() if now is None else now
    done = 0
    for rule in model.aging:
        if resource is not None and rule.resource != resource:
            continue
        done += _apply_rule(rule, model, storage, ns, crud, now)
    return done


def _apply_rule(rule: AgingRule, model: Model, storage: Storage, ns: str, crud, now: float) -> int:
    res = model.resources[rule.resource]
    old = [r for r in storage.rows(ns, res.name)
           if (t := timestamp(r.get(rule.field))) is not None and now - t > rule.max_age]
    n = 0
    for row in old:
        key = str(row.get(res.pk))
        if rule.action == "delete":
            try:
                crud.delete(ns, res, key)
            except Exception:  # restricted by a reference: leave it for now
                continue
            n += 1
        elif row.get(rule.flag) is not True:
            row[rule.flag] = True
            storage.put(ns, res.name, key, row)
            n += 1
    return n
