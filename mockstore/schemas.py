"""Learn one JSON Schema per endpoint from the bodies seen, with genson.

A `SchemaModel` keeps genson's builder alive between samples, so learning a body costs one
walk over it, not a rebuild from the stored schema. Two additions to genson:

* `format` on strings, kept only while *every* string seen at that place had the same
  format (one non-email among emails drops it). A stored schema without `format` on a
  string means the formats disagreed, so resuming from it stays format-less.
* Nullability is written as a type list, `{"type": ["null", "string"], "format": ...}`,
  never as `anyOf` with a null branch: genson emits `anyOf` as soon as the non-null branch
  carries a keyword, and we fold that back. The type list is valid in every draft, and
  `format` (or `properties`, `items`) only constrains the values of its own type.

Values nested deeper than `MAX_DEPTH` are learned as an untyped-content container of the
right type, so a hostile body cannot exhaust the stack.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import date, datetime
from typing import Any

from genson import SchemaBuilder
from genson.schema.node import SchemaGenerationError
from genson.schema.strategies import String

MAX_DEPTH = 64

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z0-9-]{2,}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})"
)
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#]+[^\s]*")
_IPV4 = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")
_INT = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")


def detect_format(s: str) -> str | None:
    """The JSON Schema format of a string: email, uri, date-time, date, uuid, ipv4, or None.

    Each check first looks at the length or one telltale character, so plain text costs a
    few comparisons; every "yes" is strict enough to pass jsonschema's FormatChecker."""
    n = len(s)
    if n < 6 or n > 2048:
        return None
    if "@" in s:
        return "email" if n <= 254 and _EMAIL.fullmatch(s) else None
    if "://" in s:
        return "uri" if _URI.fullmatch(s) else None
    c = s[0]
    if c.isdigit():
        if n == 10 and _DATE.fullmatch(s):
            return "date" if _parses(date.fromisoformat, s) else None
        if 20 <= n <= 35 and _DATETIME.fullmatch(s):
            return "date-time" if _parses(datetime.fromisoformat, s.replace("z", "Z")) else None
        if n <= 15 and _IPV4.fullmatch(s):
            return "ipv4" if _parses(ipaddress.IPv4Address, s) else None
    if n == 36 and s[8] == "-" and _UUID.fullmatch(s):
        return "uuid"
    return None


def _parses(parse, s: str) -> bool:
    try:
        parse(s)
    except ValueError:
        return False
    return True


def scalar_type(text: str) -> dict:
    """The schema of a scalar that arrives as text (a query or path parameter)."""
    t = text.strip()
    if t.lower() in ("true", "false"):
        return {"type": "boolean"}
    if _INT.fullmatch(t) and len(t) < 19:
        return {"type": "integer"}
    if _NUMBER.fullmatch(t):
        return {"type": "number"}
    fmt = detect_format(text)
    return {"type": "string", "format": fmt} if fmt else {"type": "string"}


class FormatString(String):
    """genson's string strategy, plus a `format` every sample agrees on."""

    KEYWORDS = (*String.KEYWORDS, "format")

    def __init__(self, node_class):
        super().__init__(node_class)
        self._format: str | None | bool = None  # None: nothing seen yet; False: disagreed

    def _see(self, fmt: str | None) -> None:
        if self._format is None:
            self._format = fmt or False
        elif self._format != fmt:
            self._format = False

    def add_object(self, obj):
        super().add_object(obj)
        self._see(detect_format(obj))

    def add_schema(self, schema):
        super().add_schema(schema)
        if schema.get("type") == "string" or "format" in schema:
            self._see(schema.get("format"))

    def to_schema(self):
        schema = super().to_schema()
        if self._format:
            schema["format"] = self._format
        return schema


class _Builder(SchemaBuilder):
    EXTRA_STRATEGIES = (FormatString,)


class SchemaModel:
    """Accumulates JSON values into one schema (genson SchemaBuilder underneath), keeping it
    live in memory so each add is cheap."""

    def __init__(self, schema: dict | None = None, *, samples: int = 0):
        self._builder = _Builder(schema_uri=None)
        self.samples = samples
        if schema:
            self._builder.add_schema(_unfold_nulls(schema))

    def add(self, value: Any) -> None:
        """Learn one JSON value (as `json.loads` gives it); anything else raises ValueError."""
        try:
            self._builder.add_object(_clip(value, MAX_DEPTH))
        except SchemaGenerationError as e:
            raise ValueError(f"not a JSON value: {e}") from None
        self.samples += 1

    def merge(self, other: SchemaModel | dict) -> None:
        if not isinstance(other, (SchemaModel, dict)):
            raise TypeError(f"can only merge a SchemaModel or a schema dict, not {type(other).__name__}")
        if isinstance(other, SchemaModel):
            self._builder.add_schema(other._builder)
            self.samples += other.samples
        else:
            self._builder.add_schema(_unfold_nulls(other))

    def to_schema(self) -> dict:
        return _fold_nulls(self._builder.to_schema())


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _clip(value: Any, depth: int) -> Any:
    """`value`, with containers below `depth` emptied; the same object when nothing is cut.

    Also refuses non-JSON values up front, so a bad one leaves the model untouched."""
    if isinstance(value, dict):
        if depth <= 0:
            return {}
        out = None
        for k, v in value.items():
            if type(v) in _SCALARS:
                continue
            c = _clip(v, depth - 1)
            if c is not v:
                if out is None:
                    out = dict(value)
                out[k] = c
        return value if out is None else out
    if isinstance(value, list):
        if depth <= 0:
            return []
        lout = None
        for i, v in enumerate(value):
            if type(v) in _SCALARS:
                continue
            c = _clip(v, depth - 1)
            if c is not v:
                if lout is None:
                    lout = list(value)
                lout[i] = c
        return value if lout is None else lout
    if type(value) not in _SCALARS:
        raise ValueError(f"not a JSON value: {type(value).__name__}")
    return value


def _fold_nulls(schema: Any) -> Any:
    """anyOf [{"type": "null"}, {"type": X, ...}] -> {"type": ["null", X], ...}, recursively."""
    if not isinstance(schema, dict):
        return schema
    out = _map_subschemas(schema, _fold_nulls)
    any_of = out.get("anyOf")
    if isinstance(any_of, list) and len(any_of) == 2 and len(out) == 1:
        nulls = [s for s in any_of if _is_null_only(s)]
        others = [s for s in any_of if not _is_null_only(s)]
        if len(nulls) == 1 and len(others) == 1 and isinstance(others[0].get("type"), str):
            merged = dict(others[0])
            merged["type"] = sorted({"null", merged["type"]})
            return merged
        if len(nulls) == 1 and len(others) == 1 and isinstance(others[0].get("type"), list):
            merged = dict(others[0])
            merged["type"] = sorted({"null", *merged["type"]})
            return merged
    return out


def _unfold_nulls(schema: Any) -> Any:
    """The inverse, so genson (which splits type lists and copies the other keywords to
    every branch) does not put `format` or `properties` on the null branch."""
    if not isinstance(schema, dict):
        return schema
    out = _map_subschemas(schema, _unfold_nulls)
    types = out.get("type")
    if isinstance(types, list) and len(types) > 1 and len(out) > 1:
        rest = {k: v for k, v in out.items() if k != "type"}
        branches = []
        for t in types:
            branch = {"type": t}
            branch.update({k: v for k, v in rest.items() if _belongs(k, t)})
            branches.append(branch)
        return {"anyOf": branches}
    return out


def _map_subschemas(schema: dict, fn) -> dict:
    out = dict(schema)
    for key in ("properties", "patternProperties"):
        if isinstance(out.get(key), dict):
            out[key] = {name: fn(sub) for name, sub in out[key].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = fn(out[key])
        elif isinstance(out.get(key), list):
            out[key] = [fn(sub) for sub in out[key]]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(out.get(key), list):
            out[key] = [fn(sub) for sub in out[key]]
    return out


_TYPE_KEYWORDS = {
    "string": {"format", "minLength", "maxLength", "pattern"},
    "object": {"properties", "required", "patternProperties", "additionalProperties"},
    "array": {"items", "minItems", "maxItems"},
    "integer": {"minimum", "maximum"},
    "number": {"minimum", "maximum"},
}


def _belongs(keyword: str, type_: str) -> bool:
    owner = [t for t, kws in _TYPE_KEYWORDS.items() if keyword in kws]
    return not owner or type_ in owner


def _is_null_only(s: Any) -> bool:
    return isinstance(s, dict) and s == {"type": "null"}

