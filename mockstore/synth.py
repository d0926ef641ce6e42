"""Make up a plausible value for a JSON Schema, the same one every time.

Mocked responses must look real (an `email` field holds an email, `created_at` a recent
timestamp) and must be reproducible: the same request to the same model gives the same
body, so a test that passed once passes again. Everything random is drawn from one
`random.Random` seeded per call from a stable hash of (seed, key). Faker only fills pools of
values once per process (`_Pools`, each from a fixed seed): a draw from a pool costs a
microsecond where a Faker call cost tens, and faker was most of a synthesized answer's cost.

What is understood: type (and type lists, OpenAPI's `nullable`), enum, const, format,
min/max (inclusive and exclusive, draft 4 and later), multipleOf, min/maxLength, pattern (a
small generator over Python's own regex parser), min/maxItems, uniqueItems, prefixItems,
properties, required, additionalProperties, anyOf/oneOf (the first non-null branch, mostly),
allOf (merged), and local `$ref`s (`#/components/schemas/X`, `#/definitions/X`, any JSON
pointer) resolved against `root`, with recursion cut short. Field names steer the values
when the schema leaves room; a `format` wins over a name.

For a learned endpoint (`learned`), what the traffic taught wins over names and faker: a
field that took few values (mockstore.values) takes one of them, as often as it was seen (an
enum, a currency, the user ids seen); one that took many stays inside the learned range of
numbers and lengths of strings. The request's own values are carried in: path parameters
into the fields that carried them in the learned bodies (or the field of their name, at the
top or in the envelope), and a create/update's body fields into the response fields of the
same names, at the top or in the envelope (`{"post": {...}}`). Only fields the schema has are
ever filled: the body validates against the learned schema read strictly.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import itertools
import json
import random
import re
import string
import threading
import uuid
import weakref
import zlib
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any

from . import values as _values

try:  # Python 3.11+
    import re._parser as _sre  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover
    import sre_parse as _sre  # type: ignore[no-redef]

MAX_DEPTH = 12  # nesting below which only required properties are produced
MAX_REF_DEPTH = 3  # times one $ref may be entered on a single branch
MAX_ITEMS = 5
# Schemas may demand absurd sizes; we honour them only up to these (and then fail validation
# rather than memory).
MAX_LENGTH = 65536
MAX_COUNT = 1000
# Values one answer may hold beyond what its schema requires. Array lengths multiply down a
# nesting: a schema learned from `[[[[...]]]]` gave 3^12 values on average (4 MB, 9 s, and
# every other synthesis waiting on the lock), 5^12 at worst. Past the budget, arrays get their
# minimum length and objects their required properties only.
MAX_VALUES = 10_000
NULL_RATE = 0.1  # how often a nullable field is null
POOL = 256  # values in each pool of faker values
PLANS = 512  # learned endpoints' plans kept

_EPOCH_START = int(datetime(2021, 1, 1, tzinfo=timezone.utc).timestamp())
_EPOCH_END = int(datetime(2025, 12, 31, tzinfo=timezone.utc).timestamp())
_STATUS_WORDS = ["active", "pending", "inactive", "completed", "approved", "archived"]


class _Pools:
    """Faker values made once, POOL of each kind, each kind from its own fixed seed: the same
    pools in every process, whatever was asked first."""

    MAKERS = {
        "word": lambda f: f.word(),
        "words": lambda f: f.sentence(nb_words=3).rstrip("."),
        "title": lambda f: f.sentence(nb_words=4).rstrip("."),
        "paragraph": lambda f: f.paragraph(nb_sentences=2),
        "email": lambda f: f.email(),
        "first_name": lambda f: f.first_name(),
        "last_name": lambda f: f.last_name(),
        "name": lambda f: f.name(),
        "user_name": lambda f: f.user_name(),
        "url": lambda f: f.url(),
        "uri": lambda f: f.url() + f.uri_path(),
        "image_url": lambda f: f.image_url(),
        "phone_number": lambda f: f.phone_number(),
        "city": lambda f: f.city(),
        "country": lambda f: f.country(),
        "country_code": lambda f: f.country_code(),
        "street_address": lambda f: f.street_address(),
        "postcode": lambda f: f.postcode(),
        "company": lambda f: f.company(),
        "currency_code": lambda f: f.currency_code(),
        "color_name": lambda f: f.color_name(),
        "slug": lambda f: f.slug(),
        "token": lambda f: f.password(length=16, special_chars=False),
        "password": lambda f: f.password(length=12),
        "time": lambda f: f.time() + "Z",
        "domain_name": lambda f: f.domain_name(),
        "ipv4": lambda f: f.ipv4(),
        "ipv6": lambda f: f.ipv6(),
    }

    def __init__(self):
        self._pools: dict[str, list] = {}
        self._lock = threading.Lock()
        self._faker = None

    def draw(self, rnd: random.Random, kind: str) -> Any:
        pool = self._pools.get(kind)
        if pool is None:
            pool = self._fill(kind)
        return pool[int(rnd.random() * len(pool))]

    def _fill(self, kind: str) -> list:
        with self._lock:
            pool = self._pools.get(kind)
            if pool is None:
                if self._faker is None:
                    from faker import Faker  # building one costs a good fraction of a second

                    self._faker = Faker("en_US")
                self._faker.seed_instance(zlib.crc32(kind.encode()))
                make = self.MAKERS[kind]
                pool = self._pools[kind] = [make(self._faker) for _ in range(POOL)]
        return pool


_pools = _Pools()


class SynthError(ValueError):
    """The schema cannot be synthesized (it is not a schema, or a $ref cannot be found)."""


def synthesize(
    schema: dict,
    *,
    seed: int = 0,
    key: str = "",
    overrides: dict | None = None,
    root: dict | None = None,
    learned: "Plan | None" = None,
    request: Any = None,
) -> object:
    """A value valid for `schema`, determined by (schema, seed, key, overrides, learned,
    request).

    `overrides` force fields by name (`{"id": "42"}`, path parameters), coerced to the field's
    type; a value that cannot be coerced is ignored, and so is a name the schema does not
    have. `learned`: what the traffic taught about this schema's fields (see `plan`);
    `request`: the request's JSON body, whose fields are carried into the fields of the same
    names. Forced and carried values replace what was drawn, so the rest of the body is the
    same whatever the request's values."""
    if not isinstance(schema, (dict, bool)):
        raise SynthError(f"a schema must be an object, not {type(schema).__name__}")
    digest = hashlib.blake2b(f"{seed}\x00{key}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    rnd = random.Random(int.from_bytes(digest, "big"))
    gen = _Generator(rnd, root if root is not None else schema, learned)
    try:
        gen.carry(schema, overrides, request)
        if learned is not None and learned.schema is schema:
            return learned.compiled()(gen)
        return gen.value(schema, "", 0, "")
    except RecursionError:
        raise SynthError("the schema is nested too deeply to synthesize") from None


class Plan:
    """What synthesis of one learned (endpoint, status) needs, made once from its schema and
    its values (mockstore.values) and reused until the endpoint learns more: the schema
    itself (genson's `to_schema` is not free), the fields' value sets as cumulative weights,
    their bounds as schema keywords, and the fields that carried each path parameter."""

    __slots__ = ("schema", "choices", "bounds", "carriers", "_compiled", "_envelope")

    def __init__(self, schema: dict, fields: dict | None):
        self.schema = schema
        self._compiled = None
        self._envelope: Any = False  # not looked for yet
        self.choices: dict[str, tuple[list, list]] = {}
        self.bounds: dict[str, dict] = {}
        self.carriers: dict[str, list[str]] = {}
        if not fields:
            return
        fields = dict(fields)  # a snapshot: learning goes on in another thread
        for path, entry in fields.items():
            if path == _values.PARAMS:
                for name in list(dict(entry)):
                    self.carriers[name] = _values.carriers(fields, name)
                continue
            entry = dict(entry)
            if isinstance(entry.get("v"), dict):
                entry["v"] = dict(entry["v"])
            picked = _values.choices(entry)
            if picked is not None:
                vals, weights = picked
                self.choices[path] = (vals, list(itertools.accumulate(weights)))
                continue
            bound = {}
            if entry.get("lo") is not None and entry.get("hi") is not None:
                bound["minimum"], bound["maximum"] = entry["lo"], entry["hi"]
            if isinstance(entry.get("ln"), list) and len(entry["ln"]) == 2:
                bound["minLength"], bound["maxLength"] = entry["ln"]
            if bound:
                self.bounds[path] = bound


    def envelope(self, gen: "_Generator") -> str | None:
        if self._envelope is False:
            self._envelope = gen.envelope_of(self.schema)
        return self._envelope

    def compiled(self):
        """The schema made into a tree of small functions, once: walking the schema for
        every answer (which keywords, which name, which type) cost more than the values."""
        if self._compiled is None:
            self._compiled = _Compiler(self).node(self.schema, "", 0, "")
        return self._compiled


# Keywords the compiler leaves to the generator (which understands them all).
_INTERPRETED = frozenset({
    "$ref", "allOf", "anyOf", "oneOf", "not", "pattern", "multipleOf", "prefixItems", "uniqueItems",
    "minProperties", "patternProperties", "if", "contains",
})


class _Compiler:
    def __init__(self, plan: Plan):
        self.plan = plan

    def node(self, schema: Any, name: str, depth: int, path: str):
        """A function of a `_Generator` that makes a value for `schema` at `path`."""
        if not isinstance(schema, dict) or not schema or not _INTERPRETED.isdisjoint(schema) or depth > MAX_DEPTH:
            return lambda g: g.drawn(schema, name, depth, path)
        if "const" in schema:
            const = schema["const"]
            return lambda g: const
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            enum = [v for v in schema["enum"] if v is not None] or schema["enum"]
            return lambda g: g.rnd.choice(enum)
        picked = self.plan.choices.get(path)
        if picked is not None:
            vals, cum = picked
            weights = [c - (cum[i - 1] if i else 0) for i, c in enumerate(cum)]
            fit = [(v, w) for v, w in zip(vals, weights) if _fits(v, schema)]
            if fit:
                vals = [v for v, _ in fit]
                cum = list(itertools.accumulate(w for _, w in fit))
                if len(vals) == 1:
                    only = vals[0]
                    return lambda g: only
                return lambda g: g.rnd.choices(vals, cum_weights=cum)[0]
        bound = self.plan.bounds.get(path)
        if bound is not None:
            schema = _bounded(schema, bound)
        t = schema.get("type")
        nullable = schema.get("nullable") is True
        if isinstance(t, list):
            real = [x for x in t if x != "null"]
            if len(real) != 1 or real[0] not in _TYPES:
                return lambda g: g.drawn(schema, name, depth, path)
            nullable = nullable or "null" in t
            t = real[0]
        if t not in _TYPES:
            return lambda g: g.drawn(schema, name, depth, path)
        make = getattr(self, "make_" + t)(schema, name, depth, path)
        if make is None:
            return lambda g: g.drawn(schema, name, depth, path)
        if nullable:
            return lambda g: None if g.rnd.random() < NULL_RATE else make(g)
        return make

    def make_null(self, schema, name, depth, path):
        return lambda g: None

    def make_boolean(self, schema, name, depth, path):
        return lambda g: g.rnd.random() < 0.5

    def make_object(self, schema, name, depth, path):
        props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        required = [r for r in schema.get("required") or [] if isinstance(r, str)]
        extra = schema.get("additionalProperties")
        if any(r not in props for r in required) or (not props and isinstance(extra, dict) and extra):
            return None
        keep_all = depth < MAX_DEPTH
        children = []
        for prop, sub in props.items():
            if keep_all or prop in required:
                p = f"{path}.{prop}" if path else prop
                flat = sub if isinstance(sub, dict) else {}
                children.append((prop, p, self.node(sub, prop, depth + 1, p), flat))

        def make(g):
            out = {}
            at = g.at
            for prop, p, node, flat in children:
                v = node(g)
                if p in at:
                    ok, c = coerce_deep(at[p], g.flatten(flat))
                    if ok:
                        v = c
                out[prop] = v
            return out

        return make

    def make_array(self, schema, name, depth, path):
        items = schema.get("items", True)
        if not isinstance(items, dict):
            return None
        lo = schema.get("minItems")
        lo = min(max(lo, 0), MAX_COUNT) if isinstance(lo, int) else 0
        hi = schema.get("maxItems")
        hi = min(int(hi), max(lo, MAX_ITEMS)) if isinstance(hi, int) else max(lo, MAX_ITEMS)
        least = min(max(lo, 1), hi)
        item = self.node(items, _singular(name), depth + 1, path + "[]")
        if depth >= MAX_DEPTH:
            return lambda g: [item(g) for _ in range(lo)]

        def count(g) -> int:
            """How many items: drawn, but no more than the minimum once the budget is spent
            (nested arrays multiply their lengths: see MAX_VALUES)."""
            g.budget -= 1
            return max(lo, min(g.rnd.randint(least, hi), g.budget))

        if not _is_object(items) or "id" not in (items.get("properties") or {}):
            return lambda g: [item(g) for _ in range(count(g))]

        def distinct(g):
            """Items are told apart by their id: one drawn twice from the ids seen is one item."""
            out, ids = [], set()
            for _ in range(count(g)):
                v = item(g)
                key = _freeze(v.get("id")) if isinstance(v, dict) else None
                if key not in ids or len(out) < lo:
                    ids.add(key)
                    out.append(v)
            return out

        return distinct

    def make_string(self, schema, name, depth, path):
        fmt = schema.get("format")
        sized = "minLength" in schema or "maxLength" in schema
        by_format = isinstance(fmt, str) and fmt in _FORMATS
        rule = None if by_format else _name_rule(name, "string") if name else None

        def make(g):
            if by_format:
                s = g.by_format(fmt)
            elif rule is not None:
                s = rule(g)
            else:
                s = g.draw("word") if g.rnd.random() < 0.5 else g.draw("words")
            return g.fit_length(s, schema) if sized else s

        return make

    def make_integer(self, schema, name, depth, path):
        return self._number(schema, name, True)

    def make_number(self, schema, name, depth, path):
        return self._number(schema, name, False)

    def _number(self, schema, name, integer):
        rule = _name_rule(name, "integer" if integer else "number") if name else None
        bounded = any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"))

        def make(g):
            v = rule(g) if rule is not None else None
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                v = g.rnd.randint(1, 1000) if integer else round(g.rnd.uniform(0, 1000), 2)
            if bounded:
                v = g.clamp(v if integer else float(v), schema, integer=integer)
            return int(v) if integer else v

        return make


_FORMATS = frozenset({
    "date-time", "date", "time", "email", "idn-email", "uuid", "uri", "url", "iri", "uri-reference",
    "iri-reference", "uriref", "hostname", "idn-hostname", "ipv4", "ipv6", "byte", "password", "duration", "regex",
})


_plans: OrderedDict[tuple, tuple] = OrderedDict()  # key -> (weakref to the endpoint, plan)
_plans_lock = threading.Lock()
NO_SCHEMA = object()  # `learned` finds no JSON schema for this status


def plan(ep, status: int) -> Plan | None:
    """The plan of a learned endpoint's response of `status` (an `Endpoint`), None when no
    schema was learned; cached until its samples change."""
    key = (id(ep), ep.id, status, ep.response_samples(status))
    with _plans_lock:
        hit = _plans.get(key)
        if hit is not None and hit[0]() is ep:  # the same endpoint object, not one at its old address
            _plans.move_to_end(key)
            return hit[1]
    schema = ep.response_schema(status)
    if schema is None:
        return None
    p = Plan(schema, ep.stats.values.get(str(status)))
    with _plans_lock:
        _plans[key] = (weakref.ref(ep), p)
        if len(_plans) > PLANS:
            _plans.popitem(last=False)
    return p


def learned(ep, status: int, *, seed: int = 0, key: str = "", params: dict | None = None,
            body: bytes = b"", content_type: str = "") -> object:
    """A body for a request to a learned endpoint, answered with `status`: its path's
    parameters `params`, its own `body` carried in. NO_SCHEMA when no JSON schema was
    learned for that status."""
    p = plan(ep, status)
    if p is None:
        return NO_SCHEMA
    return synthesize(p.schema, seed=seed, key=key, overrides=params, learned=p,
                      request=_request_json(body, content_type))


def _request_json(body: bytes, content_type: str) -> Any:
    if not body or (body[:1] not in (b"{", b"[") and "json" not in content_type):
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None  # not JSON after all: nothing to carry


class _Generator:
    def __init__(self, rnd: random.Random, root: Any, learned: Plan | None = None):
        self.rnd = rnd
        self.root = root
        self.refs: dict[str, int] = {}
        self.plan = learned
        self.at: dict[str, Any] = {}  # field path -> the raw value the request gives it
        self.budget = MAX_VALUES

    def draw(self, kind: str) -> Any:
        return _pools.draw(self.rnd, kind)

    # -- the request's values -------------------------------------------------------

    def carry(self, schema: Any, overrides: dict | None, request: Any) -> None:
        """Where the request's values go: path parameters into the fields that carried them
        in the learned bodies, else (and body fields) into the fields of their names at the
        top or in the envelope (the one object property of the top)."""
        if not overrides and not isinstance(request, dict):
            return
        plan = self.plan
        envelope = plan.envelope(self) if plan is not None and plan.schema is schema else self.envelope_of(schema)
        at = self.at
        named: list[tuple[str, Any]] = []
        carriers = plan.carriers if plan is not None else {}
        for name, raw in (overrides or {}).items():
            paths = carriers.get(name)
            if paths:
                for p in paths:
                    at.setdefault(p, raw)
            else:
                named.append((name, raw))
        if isinstance(request, dict):
            named.extend((k, v) for k, v in request.items() if not isinstance(v, dict))
            for v in request.values():
                if isinstance(v, dict):  # the request's own envelope
                    named.extend(v.items())
        for name, raw in named:
            at.setdefault(name, raw)
            if envelope:
                at.setdefault(f"{envelope}.{name}", raw)

    def envelope_of(self, schema: Any) -> str | None:
        """The one object-valued property of the top object (`{"post": {...}, "count": 2}`)."""
        top = self.flatten(schema)
        if isinstance(top, dict):
            for key in ("oneOf", "anyOf"):
                if isinstance(top.get(key), list) and top[key]:
                    top = _merge({k: v for k, v in top.items() if k != key}, self.flatten(top[key][0]))
        props = top.get("properties") if isinstance(top, dict) and isinstance(top.get("properties"), dict) else {}
        objects = [k for k, v in props.items() if _is_object(self.flatten(v))]
        return objects[0] if len(objects) == 1 else None

    # -- schema plumbing ------------------------------------------------------------

    def deref(self, ref: str) -> Any:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise SynthError(f"only local $refs are supported, not {ref!r}")
        node = self.root
        for part in ref[1:].split("/")[1:] if ref != "#" else []:
            part = part.replace("~1", "/").replace("~0", "~")
            try:
                node = node[int(part)] if isinstance(node, list) else node[part]
            except (KeyError, IndexError, ValueError, TypeError):
                raise SynthError(f"$ref {ref!r} not found in the root document") from None
        return node

    def flatten(self, schema: Any, depth: int = 0) -> Any:
        """Resolve a $ref and merge an allOf, so the result's own keywords say it all."""
        if not isinstance(schema, dict) or depth > 20:
            return schema
        if "$ref" in schema:
            target = self.deref(schema["$ref"])
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            schema = _merge(self.flatten(target, depth + 1), rest) if rest else self.flatten(target, depth + 1)
        if isinstance(schema, dict) and isinstance(schema.get("allOf"), list):
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for sub in schema["allOf"]:
                merged = _merge(merged, self.flatten(sub, depth + 1))
            schema = merged
        return schema

    # -- values ---------------------------------------------------------------------

    def value(self, schema: Any, name: str, depth: int, path: str = "") -> Any:
        v = self.drawn(schema, name, depth, path)
        if path in self.at:
            ok, coerced = coerce_deep(self.at[path], self.flatten(schema) if isinstance(schema, dict) else {})
            if ok:
                return coerced
        return v

    def drawn(self, schema: Any, name: str, depth: int, path: str) -> Any:
        self.budget -= 1
        if schema is True or schema == {}:
            if _snake(name).startswith(("is_", "has_")):
                return self.rnd.random() < 0.5
            return self.by_name(name, "string", None) or self.draw("word")
        if schema is False or not isinstance(schema, dict):
            return None
        ref = schema.get("$ref")
        if isinstance(ref, str):
            if self.refs.get(ref, 0) >= MAX_REF_DEPTH:
                return self.minimal(schema)
            self.refs[ref] = self.refs.get(ref, 0) + 1
            try:
                return self.drawn(self.flatten(schema), name, depth + 1, path)
            finally:
                self.refs[ref] -= 1
        if "allOf" in schema:
            return self.drawn(self.flatten(schema), name, depth, path)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            choices = [v for v in schema["enum"] if v is not None] or schema["enum"]
            return self.rnd.choice(choices)
        for key in ("oneOf", "anyOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                return self.drawn(self.branch(schema, key, branches), name, depth, path)
        plan = self.plan
        if plan is not None:
            picked = plan.choices.get(path)
            if picked is not None:  # a field that took few values takes one of them
                vals, cum = picked
                v = self.rnd.choices(vals, cum_weights=cum)[0]
                if _fits(v, schema):
                    return v
            bound = plan.bounds.get(path)
            if bound is not None:  # ... and one that took many stays in their range
                schema = _bounded(schema, bound)
        t = self.pick_type(schema)
        if t == "null":
            return None
        return getattr(self, "make_" + t.replace("-", "_"))(schema, name, depth, path)

    def branch(self, schema: dict, key: str, branches: list) -> dict:
        """The chosen anyOf/oneOf branch with the parent's other keywords merged in."""
        real = [b for b in branches if not (isinstance(b, dict) and b.get("type") == "null")]
        real = real or branches
        pick = real[0] if self.rnd.random() < 0.8 else self.rnd.choice(real)
        rest = {k: v for k, v in schema.items() if k not in ("oneOf", "anyOf")}
        return _merge(rest, self.flatten(pick)) if rest else pick

    def pick_type(self, schema: dict) -> str:
        t = schema.get("type")
        if isinstance(t, list):
            real = [x for x in t if x != "null" and x in _TYPES]
            if "null" in t and (not real or self.rnd.random() < NULL_RATE):
                return "null"
            if not real:
                return _infer_type(schema)
            return real[0] if len(real) == 1 or self.rnd.random() < 0.8 else self.rnd.choice(real)
        if t in _TYPES:
            if schema.get("nullable") is True and self.rnd.random() < NULL_RATE:
                return "null"
            return t
        return _infer_type(schema)

    def minimal(self, schema: Any, depth: int = 0) -> Any:
        """The smallest value a recursive schema allows, to stop the recursion."""
        target = self.flatten(schema)
        if not isinstance(target, dict) or depth > 4:
            return None
        t = target.get("type")
        if target.get("nullable") is True or (isinstance(t, list) and "null" in t):
            return None
        t = t if isinstance(t, str) else _infer_type(target)
        if t == "array":
            return []
        if t == "object":
            props = target.get("properties") or {}
            return {k: self.minimal(props.get(k, True), depth + 1) for k in target.get("required") or []}
        return self.make_any_scalar(target, t)

    def make_any_scalar(self, schema: dict, t: str) -> Any:
        maker = getattr(self, "make_" + t, None)
        return maker(schema, "", MAX_DEPTH + 1, "") if maker and t not in ("object", "array") else None

    def make_object(self, schema: dict, name: str, depth: int, path: str = "") -> dict:
        props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        required = [r for r in schema.get("required") or [] if isinstance(r, str)]
        out: dict = {}
        keep_all = depth < MAX_DEPTH and self.budget > 0
        for prop, sub in props.items():
            if keep_all or prop in required:
                out[prop] = self.value(sub, prop, depth + 1, f"{path}.{prop}" if path else prop)
        extra = schema.get("additionalProperties")
        for prop in required:
            if prop not in out:
                sub = extra if isinstance(extra, dict) else True
                out[prop] = self.value(sub, prop, depth + 1, f"{path}.{prop}" if path else prop)
        if not props and isinstance(extra, dict) and extra and keep_all:
            for _ in range(self.rnd.randint(1, 3)):
                out.setdefault(self.draw("word"), self.value(extra, "", depth + 1, path + ".*"))
        want = schema.get("minProperties")
        if isinstance(want, int) and extra is not False:
            want = min(want, MAX_COUNT)
            while len(out) < want:
                out[f"{self.draw('word')}_{len(out)}"] = self.value(extra if isinstance(extra, dict) else True, "", depth + 1, path + ".*")
        return out

    def make_array(self, schema: dict, name: str, depth: int, path: str = "") -> list:
        lo = schema.get("minItems")
        lo = min(max(lo, 0), MAX_COUNT) if isinstance(lo, int) else 0
        hi = schema.get("maxItems")
        hi = min(int(hi), max(lo, MAX_ITEMS)) if isinstance(hi, int) else max(lo, MAX_ITEMS)
        if depth >= MAX_DEPTH:
            n = lo
        else:
            n = self.rnd.randint(min(max(lo, 1), hi), hi)
            n = max(lo, min(n, self.budget))  # the budget spent: no more than the minimum
        prefix = schema.get("prefixItems")
        items = schema.get("items", True)
        if isinstance(items, list):  # draft 4 tuple form
            prefix, items = items, schema.get("additionalItems", True)
        prefix = prefix if isinstance(prefix, list) else []
        if items is False:
            n = min(n, len(prefix))
        n = max(n, min(lo, len(prefix)) if items is False else lo)
        item_name = _singular(name)
        item_path = path + "[]"
        out: list = []
        seen: set = set()
        attempts = 0
        while len(out) < n and attempts < n * 10 + 10:
            attempts += 1
            sub = prefix[len(out)] if len(out) < len(prefix) else items
            v = self.value(sub, item_name, depth + 1, item_path)
            if schema.get("uniqueItems"):
                marker = _freeze(v)
                if marker in seen:
                    continue
                seen.add(marker)
            out.append(v)
        return out

    def make_string(self, schema: dict, name: str, depth: int, path: str = "") -> str:
        fmt = schema.get("format")
        s = self.by_format(fmt) if isinstance(fmt, str) else None
        pattern = schema.get("pattern")
        if s is None and isinstance(pattern, str):
            s = self.from_pattern(pattern)
        if s is None:
            s = self.by_name(name, "string", None)
            if not isinstance(s, str):
                s = self.draw("word") if self.rnd.random() < 0.5 else self.draw("words")
        if isinstance(pattern, str) and not _search(pattern, s):
            s = self.from_pattern(pattern) or s
        return self.fit_length(s, schema)

    def fit_length(self, s: str, schema: dict) -> str:
        lo = schema.get("minLength")
        hi = schema.get("maxLength")
        if isinstance(lo, int) and len(s) < lo:
            lo = min(lo, MAX_LENGTH)
            s += "".join(self.rnd.choice(string.ascii_lowercase) for _ in range(lo - len(s)))
        if isinstance(hi, int) and len(s) > hi:
            s = s[: max(hi, 0)]
        return s

    def make_integer(self, schema: dict, name: str, depth: int, path: str = "") -> int:
        v = self.by_name(name, "integer", schema)
        if not isinstance(v, int) or isinstance(v, bool):
            v = self.rnd.randint(1, 1000)
        return int(self.clamp(v, schema, integer=True))

    def make_number(self, schema: dict, name: str, depth: int, path: str = "") -> float:
        v = self.by_name(name, "number", schema)
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            v = round(self.rnd.uniform(0, 1000), 2)
        return self.clamp(float(v), schema, integer=False)

    def make_boolean(self, schema: dict, name: str, depth: int, path: str = "") -> bool:
        return self.rnd.random() < 0.5

    def clamp(self, v: float, schema: dict, *, integer: bool) -> float:
        lo, hi = schema.get("minimum"), schema.get("maximum")
        xlo, xhi = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
        step = 1 if integer else 0.01
        if xlo is True and _num(lo):  # draft 4: a flag on minimum
            xlo, lo = lo, None
        if xhi is True and _num(hi):
            xhi, hi = hi, None
        if _num(xlo):
            lo = max(lo, xlo + step) if _num(lo) else xlo + step
        if _num(xhi):
            hi = min(hi, xhi - step) if _num(hi) else xhi - step
        if integer:
            lo = _ceil(lo) if _num(lo) else None
            hi = _floor(hi) if _num(hi) else None
        if _num(lo) and _num(hi) and lo > hi:
            hi = lo
        if _num(lo) and v < lo or _num(hi) and v > hi:
            a = lo if _num(lo) else hi - 1000
            b = hi if _num(hi) else lo + 1000
            v = self.rnd.randint(a, b) if integer else round(self.rnd.uniform(a, b), 2)
            v = min(max(v, a), b)
        m = schema.get("multipleOf")
        if _num(m) and m > 0:
            v = self.multiple(v, m, lo, hi, integer)
        return v

    @staticmethod
    def multiple(v: float, m: float, lo: Any, hi: Any, integer: bool) -> float:
        """A multiple of m near v, inside the bounds, that survives float division."""
        k = round(v / m)
        fallback = None
        for c in (k, k + 1, k - 1, *range(k + 2, k + 50)):
            x = c * m
            x = int(round(x)) if integer else round(x, 10)
            if (_num(lo) and x < lo) or (_num(hi) and x > hi):
                continue
            fallback = x if fallback is None else fallback
            if float(x / m).is_integer():
                return x
        return fallback if fallback is not None else v

    # -- content --------------------------------------------------------------------

    def by_format(self, fmt: str) -> str | None:
        r = self.rnd
        match fmt:
            case "date-time":
                return self.moment().isoformat()
            case "date":
                return self.moment().date().isoformat()
            case "time":
                return self.draw("time")
            case "email" | "idn-email":
                return self.draw("email")
            case "uuid":
                return str(uuid.UUID(int=r.getrandbits(128), version=4))
            case "uri" | "url" | "iri" | "uri-reference" | "iri-reference" | "uriref":
                return self.draw("uri")
            case "hostname" | "idn-hostname":
                return self.draw("domain_name")
            case "ipv4":
                return self.draw("ipv4")
            case "ipv6":
                return self.draw("ipv6")
            case "byte":
                return base64.b64encode(r.randbytes(12)).decode()
            case "password":
                return self.draw("password")
            case "duration":
                return f"P{r.randint(1, 30)}D"
            case "regex":
                return "^[a-z]+$"
        return None

    def moment(self) -> datetime:
        """A time in a fixed window: relative windows would change the output day by day."""
        return datetime.fromtimestamp(self.rnd.randint(_EPOCH_START, _EPOCH_END), timezone.utc)

    def by_name(self, name: str, t: str, schema: dict | None) -> Any:
        """A value suggested by a field's name, of JSON type `t`, or None."""
        if not name:
            return None
        rule = _name_rule(name, t)
        return rule(self) if rule is not None else None

    def from_pattern(self, pattern: str) -> str | None:
        try:
            parsed = _sre.parse(pattern)
        except (re.error, RecursionError, OverflowError):
            return None
        try:
            s = self._emit(parsed, 0)
        except (_Unsupported, RecursionError, ValueError, IndexError):
            return None
        return s if _search(pattern, s) else None

    def _emit(self, items, depth: int) -> str:
        if depth > 50:
            raise _Unsupported
        out = []
        r = self.rnd
        for op, av in items:
            name = str(op)
            if name == "LITERAL":
                out.append(chr(av))
            elif name == "NOT_LITERAL":
                out.append(next(c for c in "abcxyz0" if ord(c) != av))
            elif name == "ANY":
                out.append(r.choice(string.ascii_letters))
            elif name == "IN":
                out.append(self._one_of_set(av))
            elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
                lo, hi, sub = av
                if lo > MAX_COUNT:
                    raise _Unsupported
                hi = min(hi, lo + 3) if hi != _sre.MAXREPEAT else lo + r.randint(0, 3)
                for _ in range(r.randint(lo, max(lo, hi))):
                    out.append(self._emit(sub, depth + 1))
            elif name == "SUBPATTERN":
                out.append(self._emit(av[-1], depth + 1))
            elif name == "ATOMIC_GROUP":
                out.append(self._emit(av, depth + 1))
            elif name == "BRANCH":
                out.append(self._emit(r.choice(av[1]), depth + 1))
            elif name == "CATEGORY":
                out.append(_category(str(av), r))
            elif name == "AT":
                continue
            else:  # lookarounds, backreferences, conditionals
                raise _Unsupported
        return "".join(out)

    def _one_of_set(self, items) -> str:
        chars: list[str] = []
        negate = False
        for op, av in items:
            name = str(op)
            if name == "NEGATE":
                negate = True
            elif name == "LITERAL":
                chars.append(chr(av))
            elif name == "RANGE":
                lo, hi = av
                chars.extend(chr(c) for c in range(lo, min(hi, lo + 200) + 1))
            elif name == "CATEGORY":
                chars.append(_category(str(av), self.rnd))
        if negate:
            pool = [c for c in string.ascii_letters + string.digits if c not in chars]
            return self.rnd.choice(pool) if pool else "~"
        if not chars:
            raise _Unsupported
        return self.rnd.choice(chars)

class _Unsupported(Exception):
    pass


_TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")


def coerce(raw: Any, schema: dict) -> tuple[bool, Any]:
    """(True, raw converted to the schema's type) or (False, None) when it cannot be."""
    t = schema.get("type")
    types = t if isinstance(t, list) else [t] if isinstance(t, str) else []
    if not types:
        types = [_infer_type(schema)] if schema else []
        if not schema:
            return True, raw
    if isinstance(schema.get("enum"), list) and raw not in schema["enum"]:
        matches = [e for e in schema["enum"] if str(e) == str(raw)]
        return (True, matches[0]) if matches else (False, None)
    for t in types:
        if t == "null" and raw is None:
            return True, None
        if t == "string":
            if isinstance(raw, str):
                return True, raw
            if isinstance(raw, (int, float)) and not isinstance(raw, bool):
                return True, str(raw)
        if t == "integer":
            if isinstance(raw, int) and not isinstance(raw, bool):
                return True, raw
            if isinstance(raw, float) and raw.is_integer():
                return True, int(raw)
            if isinstance(raw, str) and len(raw) < 100 and _INTEGER_TEXT.fullmatch(raw):
                return True, int(raw)
        if t == "number":
            if isinstance(raw, (int, float)) and not isinstance(raw, bool):
                return True, raw
            if isinstance(raw, str):
                try:
                    f = float(raw)
                except ValueError:
                    continue
                if f == f and f not in (float("inf"), float("-inf")):
                    return True, int(f) if _INTEGER_TEXT.fullmatch(raw) else f
        if t == "boolean":
            if isinstance(raw, bool):
                return True, raw
            if isinstance(raw, str) and raw.lower() in ("true", "false", "1", "0"):
                return True, raw.lower() in ("true", "1")
        if t == "object" and isinstance(raw, dict):
            return True, raw
        if t == "array" and isinstance(raw, list):
            return True, raw
    return False, None


def coerce_deep(raw: Any, schema: dict) -> tuple[bool, Any]:
    """`coerce`, and for an array every item coerced to the items' schema; an object is never
    carried whole (it could hold fields the schema never saw)."""
    if isinstance(raw, dict):
        return False, None
    if isinstance(raw, list):
        items = schema.get("items")
        if not isinstance(items, dict) or _is_object(items) or not _fits(raw, schema):
            return False, None
        out = []
        for x in raw:
            ok, c = coerce(x, items)
            if not ok or isinstance(c, (dict, list)):
                return False, None
            out.append(c)
        return True, out
    return coerce(raw, schema)


_JSON_TYPES = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "null": (type(None),), "array": (list,), "object": (dict,),
}


def _fits(v: Any, schema: dict) -> bool:
    """Whether a value learned for a field has a type the schema allows there."""
    t = schema.get("type")
    if t is None:
        return True
    for name in t if isinstance(t, list) else (t,):
        kinds = _JSON_TYPES.get(name)
        if kinds and isinstance(v, kinds) and (name in ("boolean", "null") or not isinstance(v, bool)):
            if name != "integer" or not isinstance(v, float):
                return True
    return False


def _is_object(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    t = schema.get("type")
    return t == "object" or (isinstance(t, list) and "object" in t) or (t is None and "properties" in schema)


def _bounded(schema: dict, bound: dict) -> dict:
    """The schema with a learned range: numbers between the least and greatest seen, strings
    as long as those seen (not a string with a format or pattern: they have their shape)."""
    out = dict(schema)
    for k, v in bound.items():
        if k in out:
            continue
        if k in ("minLength", "maxLength") and ("format" in schema or "pattern" in schema):
            continue
        out[k] = v
    return out


@functools.lru_cache(maxsize=4096)
def _name_rule(name: str, t: str):
    """How a field of this name and JSON type gets a value (a function of the generator),
    or None: decided once per name, not on every value."""
    n = _snake(name)
    if t == "integer" or t == "number":
        num = t == "number"
        if n in ("id", "uid", "pid") or n.endswith("_id"):
            return lambda g: g.rnd.randint(1, 10000)
        if n in ("age",):
            return lambda g: g.rnd.randint(18, 90)
        if "count" in n or n.startswith(("num_", "total")) or n in ("quantity", "qty", "size", "limit"):
            return lambda g: g.rnd.randint(0, 100)
        if n in ("lat", "latitude"):
            return (lambda g: round(g.rnd.uniform(-90, 90), 6)) if num else (lambda g: g.rnd.randint(-90, 90))
        if n in ("lng", "lon", "long", "longitude"):
            return (lambda g: round(g.rnd.uniform(-180, 180), 6)) if num else (lambda g: g.rnd.randint(-180, 180))
        if any(w in n for w in ("price", "amount", "cost", "total", "balance", "fee")):
            return (lambda g: round(g.rnd.uniform(1, 1000), 2)) if num else (lambda g: g.rnd.randint(1, 1000))
        if n in ("year",):
            return lambda g: g.rnd.randint(1990, 2025)
        if n.endswith("_at") or n in ("timestamp", "time", "date"):
            return lambda g: g.rnd.randint(_EPOCH_START, _EPOCH_END)
        return None
    if t != "string":
        return None

    def pool(kind):
        return lambda g: g.draw(kind)

    if n == "email" or n.endswith("_email") or n == "mail":
        return pool("email")
    if n in ("first_name", "firstname", "given_name"):
        return pool("first_name")
    if n in ("last_name", "lastname", "surname", "family_name"):
        return pool("last_name")
    if n in ("name", "full_name", "fullname", "display_name", "author", "owner"):
        return pool("name")
    if n in ("username", "user_name", "login", "handle", "nickname"):
        return pool("user_name")
    if n in ("url", "website", "homepage", "link", "href") or n.endswith("_url"):
        return pool("url")
    if n in ("avatar", "avatar_url", "image", "photo", "picture", "thumbnail"):
        return pool("image_url")
    if "phone" in n or n in ("mobile", "fax"):
        return pool("phone_number")
    if n == "city":
        return pool("city")
    if n == "country":
        return pool("country")
    if n in ("country_code",):
        return pool("country_code")
    if n in ("address", "street", "street_address", "address1", "address_line1"):
        return pool("street_address")
    if n in ("zip", "zipcode", "zip_code", "postcode", "postal_code"):
        return pool("postcode")
    if n == "status":
        return lambda g: g.rnd.choice(_STATUS_WORDS)
    if n == "state":
        return lambda g: g.rnd.choice(_STATUS_WORDS[:4])
    if n in ("company", "company_name", "organization", "organisation"):
        return pool("company")
    if n in ("title", "headline", "subject", "summary"):
        return pool("title")
    if n in ("description", "body", "bio", "text", "content", "message", "comment", "about"):
        return pool("paragraph")
    if n.endswith("_at") or n in ("timestamp", "datetime", "created", "updated", "modified"):
        return lambda g: g.moment().isoformat()
    if n == "date" or n.endswith("_date") or n in ("birthday", "dob"):
        return lambda g: g.moment().date().isoformat()
    if n == "id" or n.endswith("_id") or n == "uuid" or n == "guid":
        return lambda g: str(uuid.UUID(int=g.rnd.getrandbits(128), version=4))
    if n in ("currency", "currency_code"):
        return pool("currency_code")
    if n in ("color", "colour"):
        return pool("color_name")
    if n in ("slug",):
        return pool("slug")
    if n in ("token", "password", "secret"):
        return pool("token")
    if n in ("language", "lang", "locale"):
        return lambda g: g.rnd.choice(["en", "fr", "de", "es", "ja"])
    if n in ("ip", "ip_address"):
        return pool("ipv4")
    if n in ("tag", "category", "type", "kind", "role"):
        return pool("word")
    return None


def _infer_type(schema: dict) -> str:
    if "properties" in schema or "additionalProperties" in schema or "required" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema or "minItems" in schema:
        return "array"
    if any(k in schema for k in ("minimum", "maximum", "multipleOf", "exclusiveMinimum")):
        return "number"
    return "string"


def _merge(a: dict, b: Any) -> dict:
    """allOf-style merge: properties and required are united, types intersected, and any
    other keyword keeps its first value."""
    if not isinstance(b, dict):
        return a
    out = dict(a)
    for k, v in b.items():
        if k == "properties" and isinstance(v, dict):
            out[k] = {**(out.get(k) or {}), **v}
        elif k == "required" and isinstance(v, list):
            out[k] = list(dict.fromkeys([*(out.get(k) or []), *v]))
        elif k not in out:
            out[k] = v
        elif k == "type" and out[k] != v:
            mine = out[k] if isinstance(out[k], list) else [out[k]]
            theirs = v if isinstance(v, list) else [v]
            both = [t for t in mine if t in theirs]
            if "integer" in mine + theirs and "number" in mine + theirs and "integer" not in both:
                both.append("integer")
            out[k] = both[0] if len(both) == 1 else both or v
    return out


def _category(cat: str, r) -> str:
    if "NOT_DIGIT" in cat or "NOT_SPACE" in cat:
        return r.choice(string.ascii_letters)
    if "NOT_WORD" in cat:
        return r.choice(" -.")
    if "DIGIT" in cat:
        return r.choice(string.digits)
    if "SPACE" in cat:
        return " "
    return r.choice(string.ascii_letters + string.digits + "_")


def _search(pattern: str, s: str) -> bool:
    try:
        return re.search(pattern, s) is not None
    except re.error:
        return True  # an invalid pattern cannot be honoured; any string will do


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_INTEGER_TEXT = re.compile(r"\s*[+-]?\d+\s*")


@functools.lru_cache(maxsize=4096)
def _snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower().replace("-", "_")


def _singular(name: str) -> str:
    if name.endswith("ies"):
        return name[:-3] + "y"
    if name.endswith("s") and not name.endswith("ss"):
        return name[:-1]
    return name


def _freeze(v: Any) -> Any:
    if isinstance(v, dict):
        return ("d", tuple(sorted((k, _freeze(x)) for k, x in v.items())))
    if isinstance(v, list):
        return ("l", tuple(_freeze(x) for x in v))
    return (type(v).__name__, v)


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _ceil(x: float) -> int:
    return int(x) if x == int(x) else int(x) + (1 if x > 0 else 0)


def _floor(x: float) -> int:
    return int(x) if x == int(x) else int(x) - (1 if x < 0 else 0)
