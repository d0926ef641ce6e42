"""Resources from an entity file (YAML or JSON): the explicit, hand-written way.

    resources:
      users:
        id: increment                # uuid | 'USR-{increment:06}' | {prefix: cus_, length: 14}
        count: 5                     # rows to generate
        fields:
          id: integer
          email: {type: string, format: email, required: true, unique: true, generate: email}
          org_id: {type: integer, references: {resource: orgs, onDelete: cascade}}
        seed: [{id: 1, email: a@example.com}]
      posts: {fields: {...}, protected: write, owner: author_id, rules: {delete: owner}}
    relations:
      - {many_to_many: [posts, tags], junction: post_tags}
    auth: {users: users, login: /auth/login, register: /auth/register}
    aging: [{resource: sessions, field: created_at, max_age: 1h, action: delete}]
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from .ids import parse_rule
from .model import (
    TYPES,
    AgingRule,
    AuthConfig,
    Field,
    ManyToMany,
    Model,
    ModelError,
    Reference,
    Resource,
    check_field_name,
    check_name,
    check_path,
)

_ALIASES = {"str": "string", "text": "string", "int": "integer", "float": "number", "bool": "boolean",
            "list": "array", "dict": "object", "email": "string", "date": "string", "datetime": "string",
            "uuid": "string", "url": "string"}
_FORMATS = {"email": "email", "date": "date", "datetime": "date-time", "uuid": "uuid", "url": "uri"}


def load_file(path: str | Path, what: str = "mock_entities") -> Any:
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{what}: file not found: {path}")
    try:
        text = p.read_text("utf-8")
        return json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError, UnicodeDecodeError) as e:
        raise ModelError(f"{what}: {path} is not readable YAML or JSON: {e}") from e


def parse_duration(value: Any, where: str) -> float:
    """Seconds from 3600, '90s', '15m', '1h', '7d' or '2w'."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", str(value))
    if not m or float(m.group(1)) <= 0:
        raise ModelError(f"{where}: {value!r} is not a duration like 3600, '15m', '1h' or '7d'")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]


def parse_field(name: str, spec: Any, where: str) -> Field:
    check_field_name(name)
    if spec is None:
        spec = {}
    if isinstance(spec, str):
        required = spec.endswith("!")
        spec = {"type": spec.rstrip("!?"), "required": required}
    if not isinstance(spec, dict):
        raise ModelError(f"{where}.{name}: a field is a type name or a mapping, not {type(spec).__name__}")
    t = str(spec.get("type", "any"))
    fmt = spec.get("format") or _FORMATS.get(t)
    t = _ALIASES.get(t, t)
    if t not in TYPES:
        raise ModelError(f"{where}.{name}: type {t!r} is not one of {', '.join(TYPES)}")
    ref = None
    r = spec.get("references") or spec.get("ref")
    if r is not None:
        if isinstance(r, str):
            r = {"resource": r.split(".")[0], "field": r.split(".")[1] if "." in r else None}
        if not isinstance(r, dict) or not r.get("resource"):
            raise ModelError(f"{where}.{name}: references needs {{resource, field, onDelete}}")
        ref = Reference(str(r["resource"]), r.get("field") or "", str(r.get("onDelete", r.get("on_delete", "restrict"))))
    enum = spec.get("enum")
    if enum is not None and not isinstance(enum, list):
        raise ModelError(f"{where}.{name}: enum must be a list")
    return Field(
        name=name, type=t, format=fmt, required=bool(spec.get("required")), unique=bool(spec.get("unique")),
        read_only=bool(spec.get("readOnly") or spec.get("read_only")),
        write_only=bool(spec.get("writeOnly") or spec.get("write_only")),
        enum=enum, ref=ref, rule=spec.get("generate"),
    )


def parse_resource(name: str, spec: Any, prefixes: list[str]) -> Resource:
    check_name(name)
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise ModelError(f"resources.{name}: must be a mapping")
    fields_spec = spec.get("fields") or {}
    if not isinstance(fields_spec, dict):
        raise ModelError(f"resources.{name}.fields: must be a mapping of name to type")
    pk = str(spec.get("primary_key") or spec.get("pk") or ("id" if "id" in fields_spec or "uuid" not in fields_spec else "uuid"))
    res = Resource(
        name=name, path=check_path(spec.get("path") or f"/{name}", f"resources.{name}.path"), pk=pk,
        id_rule=spec.get("id", "increment"), prefixes=prefixes, source="entities",
        protected=spec.get("protected", False), owner=spec.get("owner"),
        rules=dict(spec.get("rules") or {}), hidden=bool(spec.get("hidden")),
    )
    try:
        parse_rule(res.id_rule)
    except ModelError as e:
        raise ModelError(f"resources.{name}.id: {e}") from None
    for fname, fspec in fields_spec.items():
        res.fields[str(fname)] = parse_field(str(fname), fspec, f"resources.{name}.fields")
    if pk not in res.fields:
        rule = parse_rule(res.id_rule)["type"]
        res.fields[pk] = Field(pk, "integer" if rule == "increment" else "string")
    if res.protected not in (True, False, "write", "all"):
        raise ModelError(f"resources.{name}.protected: use true, false or 'write'")
    if res.owner is not None and res.owner not in res.fields:
        raise ModelError(f"resources.{name}.owner: {res.owner!r} is not one of its fields")
    for action, rule in res.rules.items():
        if action not in ("create", "read", "update", "delete") or not (
            rule == "owner" or str(rule).startswith("role:")
        ):
            raise ModelError(f"resources.{name}.rules: {action}: {rule!r}; use owner or role:NAME for create/read/update/delete")
    count = spec.get("count", 0)
    if not isinstance(count, int) or not 0 <= count <= 100_000:
        raise ModelError(f"resources.{name}.count: an integer from 0 to 100000")
    res.count = count
    seed = spec.get("seed") or []
    if not isinstance(seed, list) or not all(isinstance(r, dict) for r in seed):
        raise ModelError(f"resources.{name}.seed: a list of objects")
    res.seed_rows = seed
    res.why.append("declared in the entity file")
    return res


def model_from_entities(data: Any, *, where: str = "mock_entities") -> Model:
    if isinstance(data, (str, Path)):
        data = load_file(data, where)
    if not isinstance(data, dict) or not isinstance(data.get("resources"), dict):
        raise ModelError(f"{where}: expected a mapping with 'resources'")
    base = data.get("base_path") or ""
    prefixes = [check_path(base, "base_path") if base not in ("", "/") else ""]
    model = Model()
    for name, spec in data["resources"].items():
        model.add(parse_resource(name, spec, prefixes))
    for r in model.resources.values():
        for f in r.fields.values():
            if f.ref and not f.ref.field and f.ref.resource in model.resources:
                f.ref.field = model.resources[f.ref.resource].pk
    for i, rel in enumerate(data.get("relations") or []):
        pair = rel.get("many_to_many") if isinstance(rel, dict) else None
        if not isinstance(pair, list) or len(pair) != 2:
            raise ModelError(f"relations[{i}]: use {{many_to_many: [left, right], junction: name}}")
        left, right = (check_name(str(x)) for x in pair)
        junction = check_name(str(rel.get("junction") or f"{left}_{right}"))
        lf, rf = f"{left}_id" if left != right else "left_id", f"{right}_id" if left != right else "right_id"
        jr = Resource(name=junction, path=f"/{junction}", pk="id", prefixes=prefixes, hidden=True, source="entities")
        jr.fields = {"id": Field("id", "integer"), lf: Field(lf, "any", required=True), rf: Field(rf, "any", required=True)}
        jr.seed_rows = list(rel.get("seed") or [])
        jr.why.append(f"junction of {left} and {right}")
        model.add(jr)
        model.many.append(ManyToMany(left, right, junction, lf, rf))
    auth = data.get("auth")
    if auth is not None:
        if not isinstance(auth, dict):
            raise ModelError("auth: must be a mapping")
        model.auth = AuthConfig(
            users=str(auth.get("users", "users")),
            username_field=str(auth.get("username_field", "username")),
            password_field=str(auth.get("password_field", "password")),
            login=check_path(auth.get("login", "/auth/login"), "auth.login"),
            register=check_path(auth["register"], "auth.register") if auth.get("register", "/auth/register") else None,
            prefixes=prefixes,
        )
        users = model.resources.get(model.auth.users)
        pw = users and users.fields.get(model.auth.password_field)
        if pw:
            pw.write_only = True
    for i, rule in enumerate(data.get("aging") or []):
        if not isinstance(rule, dict) or not rule.get("resource") or not rule.get("field"):
            raise ModelError(f"aging[{i}]: use {{resource, field, max_age, action: delete|expire}}")
        action = rule.get("action", "delete")
        if action not in ("delete", "expire"):
            raise ModelError(f"aging[{i}].action: delete or expire, not {action!r}")
        model.aging.append(AgingRule(str(rule["resource"]), str(rule["field"]),
                                     parse_duration(rule.get("max_age"), f"aging[{i}].max_age"), action,
                                     str(rule.get("flag", "expired"))))
    return model.validate()


def add_entity(path: str | Path, name: str, fields: str) -> None:
    """Add a resource to an entity file, made if missing (`fields`: as `entity_yaml` takes them)."""
    p = Path(path)
    doc = (yaml.safe_load(p.read_text("utf-8")) if p.exists() else None) or {"resources": {}}
    if not isinstance(doc, dict) or not isinstance(doc.setdefault("resources", {}), dict):
        raise ModelError(f"{path} is not an entity file (no 'resources' mapping)")
    if name in doc["resources"]:
        raise ModelError(f"{path} already defines {name!r}")
    doc["resources"][name] = entity_yaml(name, fields)
    p.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), "utf-8")


def entity_yaml(name: str, fields: str) -> dict:
    """A resource entry from 'id:string,name:string,email:string' (the CLI's shorthand)."""
    check_name(name)
    out: dict = {}
    for part in [p.strip() for p in fields.split(",") if p.strip()]:
        fname, _, ftype = part.partition(":")
        f = parse_field(fname.strip(), ftype.strip() or "string", name)
        out[f.name] = {"type": f.type, **({"format": f.format} if f.format else {}),
                       **({"required": True} if f.required else {})}
    if not out:
        raise ModelError("--fields: give at least one field, like id:integer,name:string")
    spec: dict = {"fields": out}
    if "id" in out and out["id"]["type"] == "string":
        spec["id"] = "uuid"
    return spec
