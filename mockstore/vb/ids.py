"""Primary keys the way real services mint them: counters, UUIDs, patterns, Stripe-style.

A rule is parsed once per resource; `next_id` sees the keys already taken so counters
continue after seeded rows and a collision (say, after a restart) is simply skipped. A
counter also continues above the resource's high-water mark (the largest counter a
deleted or aged-out row had, kept by the storage): ids are never reused, as with SQLite's
AUTOINCREMENT. `problem` says why a client's own id is not one this rule could have made.
"""

from __future__ import annotations

import random
import re
import string
import time
import uuid
from collections.abc import Collection
from typing import Any

from .model import ModelError

_TOKEN = re.compile(r"\{(increment|timestamp|random|uuid)(?::(\d+))?\}")
_ALNUM = string.ascii_letters + string.digits
INT64 = (-(2**63), 2**63 - 1)


def parse_rule(rule: Any) -> dict:
    """Normalise an ID rule to {"type": increment|uuid|pattern|prefixed, ...}."""
    if rule in (None, "", "increment", "auto", "int", "integer"):
        return {"type": "increment"}
    if rule in ("uuid", "uuid4"):
        return {"type": "uuid"}
    if isinstance(rule, str) and "{" in rule:
        rule = {"type": "pattern", "pattern": rule}
    if isinstance(rule, dict):
        kind = rule.get("type") or ("pattern" if "pattern" in rule else "prefixed" if "prefix" in rule else None)
        if kind in ("increment", "uuid", "uuid4"):
            return {"type": "uuid" if kind == "uuid4" else kind}
        if kind == "pattern":
            pat = rule.get("pattern")
            if not isinstance(pat, str) or not _TOKEN.search(pat):
                raise ModelError(
                    f"id pattern {pat!r} needs a token: {{increment:06}}, {{timestamp}}, {{random:12}} or {{uuid}}"
                )
            return {"type": "pattern", "pattern": pat}
        if kind == "prefixed":
            length = rule.get("length", 14)
            if not isinstance(length, int) or not 4 <= length <= 64:
                raise ModelError("prefixed id: length must be an integer from 4 to 64")
            return {"type": "prefixed", "prefix": str(rule.get("prefix", "")), "length": length}
    raise ModelError(
        f"id rule {rule!r} is not understood: use increment, uuid, a pattern like 'USR-{{increment:06}}' "
        f"or {{prefix: cus_, length: 14}}"
    )


def _pattern_regex(pattern: str) -> re.Pattern:
    out, pos = [], 0
    for m in _TOKEN.finditer(pattern):
        out.append(re.escape(pattern[pos : m.start()]))
        kind, n = m.group(1), m.group(2)
        if kind == "increment":
            out.append(r"(?P<inc>\d+)")
        elif kind == "timestamp":
            out.append(r"\d+")
        elif kind == "random":
            out.append(f"[A-Za-z0-9]{{{int(n or 12)}}}")
        else:
            out.append(r"[0-9a-f-]{36}")
        pos = m.end()
    out.append(re.escape(pattern[pos:]))
    return re.compile("^" + "".join(out) + "$")


class IdMaker:
    """Mints ids for one resource."""

    def __init__(self, rule: Any, pk_type: str, rng: random.Random):
        self.rule = parse_rule(rule)
        self.pk_type = pk_type
        self.rng = rng
        self._last_ts = 0
        if self.rule["type"] == "pattern":
            self._regex = _pattern_regex(self.rule["pattern"])

    def next_id(self, taken: Collection[str], floor: int = 0) -> Any:
        """A free id; a counter starts above `floor` (the high-water mark) as well."""
        for _ in range(1000):
            value = self._make(taken, floor)
            if str(value) not in taken:
                return value
        raise RuntimeError("could not find a free id after 1000 attempts")

    def counter(self, key: str) -> int | None:
        """The counter inside a key this rule mints (None when the rule has no counter)."""
        kind = self.rule["type"]
        if kind == "increment":
            return int(key) if key.isdecimal() else None
        if kind == "pattern" and (m := self._regex.match(key)) and m.groupdict().get("inc"):
            return int(m.group("inc"))
        return None

    def problem(self, value: Any) -> str | None:
        """Why `value` cannot be an id of this resource, or None when it can."""
        kind = self.rule["type"]
        if self.pk_type == "integer" and isinstance(value, int) and not INT64[0] <= value <= INT64[1]:
            return f"{value} is out of range for an id (a 64-bit integer)"
        text = str(value)
        if kind == "pattern":
            if not self._regex.match(text):
                return f"{text!r} does not match the id pattern {self.rule['pattern']!r}"
            n = self.counter(text)
            if n is not None and n > INT64[1]:
                return f"{text!r}: its counter is out of range (a 64-bit integer)"
        elif kind == "uuid" and isinstance(value, str):
            try:
                uuid.UUID(text)
            except ValueError:
                return f"{text!r} is not a UUID"
        elif kind == "prefixed" and not text.startswith(self.rule["prefix"]):
            return f"{text!r} does not start with {self.rule['prefix']!r}"
        elif kind == "increment" and isinstance(value, str) and (n := self.counter(text)) is not None \
                and not INT64[0] <= n <= INT64[1]:
            return f"{text!r} is out of range for an id (a 64-bit integer)"
        return None

    def _make(self, taken: Collection[str], floor: int = 0) -> Any:
        kind = self.rule["type"]
        if kind == "increment":
            top = max((int(k) for k in taken if k.isdecimal()), default=0)  # int() reads any decimal
            n = max(top, floor) + 1
            return str(n) if self.pk_type == "string" else n
        if kind == "uuid":
            return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        if kind == "prefixed":
            return self.rule["prefix"] + self._random(self.rule["length"])
        return self._pattern(taken, floor)

    def _random(self, n: int) -> str:
        return "".join(self.rng.choice(_ALNUM) for _ in range(n))

    def _pattern(self, taken: Collection[str], floor: int) -> str:
        def fill(m: re.Match) -> str:
            kind, n = m.group(1), m.group(2)
            if kind == "increment":
                seen = [int(x.group("inc")) for k in taken if (x := self._regex.match(k))]
                value = max(max(seen, default=0), floor) + 1
                return str(value).zfill(int(n)) if n else str(value)
            if kind == "timestamp":
                self._last_ts = max(int(time.time() * 1000), self._last_ts + 1)
                return str(self._last_ts)
            if kind == "random":
                return self._random(int(n or 12))
            return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

        return _TOKEN.sub(fill, self.rule["pattern"])


def coerce_key(value: str, pk_type: str) -> Any:
    """A key from a URL segment, typed like the primary key (so 42 matches 42, not '42')."""
    if pk_type == "integer":
        try:
            return int(value)
        except ValueError:
            return value
    return value

