"""What values each response field took, so synthesis can give back values like them.

A schema says `currency` is a string; the traffic says it was `EUR` every time, that
`status` was one of `pending|paid|shipped`, that `user_id` was 3, 7 or 12, that `price` ran
from 4.5 to 80 and `code` was 6 characters long. Kept per endpoint, status and field (its
place in the body: `post.title`, `posts[].author.username`, `[].id`), with bounded memory:

- up to `KEEP` distinct scalar values with their counts, then only "many" (`v` is None);
  a string longer than `LONGEST` is text, not one of a set, and makes the field "many";
- numbers: the least and the greatest; strings: the shortest and the longest length;
- which fields carried each path parameter's value (`/users/77/orders` answered items whose
  `user_id` was 77), up to `CARRIERS` per parameter.

Everything here is a count or a bound, so it adds up across processes like the rest of
`EndpointStats` (see mockstore.sync): sets merge by adding counts (and become "many" past
`KEEP`), bounds by min and max. Taking an earlier copy away (`combine(..., -1)`) leaves what
was learned since: the counts that grew; bounds are kept whole (they only widen).

Only bodies learned afresh are walked (an identical body seen again is counted by the
schema, not walked again), and at most `ITEMS` items of any array: the cost is one more walk
of what genson walks anyway, on new bodies only.
"""

from __future__ import annotations

import json
from typing import Any

KEEP = 32  # distinct values kept per field, then "many"
LONGEST = 64  # characters of a string that can still be one of a set
FIELDS = 256  # fields kept per endpoint and status
ITEMS = 32  # items of one array walked
DEPTH = 16  # nesting walked
CARRIERS = 8  # fields remembered per path parameter
PARAMS = "@params"  # the key, among a status's fields, of the path parameters' carriers

Fields = dict[str, dict]  # field path -> {"n": count, "v": {json text: count} | None, "lo", "hi", "ln"}


def observe(values: dict[str, Fields], status: int, body: Any, params: dict[str, str] | None = None) -> None:
    """Count one response body's scalar values into `values` (status text -> fields)."""
    fields = values.get(str(status))
    if fields is None:
        fields = values[str(status)] = {}
    carried: dict[str, set[str]] = {}
    wanted = {v: k for k, v in params.items() if v} if params else {}
    _walk(fields, "", body, 0, wanted, carried)
    if carried:
        table = fields.get(PARAMS)
        if table is None:
            table = fields[PARAMS] = {}
        for name, paths in carried.items():
            counts = table.get(name)
            if counts is None:
                counts = table[name] = {}
            for p in paths:
                if p in counts or len(counts) < CARRIERS:
                    counts[p] = counts.get(p, 0) + 1


def _walk(fields: Fields, path: str, v: Any, depth: int, wanted: dict, carried: dict) -> None:
    if type(v) is dict:
        if depth >= DEPTH:
            return
        prefix = path + "." if path else ""
        for k, x in v.items():
            _walk(fields, prefix + k, x, depth + 1, wanted, carried)
    elif type(v) is list:
        if depth >= DEPTH:
            return
        path += "[]"
        for x in v[:ITEMS]:
            _walk(fields, path, x, depth + 1, wanted, carried)
    elif v is not None:
        entry = fields.get(path)
        if entry is None:
            if len(fields) >= FIELDS:
                return
            entry = fields[path] = {"n": 0, "v": {}}
        key = _count(entry, v)
        if wanted:
            name = wanted.get(v if type(v) is str else key or _text(v))
            if name is not None:
                carried.setdefault(name, set()).add(path)


def _text(v: Any) -> str | None:
    """A scalar as JSON text, cheaply: most strings need no escaping."""
    t = type(v)
    if t is str:
        if '"' in v or "\\" in v or not v.isprintable():
            return json.dumps(v)
        return '"' + v + '"'
    if t is bool:
        return "true" if v else "false"
    if t is int:
        return str(v)
    return json.dumps(v)


def _count(entry: dict, v: Any) -> str | None:
    """Count one value; its JSON text, when it was kept."""
    entry["n"] += 1
    if type(v) is str:
        n = len(v)
        ln = entry.get("ln")
        if ln is None:
            entry["ln"] = [n, n]
        elif n < ln[0]:
            ln[0] = n
        elif n > ln[1]:
            ln[1] = n
        if n > LONGEST:
            entry["v"] = None
            return None
    elif type(v) is not bool:
        lo = entry.get("lo")
        if lo is None:
            entry["lo"] = entry["hi"] = v
        elif v < lo:
            entry["lo"] = v
        elif v > entry["hi"]:
            entry["hi"] = v
    kept = entry["v"]
    if kept is None:
        return None
    key = _text(v)
    n = kept.get(key)
    if n is not None:
        kept[key] = n + 1
    elif len(kept) >= KEEP:
        entry["v"] = None
        return None
    else:
        kept[key] = 1
    return key


def combine(into: dict[str, Fields], other: dict[str, Fields], sign: int = 1) -> None:
    """Add (sign 1) or take away (sign -1) another's values, as `EndpointStats.combine`."""
    for status, theirs in other.items():
        if not isinstance(theirs, dict):
            continue  # a damaged row: nothing to count
        mine = into.get(status)
        if mine is None:
            if sign < 0:
                continue
            mine = into[status] = {}
        for path, entry in theirs.items():
            if not isinstance(entry, dict):
                continue
            if path == PARAMS:
                _combine_params(mine, entry, sign)
            elif sign > 0:
                _add(mine, path, entry)
            else:
                _take(mine, path, entry)
        if not mine:
            del into[status]


def _add(fields: Fields, path: str, entry: dict) -> None:
    kept = fields.get(path)
    if kept is None:
        if len(fields) < FIELDS:
            fields[path] = copy_entry(entry)
        return
    kept["n"] = kept.get("n", 0) + entry.get("n", 0)
    for k, pick in (("lo", min), ("hi", max)):
        if entry.get(k) is not None:
            kept[k] = entry[k] if kept.get(k) is None else pick(kept[k], entry[k])
    if entry.get("ln"):
        ln = kept.get("ln")
        kept["ln"] = list(entry["ln"]) if not ln else [min(ln[0], entry["ln"][0]), max(ln[1], entry["ln"][1])]
    a, b = kept.get("v"), entry.get("v")
    if a is None or b is None:
        kept["v"] = None
        return
    for k, n in b.items():
        a[k] = a.get(k, 0) + n
    if len(a) > KEEP:
        kept["v"] = None


def _take(fields: Fields, path: str, entry: dict) -> None:
    kept = fields.get(path)
    if kept is None:
        return
    n = kept.get("n", 0) - entry.get("n", 0)
    if n <= 0:
        del fields[path]
        return
    kept = fields[path] = copy_entry(kept)
    kept["n"] = n
    a, b = kept.get("v"), entry.get("v")
    if a is not None and b is not None:
        for k, c in b.items():
            left = a.get(k, 0) - c
            if left > 0:
                a[k] = left
            else:
                a.pop(k, None)


def _combine_params(fields: Fields, table: dict, sign: int) -> None:
    mine = fields.get(PARAMS)
    if mine is None:
        if sign < 0:
            return
        mine = fields[PARAMS] = {}
    for name, counts in table.items():
        if not isinstance(counts, dict):
            continue
        have = mine.get(name)
        if have is None:
            if sign < 0:
                continue
            have = mine[name] = {}
        for p, n in counts.items():
            left = have.get(p, 0) + sign * n
            if left > 0 and (p in have or len(have) < CARRIERS):
                have[p] = left
            else:
                have.pop(p, None)
        if not have:
            del mine[name]
    if not mine:
        del fields[PARAMS]


def copy_entry(entry: dict) -> dict:
    out = dict(entry)
    out["v"] = dict(out["v"]) if isinstance(out.get("v"), dict) else None
    if isinstance(out.get("ln"), list):
        out["ln"] = list(out["ln"])
    if "n" not in out:
        out["n"] = 0
    return out


def _sound(e: dict) -> dict:
    """An entry from a row, with what is damaged in it dropped (a bound needs both ends)."""
    e = copy_entry(e)
    if not all(isinstance(e.get(k), (int, float)) and not isinstance(e.get(k), bool) for k in ("lo", "hi")):
        e.pop("lo", None)
        e.pop("hi", None)
    ln = e.get("ln")
    if ln is not None and not (isinstance(ln, list) and len(ln) == 2 and all(isinstance(x, int) for x in ln)):
        del e["ln"]
    return e


def copy(values: dict[str, Fields]) -> dict[str, Fields]:
    out = {}
    for status, fields in values.items():
        out[status] = {
            p: ({k: dict(c) for k, c in e.items()} if p == PARAMS else copy_entry(e)) for p, e in fields.items()
        }
    return out


def from_json(d: Any) -> dict[str, Fields]:
    """Values as a stats row holds them; whatever is damaged in it is left out."""
    out: dict[str, Fields] = {}
    if not isinstance(d, dict):
        return out
    for status, fields in d.items():
        if not isinstance(fields, dict):
            continue
        good = {}
        for p, e in fields.items():
            if p == PARAMS and isinstance(e, dict):
                good[p] = {k: dict(c) for k, c in e.items() if isinstance(c, dict)}
            elif isinstance(e, dict) and isinstance(e.get("n"), int) and (e.get("v") is None or isinstance(e.get("v"), dict)):
                good[p] = _sound(e)
        if good:
            out[str(status)] = good
    return out


# --- reading, for synthesis ---------------------------------------------------------------

def choices(entry: dict) -> tuple[list, list[int]] | None:
    """The values a field took and how often, when it took few enough to be a set; None for
    "many" (or nothing usable)."""
    kept = entry.get("v")
    if not kept:
        return None
    vals, weights = [], []
    for k, n in kept.items():
        try:
            vals.append(json.loads(k))
        except ValueError:
            continue
        weights.append(max(int(n), 1))
    return (vals, weights) if vals else None


def carriers(fields: Fields, param: str) -> list[str]:
    """The fields that carried path parameter `param` in the learned bodies, the most often
    first; one that carried it less than half as often as the first was a coincidence (an id
    1 and a count of 1)."""
    counts = dict((fields.get(PARAMS) or {}).get(param) or {})  # a copy: learning goes on meanwhile
    if not counts:
        return []
    most = max(counts.values())
    return sorted((p for p, n in counts.items() if 2 * n >= most), key=lambda p: -counts[p])


def path_params(template: str, path: str) -> dict[str, str]:
    """The values a path gave a template's parameters (`/users/{id}`, `/users/77`: id 77)."""
    out = {}
    if "{" not in template:
        return out
    for t, p in zip(template.strip("/").split("/"), path.strip("/").split("/")):
        if t.startswith("{") and t.endswith("}"):
            out[t[1:-1]] = p
    return out
