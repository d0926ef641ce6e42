"""Resources from an OpenAPI 3.x or Swagger 2.0 document.

A collection path (`/pets`) with an item path under it (`/pets/{id}`) is a resource. Its
fields come from the item's response schema, the required ones from the create body;
`servers` (or `basePath`) give the prefixes the routes are served under. Paths that are
not CRUD routes (`/pet/findByStatus`) are remembered so they are never mistaken for items.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from .model import Field, Model, ModelError, Resource, link_foreign_keys

_PARAM = re.compile(r"^\{[^}]+\}$")
_MAX_DEPTH = 12


def load_document(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"mock_spec: file not found: {path}")
    try:
        text = p.read_text("utf-8")
        doc = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError, UnicodeDecodeError) as e:
        raise ModelError(f"mock_spec: {path} is not readable YAML or JSON: {e}") from e
    if not isinstance(doc, dict) or not ("openapi" in doc or "swagger" in doc):
        raise ModelError(f"mock_spec: {path} is not an OpenAPI 3.x or Swagger 2.0 document")
    if not isinstance(doc.get("paths"), dict):
        raise ModelError(f"mock_spec: {path} has no paths")
    return doc


def deref(node: Any, root: dict, depth: int = 0, seen: tuple = ()) -> Any:
    """Inline local $refs and merge allOf; cycles and very deep schemas end in {}."""
    if depth > _MAX_DEPTH:
        return {}
    if isinstance(node, list):
        return [deref(n, root, depth + 1, seen) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        ref = node["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#/") or ref in seen:
            return {}
        target: Any = root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            target = target.get(part) if isinstance(target, dict) else None
        return deref(target or {}, root, depth + 1, seen + (ref,))
    out = {k: deref(v, root, depth + 1, seen) for k, v in node.items() if k not in ("example", "examples", "xml")}
    if "allOf" in out:
        merged: dict = {"type": "object", "properties": {}, "required": []}
        for part in out.pop("allOf") or []:
            if isinstance(part, dict):
                merged["properties"].update(part.get("properties") or {})
                merged["required"] += [r for r in part.get("required") or [] if r not in merged["required"]]
        merged["properties"].update(out.pop("properties", {}) or {})
        merged["required"] += [r for r in out.pop("required", []) or [] if r not in merged["required"]]
        out = {**merged, **{k: v for k, v in out.items() if k not in ("type",)}}
    if out.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    out.pop("nullable", None)
    return out


def _prefixes(doc: dict) -> list[str]:
    if "swagger" in doc:
        bp = doc.get("basePath") or ""
        return [bp.rstrip("/")] if bp not in ("", "/") else [""]
    found = []
    for s in doc.get("servers") or []:
        url = (s or {}).get("url", "") if isinstance(s, dict) else ""
        url = re.sub(r"\{[^}]*\}", "x", url)  # server variables: only the path matters
        p = urlsplit(url).path.rstrip("/") if "://" in url else url.rstrip("/")
        if p not in found:
            found.append(p)
    return found or [""]


def _json_schema(content: Any) -> dict | None:
    if not isinstance(content, dict):
        return None
    for ct, media in content.items():
        if "json" in ct and isinstance(media, dict):
            return media.get("schema")
    for media in content.values():
        if isinstance(media, dict) and media.get("schema"):
            return media["schema"]
    return None


def _body_schema(op: dict, doc: dict) -> dict | None:
    if "requestBody" in op:
        rb = deref(op["requestBody"], doc)
        return deref(_json_schema(rb.get("content")), doc) if isinstance(rb, dict) else None
    for p in op.get("parameters") or []:  # Swagger 2.0
        p = deref(p, doc)
        if isinstance(p, dict) and p.get("in") == "body":
            return deref(p.get("schema"), doc)
    return None


def _response_schema(op: dict, doc: dict) -> dict | None:
    for code, resp in (op.get("responses") or {}).items():
        if str(code).startswith("2"):
            resp = deref(resp, doc)
            if not isinstance(resp, dict):
                continue
            s = resp.get("schema") if "schema" in resp else _json_schema(resp.get("content"))
            if s:
                return deref(s, doc)
    return None


def _type(schema: dict) -> str:
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), None)
    if t in ("string", "integer", "number", "boolean", "array", "object"):
        return t
    if "properties" in schema:
        return "object"
    return "any"


def _ops(item: Any) -> dict:
    if not isinstance(item, dict):
        return {}
    return {m: op for m, op in item.items() if m in ("get", "put", "post", "patch", "delete") and isinstance(op, dict)}


def _name_for(segments: list[str], taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_-]", "_", segments[-1]) or "root"
    if not re.match(r"^[A-Za-z_]", base):
        base = "r_" + base
    name = base
    if name in taken and len(segments) > 1:
        name = re.sub(r"[^A-Za-z0-9_-]", "_", "_".join(segments))
    n = 2
    while name in taken:
        name, n = f"{base}{n}", n + 1
    return name[:64]


def model_from_openapi(path: str | Path) -> Model:
    doc = load_document(path)
    prefixes = _prefixes(doc)
    paths = {p: _ops(v) for p, v in doc["paths"].items() if isinstance(p, str)}
    model = Model()
    used: set[str] = set()
    for coll in sorted(paths):
        segs = [s for s in coll.split("/") if s]
        if not segs or any(_PARAM.match(s) for s in segs):
            continue
        items = [p for p in paths if p != coll and (ps := [s for s in p.split("/") if s])[:-1] == segs and _PARAM.match(ps[-1])]
        if not items:
            continue
        item = items[0]
        param = item.rstrip("/").split("/")[-1][1:-1]
        cops, iops = paths[coll], paths[item]
        used.update((coll, item))
        schema = None
        for op in (iops.get("get"), cops.get("post"), iops.get("put"), cops.get("put")):
            if op and (schema := _response_schema(op, doc)) and _type(schema) == "object":
                break
            schema = None
        create = _body_schema(cops["post"], doc) if "post" in cops else None
        schema = schema or create or {"type": "object", "properties": {}}
        props = dict(schema.get("properties") or {})
        for k, v in ((create or {}).get("properties") or {}).items():
            props.setdefault(k, v)
        required = set((create or schema).get("required") or [])
        if param in props:
            pk = param
        elif "id" in props:
            pk = "id"
        elif "uuid" in props:
            pk = "uuid"
        else:
            pk = param
        name = _name_for(segs, set(model.resources))
        res = Resource(name=name, path="/" + "/".join(segs), pk=pk, prefixes=prefixes, source="openapi")
        for fname, fs in props.items():
            if not isinstance(fname, str) or not isinstance(fs, dict):
                continue
            res.fields[fname] = Field(
                name=fname,
                type=_type(fs),
                format=fs.get("format"),
                required=fname in required,
                read_only=bool(fs.get("readOnly")),
                write_only=bool(fs.get("writeOnly")),
                enum=fs.get("enum"),
                schema={k: v for k, v in fs.items() if k not in ("readOnly", "writeOnly", "description")},
            )
        if pk not in res.fields:
            ptype = "string"
            for p in (iops.get("get") or next(iter(iops.values()), {})).get("parameters") or []:
                p = deref(p, doc)
                if isinstance(p, dict) and p.get("name") == param:
                    ptype = _type(p.get("schema") or p)
            res.fields[pk] = Field(name=pk, type=ptype)
        res.id_rule = "uuid" if res.fields[pk].format == "uuid" else "increment"
        lst = _response_schema(cops["get"], doc) if "get" in cops else None
        if lst and _type(lst) == "object":
            arrays = [k for k, v in (lst.get("properties") or {}).items() if isinstance(v, dict) and _type(v) == "array"]
            if len(arrays) == 1:
                ints = [k for k, v in lst["properties"].items() if isinstance(v, dict) and _type(v) == "integer"]
                total = next((k for k in ("total", "count", "total_count", "totalCount") if k in ints), None)
                res.envelope = {"items": arrays[0], "total": total}
        res.why.append(f"{coll} with item path {item}; primary key {pk!r}")
        model.add(res)
    for p in paths:
        if p not in used:
            model.foreign.append((prefixes, [s for s in p.split("/") if s]))
    link_foreign_keys(model)
    return model.validate()
