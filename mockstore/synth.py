"""Make up a plausible value for a JSON Schema, the same one every time.

Mocked responses must look real (an `email` field holds an email, `created_at` a recent
timestamp) and must be reproducible: the same request to the same model gives the same
body, so a test that passed once passes again. Everything random is drawn from one Faker
seeded per call from a stable hash of (seed, key); the Faker itself is built once, because
building one costs a good fraction of a second.

What is understood: type (and type lists, OpenAPI's `nullable`), enum, const, format,
min/max (inclusive and exclusive, draft 4 and later), multipleOf, min/maxLength, pattern (a
small generator over Python's own regex parser), min/maxItems, uniqueItems, prefixItems,
properties, required, additionalProperties, anyOf/oneOf (the first non-null branch, mostly),
allOf (merged), and local `$ref`s (`#/components/schemas/X`, `#/definitions/X`, any JSON
pointer) resolved against `root`, with recursion cut short. Field names steer the values
when the schema leaves room; a `format` wins over a name.
"""

from __future__ import annotations

import base64
import hashlib
import re
import string
import threading
from datetime import datetime, timezone
from typing import Any

from faker import Faker

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

_faker = Faker("en_US")
_lock = threading.Lock()

_EPOCH_START = datetime(2021, 1, 1, tzinfo=timezone.utc)
_EPOCH_END = datetime(2025, 12, 31, tzinfo=timezone.utc)
_STATUS_WORDS = ["active", "pending", "inactive", "completed", "approved", "archived"]


class SynthError(ValueError):
    """The schema cannot be synthesized (it is not a schema, or a $ref cannot be found)."""


def synthesize(
    schema: dict,
    *,
    seed: int = 0,
    key: str = "",
    overrides: dict | None = None,
    root: dict | None = None,
) -> object:
    """A value valid for `schema`, determined by (schema, seed, key, overrides).

    `overrides` force top-level fields by name (`{"id": "42"}`), coerced to the field's
    type; a value that cannot be coerced is ignored."""
    if not isinstance(schema, (dict, bool)):
        raise SynthError(f"a schema must be an object, not {type(schema).__name__}")
    # surrogatepass: a key made of a raw path or body may hold lone surrogates (bytes not UTF-8)
    digest = hashlib.blake2b(f"{seed}\x00{key}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    with _lock:
        _faker.seed_instance(int.from_bytes(digest, "big"))
        gen = _Generator(_faker, root if root is not None else schema)
        try:
            value = gen.value(schema, "", 0)
            if overrides and isinstance(value, dict):
                gen.override(schema, value, overrides)
        except RecursionError:
            raise SynthError("the schema is nested too deeply to synthesize") from None
    return value


class _Generator:
    def __init__(self, fake: Faker, root: Any):
        self.fake = fake
        self.rnd = fake.random
        self.root = root
        self.refs: dict[str, int] = {}
        self.budget = MAX_VALUES

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

    def value(self, schema: Any, name: str, depth: int) -> Any:
        self.budget -= 1
        if schema is True or schema == {}:
            if _snake(name).startswith(("is_", "has_")):
                return self.rnd.random() < 0.5
            return self.by_name(name, "string", None) or self.fake.word()
        if schema is False or not isinstance(schema, dict):
            return None
        ref = schema.get("$ref")
        if isinstance(ref, str):
            if self.refs.get(ref, 0) >= MAX_REF_DEPTH:
                return self.minimal(schema)
            self.refs[ref] = self.refs.get(ref, 0) + 1
            try:
                return self.value(self.flatten(schema), name, depth + 1)
            finally:
                self.refs[ref] -= 1
        if "allOf" in schema:
            return self.value(self.flatten(schema), name, depth)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            choices = [v for v in schema["enum"] if v is not None] or schema["enum"]
            return self.rnd.choice(choices)
        for key in ("oneOf", "anyOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                return self.value(self.branch(schema, key, branches), name, depth)
        t = self.pick_type(schema)
        if t == "null":
            return None
        return getattr(self, "make_" + t.replace("-", "_"))(schema, name, depth)

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
        return maker(schema, "", MAX_DEPTH + 1) if maker and t not in ("object", "array") else None

    def make_object(self, schema: dict, name: str, depth: int) -> dict:
        props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        required = [r for r in schema.get("required") or [] if isinstance(r, str)]
        out: dict = {}
        keep_all = depth < MAX_DEPTH and self.budget > 0
        for prop, sub in props.items():
            if keep_all or prop in required:
                out[prop] = self.value(sub, prop, depth + 1)
        extra = schema.get("additionalProperties")
        for prop in required:
            if prop not in out:
                sub = extra if isinstance(extra, dict) else True
                out[prop] = self.value(sub, prop, depth + 1)
        if not props and isinstance(extra, dict) and extra and keep_all:
            for _ in range(self.rnd.randint(1, 3)):
                out.setdefault(self.fake.word(), self.value(extra, "", depth + 1))
        want = schema.get("minProperties")
        if isinstance(want, int) and extra is not False:
            want = min(want, MAX_COUNT)
            while len(out) < want:
                out[f"{self.fake.word()}_{len(out)}"] = self.value(extra if isinstance(extra, dict) else True, "", depth + 1)
        return out

    def make_array(self, schema: dict, name: str, depth: int) -> list:
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
        out: list = []
        seen: set = set()
        attempts = 0
        while len(out) < n and attempts < n * 10 + 10:
            attempts += 1
            sub = prefix[len(out)] if len(out) < len(prefix) else items
            v = self.value(sub, item_name, depth + 1)
            if schema.get("uniqueItems"):
                marker = _freeze(v)
                if marker in seen:
                    continue
                seen.add(marker)
            out.append(v)
        return out

    def make_string(self, schema: dict, name: str, depth: int) -> str:
        fmt = schema.get("format")
        s = self.by_format(fmt) if isinstance(fmt, str) else None
        pattern = schema.get("pattern")
        if s is None and isinstance(pattern, str):
            s = self.from_pattern(pattern)
        if s is None:
            s = self.by_name(name, "string", None)
            if not isinstance(s, str):
                s = self.fake.word() if self.rnd.random() < 0.5 else self.fake.sentence(nb_words=3).rstrip(".")
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

    def make_integer(self, schema: dict, name: str, depth: int) -> int:
        v = self.by_name(name, "integer", schema)
        if not isinstance(v, int) or isinstance(v, bool):
            v = self.rnd.randint(1, 1000)
        return int(self.clamp(v, schema, integer=True))

    def make_number(self, schema: dict, name: str, depth: int) -> float:
        v = self.by_name(name, "number", schema)
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            v = round(self.rnd.uniform(0, 1000), 2)
        return self.clamp(float(v), schema, integer=False)

    def make_boolean(self, schema: dict, name: str, depth: int) -> bool:
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
        f = self.fake
        match fmt:
            case "date-time":
                return self.moment().isoformat()
            case "date":
                return self.moment().date().isoformat()
            case "time":
                return f.time() + "Z"
            case "email" | "idn-email":
                return f.email()
            case "uuid":
                return f.uuid4()
            case "uri" | "url" | "iri" | "uri-reference" | "iri-reference" | "uriref":
                return f.url() + f.uri_path()
            case "hostname" | "idn-hostname":
                return f.domain_name()
            case "ipv4":
                return f.ipv4()
            case "ipv6":
                return f.ipv6()
            case "byte":
                return base64.b64encode(f.binary(length=12)).decode()
            case "password":
                return f.password(length=12)
            case "duration":
                return f"P{self.rnd.randint(1, 30)}D"
            case "regex":
                return "^[a-z]+$"
        return None

    def moment(self) -> datetime:
        """A time in a fixed window: relative windows would change the output day by day."""
        return self.fake.date_time_between(_EPOCH_START, _EPOCH_END, tzinfo=timezone.utc).replace(microsecond=0)

    def by_name(self, name: str, t: str, schema: dict | None) -> Any:
        """A value suggested by a field's name, of JSON type `t`, or None."""
        if not name:
            return None
        n = _snake(name)
        f, r = self.fake, self.rnd
        if t == "integer" or t == "number":
            if n in ("id", "uid", "pid") or n.endswith("_id"):
                return r.randint(1, 10000)
            if n in ("age",):
                return r.randint(18, 90)
            if "count" in n or n.startswith(("num_", "total")) or n in ("quantity", "qty", "size", "limit"):
                return r.randint(0, 100)
            if n in ("lat", "latitude"):
                return float(f.latitude()) if t == "number" else r.randint(-90, 90)
            if n in ("lng", "lon", "long", "longitude"):
                return float(f.longitude()) if t == "number" else r.randint(-180, 180)
            if any(w in n for w in ("price", "amount", "cost", "total", "balance", "fee")):
                return round(r.uniform(1, 1000), 2) if t == "number" else r.randint(1, 1000)
            if n in ("year",):
                return r.randint(1990, 2025)
            if n.endswith("_at") or n in ("timestamp", "time", "date"):
                return int(self.moment().timestamp())
            return None
        if t != "string":
            return None
        if n == "email" or n.endswith("_email") or n == "mail":
            return f.email()
        if n in ("first_name", "firstname", "given_name"):
            return f.first_name()
        if n in ("last_name", "lastname", "surname", "family_name"):
            return f.last_name()
        if n in ("name", "full_name", "fullname", "display_name", "author", "owner"):
            return f.name()
        if n in ("username", "user_name", "login", "handle", "nickname"):
            return f.user_name()
        if n in ("url", "website", "homepage", "link", "href") or n.endswith("_url"):
            return f.url()
        if n in ("avatar", "avatar_url", "image", "photo", "picture", "thumbnail"):
            return f.image_url()
        if "phone" in n or n in ("mobile", "fax"):
            return f.phone_number()
        if n == "city":
            return f.city()
        if n == "country":
            return f.country()
        if n in ("country_code",):
            return f.country_code()
        if n in ("address", "street", "street_address", "address1", "address_line1"):
            return f.street_address()
        if n in ("zip", "zipcode", "zip_code", "postcode", "postal_code"):
            return f.postcode()
        if n in ("state", "status"):
            return r.choice(_STATUS_WORDS) if n == "status" else r.choice(_STATUS_WORDS[:4])
        if n in ("company", "company_name", "organization", "organisation"):
            return f.company()
        if n in ("title", "headline", "subject", "summary"):
            return f.sentence(nb_words=4).rstrip(".")
        if n in ("description", "body", "bio", "text", "content", "message", "comment", "about"):
            return f.paragraph(nb_sentences=2)
        if n.endswith("_at") or n in ("timestamp", "datetime", "created", "updated", "modified"):
            return self.moment().isoformat()
        if n == "date" or n.endswith("_date") or n in ("birthday", "dob"):
            return self.moment().date().isoformat()
        if n == "id" or n.endswith("_id") or n == "uuid" or n == "guid":
            return f.uuid4()
        if n in ("currency", "currency_code"):
            return f.currency_code()
        if n in ("color", "colour"):
            return f.color_name()
        if n in ("slug",):
            return f.slug()
        if n in ("token", "password", "secret"):
            return f.password(length=16, special_chars=False)
        if n in ("language", "lang", "locale"):
            return r.choice(["en", "fr", "de", "es", "ja"])
        if n in ("ip", "ip_address"):
            return f.ipv4()
        if n in ("tag", "category", "type", "kind", "role"):
            return f.word()
        return None

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

    # -- overrides ------------------------------------------------------------------

    def override(self, schema: dict, value: dict, overrides: dict) -> None:
        top = self.flatten(schema)
        if isinstance(top, dict):
            for key in ("oneOf", "anyOf"):
                if isinstance(top.get(key), list) and top[key]:
                    top = _merge({k: v for k, v in top.items() if k != key}, self.flatten(top[key][0]))
        top = top if isinstance(top, dict) else {}
        props = top.get("properties") if isinstance(top.get("properties"), dict) else {}
        extra = top.get("additionalProperties")
        for field, raw in overrides.items():
            if field in props:
                sub = self.flatten(props[field])
            elif field in value or extra is not False:
                sub = self.flatten(extra) if isinstance(extra, dict) else {}
            else:
                continue
            ok, coerced = coerce(raw, sub if isinstance(sub, dict) else {})
            if ok:
                value[field] = coerced


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
