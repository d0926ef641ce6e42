"""What a virtual backend knows: resources, their fields, and how they relate.

Every source (an OpenAPI document, an entity file, learned traffic) compiles to this one
shape, so routing, validation, storage and seeding never care where a resource came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

ON_DELETE = ("cascade", "restrict", "nullify", "none")
TYPES = ("string", "integer", "number", "boolean", "array", "object", "any")

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_SEGMENT = re.compile(r"^[A-Za-z0-9_.~-]+$")


class ModelError(ValueError):
    """A resource definition cannot be used; the message names the place and the fix."""


def check_name(name: Any, what: str = "resource") -> str:
    """Resource names become URL segments and table names: keep them plain."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ModelError(
            f"{what} name {name!r} is not allowed: use letters, digits, '_' or '-' "
            f"(starting with a letter or '_', at most 64 characters)"
        )
    return name


def check_field_name(name: Any) -> str:
    """Field names only live inside JSON, but must still be printable text."""
    if not isinstance(name, str) or not name or len(name) > 128 or any(ord(c) < 32 for c in name):
        raise ModelError(f"field name {name!r} is not allowed: use 1-128 printable characters")
    return name


def check_path(path: Any, what: str = "path") -> str:
    """A collection path: '/a/b', plain segments only (no '..', no parameters)."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise ModelError(f"{what} {path!r} must start with '/'")
    segs = [s for s in path.split("/") if s]
    for s in segs:
        if s in (".", "..") or not _SEGMENT.match(s):
            raise ModelError(f"{what} {path!r}: segment {s!r} is not allowed")
    return "/" + "/".join(segs)


@dataclass
class Reference:
    resource: str
    field: str = "id"
    on_delete: str = "none"


@dataclass
class Field:
    name: str
    type: str = "any"
    format: str | None = None
    required: bool = False
    unique: bool = False
    read_only: bool = False
    write_only: bool = False  # accepted on write, never shown (passwords)
    enum: list | None = None
    ref: Reference | None = None
    rule: Any = None  # a generation rule, see mockstore.vb.seed
    schema: dict | None = None  # the full JSON schema of the value, when a source has one

    def json_schema(self) -> dict:
        if self.schema is not None:
            return self.schema
        s: dict = {}
        if self.type not in ("any", None):
            s["type"] = [self.type, "null"] if not self.required else self.type
        if self.format:
            s["format"] = self.format
        if self.enum:
            s["enum"] = list(self.enum) + ([None] if not self.required else [])
        return s


@dataclass
class Resource:
    name: str
    path: str  # collection path without any base path
    pk: str = "id"
    fields: dict[str, Field] = field(default_factory=dict)
    id_rule: Any = "increment"
    seed_rows: list[dict] = field(default_factory=list)
    count: int = 0  # rows to generate at seeding
    prefixes: list[str] = field(default_factory=lambda: [""])  # base paths (spec servers)
    host: str | None = None
    protected: Any = False  # False | True | "write"
    owner: str | None = None  # field set from the token's user on create
    rules: dict[str, str] = field(default_factory=dict)  # action -> "owner" | "role:NAME"
    envelope: dict | None = None  # {"items": "data", "total": "total"} for wrapped lists
    hidden: bool = False  # junctions: stored, not routed as a collection
    # Shapes learned from real APIs (mockstore.vb.infer); all optional, so other sources ignore them.
    item_key: str | None = None  # one item travels wrapped: {"post": {...}}, both ways
    derive: dict[str, str] = field(default_factory=dict)  # key field -> field it is slugified from
    defaults: dict[str, Any] = field(default_factory=dict)  # what a create gives unsent fields
    stamps: list[str] = field(default_factory=list)  # date-time fields set to now on create
    toggles: dict[str, dict] = field(default_factory=dict)  # /items/{key}/<action>: {"flag", "count", "by"}
    view: list[str] | None = None  # the fields an answer shows (those seen), when known
    nested: bool = False  # routed only under its parent (/posts/{slug}/replies)
    filters: dict[str, str] = field(default_factory=dict)  # query key -> the field it filters (label -> labels)
    newest_first: bool = False  # lists show the last created first
    items_only: bool = False  # only its items were ever requested: no list, no create route
    # Keys the learned session itself created: creating one again replays that create (the
    # row starts afresh) rather than conflicting, so the session runs again as it was learned.
    replayed_keys: set[str] = field(default_factory=set)
    counts: dict[str, str] = field(default_factory=dict)  # field -> nested resource it counts (repliesCount)
    source: str = ""
    why: list[str] = field(default_factory=list)

    @property
    def pk_type(self) -> str:
        f = self.fields.get(self.pk)
        return f.type if f else "any"

    @property
    def segments(self) -> list[str]:
        return [s for s in self.path.split("/") if s]

    def write_schema(self, *, partial: bool = False) -> dict:
        """JSON schema for a request body: required fields are dropped for PATCH."""
        props = {}
        required = []
        for f in self.fields.values():
            props[f.name] = f.json_schema()
            if f.required and not partial and not f.read_only and f.name not in (self.pk, self.owner):
                required.append(f.name)
        return {"type": "object", "properties": props, "required": required}

    def describe(self) -> dict:
        return {
            "name": self.name,
            "path": self.path,
            "prefixes": self.prefixes,
            "primary_key": self.pk,
            "id": self.id_rule,
            "source": self.source,
            "fields": {
                f.name: {
                    k: v
                    for k, v in {
                        "type": f.type,
                        "format": f.format,
                        "required": f.required or None,
                        "unique": f.unique or None,
                        "references": f.ref and f"{f.ref.resource}.{f.ref.field} ({f.ref.on_delete})",
                    }.items()
                    if v
                }
                for f in self.fields.values()
            },
            "seed_rows": len(self.seed_rows),
            "generate": self.count,
            "protected": self.protected,
            **{k: v for k, v in {  # shapes learned from a real API, when there are any
                "item_envelope": self.item_key,
                "list_envelope": self.envelope,
                "key_made_from": self.derive,
                "owner": self.owner,
                "actions": self.toggles,
                "filters": self.filters,
                "counts": self.counts,
                "nested": self.nested or None,
            }.items() if v},
            "why": self.why,
        }


@dataclass
class ManyToMany:
    left: str
    right: str
    junction: str
    left_field: str
    right_field: str


@dataclass
class AgingRule:
    resource: str
    field: str
    max_age: float  # seconds
    action: str = "delete"  # delete | expire
    flag: str = "expired"  # the field set to true by "expire"


@dataclass
class AuthConfig:
    users: str = "users"
    username_field: str = "username"
    password_field: str = "password"
    login: str = "/auth/login"
    register: str | None = "/auth/register"
    prefixes: list[str] = field(default_factory=lambda: [""])
    # Learned from real APIs (see mockstore.vb.infer): credentials and answers wrapped in
    # `item_key`, the token answered in `token_field` beside the `view` fields, the current
    # user at `me`; the user is found by `login_field` at login.
    item_key: str | None = None
    token_field: str | None = None
    view: list[str] | None = None
    me: str | None = None
    login_field: str | None = None


@dataclass
class Model:
    resources: dict[str, Resource] = field(default_factory=dict)
    many: list[ManyToMany] = field(default_factory=list)
    foreign: list[tuple[list[str], list[str]]] = field(default_factory=list)  # (prefixes, template segs)
    auth: AuthConfig | None = None
    aging: list[AgingRule] = field(default_factory=list)

    def add(self, res: Resource) -> None:
        if res.name in self.resources:
            raise ModelError(f"resource {res.name!r} is defined twice")
        self.resources[res.name] = res

    def merge(self, other: "Model") -> None:
        """Add another source's resources; the first definition of a name wins."""
        for name, res in other.resources.items():
            self.resources.setdefault(name, res)
        self.many += other.many
        self.foreign += other.foreign
        self.auth = self.auth or other.auth
        self.aging += other.aging

    def children(self, parent: str) -> list[tuple[Resource, Field]]:
        """Every (resource, field) whose foreign key points at `parent`."""
        return [
            (r, f)
            for r in self.resources.values()
            for f in r.fields.values()
            if f.ref and f.ref.resource == parent
        ]

    def fingerprint(self) -> str:
        import hashlib

        parts = sorted(f"{r.name}:{r.path}:{r.pk}:{sorted(r.fields)}" for r in self.resources.values())
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]

    def validate(self) -> "Model":
        """Check that references point at something; raise ModelError naming the field."""
        for r in self.resources.values():
            for f in r.fields.values():
                if f.ref:
                    if f.ref.resource not in self.resources:
                        raise ModelError(
                            f"{r.name}.{f.name} references unknown resource {f.ref.resource!r}"
                        )
                    if f.ref.on_delete not in ON_DELETE:
                        raise ModelError(
                            f"{r.name}.{f.name}: onDelete must be one of {', '.join(ON_DELETE)}"
                        )
        for m in self.many:
            for n in (m.left, m.right):
                if n not in self.resources:
                    raise ModelError(f"many-to-many {m.junction!r} names unknown resource {n!r}")
        for a in self.aging:
            if a.resource not in self.resources:
                raise ModelError(f"aging rule names unknown resource {a.resource!r}")
        if self.auth and self.auth.users not in self.resources:
            raise ModelError(f"auth: users resource {self.auth.users!r} is not defined")
        return self


def singular(word: str) -> str:
    w = word.lower()
    if w.endswith("ies") and len(w) > 3:
        return w[:-3] + "y"
    if w.endswith(("ses", "xes", "zes", "ches", "shes")):
        return w[:-2]
    if w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


def link_foreign_keys(model: Model, on_delete: str = "none") -> None:
    """Fields like `user_id` / `userId` / `petId` naming another resource become references."""
    names = {singular(n): n for n in model.resources}
    for res in model.resources.values():
        for f in res.fields.values():
            if f.ref or f.name == res.pk:
                continue
            m = re.match(r"^(.+?)(?:_id|Id|ID)$", f.name)
            if not m:
                continue
            target = names.get(singular(m.group(1)))
            if target and target != res.name:
                tr = model.resources[target]
                f.ref = Reference(target, tr.pk, on_delete)
                res.why.append(f"{f.name} references {target}.{tr.pk} (name ends in an id suffix)")
