"""Export what was learned as an OpenAPI 3.1 document.

The learned schemas are JSON Schema (genson's output, draft-agnostic), which OpenAPI 3.1
takes as it is, so the export is a re-shaping of the model, not a translation. What the
model does not know, the document does not claim: query parameters are never marked
required, and a path parameter's type comes from the values actually seen.

Only the model is needed. Two things it does not keep can be passed in from the store:
the scheme of each host (else https, http for local hosts and port 80) and concrete paths
seen (to type path parameters; else they are typed by the shape the template learner saw).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from http import HTTPStatus

from .exchange import is_json_type
from .model import Endpoint, Model
from .schemas import detect_format

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_INT = re.compile(r"[+-]?\d{1,18}")


def to_openapi(
    model: Model,
    *,
    title: str = "Learned API",
    version: str = "1.0.0",
    schemes: Mapping[str, str] | None = None,
    seen_paths: Iterable[tuple[str, str]] = (),
) -> dict:
    """An OpenAPI 3.1 document of every learned endpoint.

    `schemes` maps an authority ("api.example.com", "127.0.0.1:8000") to "http"/"https";
    `seen_paths` yields (authority, concrete path) pairs recorded from real traffic."""
    schemes = dict(schemes or {})
    hosts = sorted({ep.host for ep in model.endpoints.values()})
    servers = {h: {"url": f"{schemes.get(h) or _guess_scheme(h)}://{h}"} for h in hosts}
    values = _param_values(model, seen_paths)

    # One path item per path shape: the same shape on two hosts is one item with two servers.
    groups: dict[str, list[Endpoint]] = {}
    skipped: list[str] = []
    for ep in sorted(model.endpoints.values(), key=lambda e: (-e.count, e.id)):
        if ep.method.lower() not in METHODS:
            skipped.append(ep.id)
            continue
        groups.setdefault(_shape(ep.template), []).append(ep)

    paths: dict[str, dict] = {}
    op_ids: set[str] = set()
    total = 0
    for shape in sorted(groups, key=lambda s: (groups[s][0].template, s)):
        eps = groups[shape]
        path, names = _openapi_path(eps[0].template)
        item: dict = {}
        item_hosts = sorted({ep.host for ep in eps})
        if len(hosts) > 1:
            item["servers"] = [dict(servers[h]) for h in item_hosts]  # no shared nodes: no YAML anchors
        if names:
            item["parameters"] = [
                _path_parameter(name, [v for ep in eps for v in values.get((ep.host, ep.template), {}).get(name, ())], _kind(name))
                for name in names
            ]
        for ep in eps:  # most seen first: that one describes the operation
            op_key = ep.method.lower()
            if op_key in item:
                item[op_key]["description"] += f"\n\nAlso seen on {ep.host} ({_n(ep.count, 'sample')})."
                continue
            item[op_key] = _operation(ep, _operation_id(ep, op_ids))
            total += ep.count
        paths[path] = item

    description = f"Learned by mockstore from {total} exchanges."
    if skipped:
        description += " Not described (methods OpenAPI has no place for): " + ", ".join(skipped) + "."
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "servers": [servers[h] for h in hosts] or [{"url": "/"}],
        "paths": paths,
    }


def _guess_scheme(authority: str) -> str:
    host, _, port = authority.rpartition(":") if not authority.endswith("]") else (authority, "", "")
    host = host or authority
    if port == "80" or host in ("localhost", "127.0.0.1", "[::1]") or host.endswith(".localhost"):
        return "http"
    return "https"


def _shape(template: str) -> str:
    return _PARAM.sub("{}", template)


def _openapi_path(template: str) -> tuple[str, list[str]]:
    """The template as an OpenAPI path, and its parameter names in order. A literal segment
    that merely contains braces is escaped, and a repeated name kept literal, so every
    `{name}` in the path is one declared parameter."""
    segments, names = [], []
    for seg in template.strip("/").split("/") if template.strip("/") else []:
        m = _PARAM.fullmatch(seg)
        if m and m.group(1) not in names:
            names.append(m.group(1))
            segments.append(seg)
        else:
            segments.append(seg.replace("{", "%7B").replace("}", "%7D"))
    return "/" + "/".join(segments), names


def _param_values(model: Model, seen: Iterable[tuple[str, str]]) -> dict:
    """(authority, template) -> {param name: set of values seen}."""
    out: dict[tuple[str, str], dict[str, set[str]]] = {}
    for authority, path in seen:
        hit = model.templates.match(authority, path)
        if hit is None:
            continue
        template, params = hit
        per = out.setdefault((authority, template), {})
        for name, value in params.items():
            vals = per.setdefault(name, set())
            if len(vals) < 1000:
                vals.add(value)
    return out


def _kind(name: str) -> str | None:
    """The template learner's kind for a parameter (id, date, slug), from its name."""
    for kind in ("date", "slug", "id"):
        if name == kind or name.endswith(f"_{kind}") or re.fullmatch(rf"{kind}\d+", name):
            return kind
    return None


def _path_parameter(name: str, values: list[str], kind: str | None) -> dict:
    if values:
        if all(_INT.fullmatch(v) for v in values):
            schema: dict = {"type": "integer"}
        elif all(detect_format(v) == "uuid" for v in values):
            schema = {"type": "string", "format": "uuid"}
        elif all(detect_format(v) == "date" for v in values):
            schema = {"type": "string", "format": "date"}
        else:
            schema = {"type": "string"}
        example = sorted(values)[0]
    else:
        schema = {"type": "string", "format": "date"} if kind == "date" else {"type": "string"}
        example = None
    param = {"name": name, "in": "path", "required": True, "schema": schema}
    if example is not None:
        param["example"] = int(example) if schema["type"] == "integer" else example
    return param


def _operation_id(ep: Endpoint, used: set[str]) -> str:
    words = [ep.method.lower()]
    for seg in ep.template.strip("/").split("/"):
        m = _PARAM.fullmatch(seg)
        word = f"by_{m.group(1)}" if m else re.sub(r"[^A-Za-z0-9]+", "_", seg).strip("_")
        if word:
            words.append(word)
    base = "_".join(words) if len(words) > 1 else f"{words[0]}_root"
    op_id, i = base, 2
    while op_id in used:
        op_id, i = f"{base}_{i}", i + 1
    used.add(op_id)
    return op_id


def _operation(ep: Endpoint, op_id: str) -> dict:
    s = ep.stats
    p50, p95 = s.percentile(50), s.percentile(95)
    lines = [f"Learned from {_n(s.count, 'sample')} on {ep.host}."]
    if p50 is not None:
        lines.append(f"Latency p50 {p50:.1f} ms, p95 {p95:.1f} ms.")
    if s.statuses:
        mix = ", ".join(f"{code}: {n}" for code, n in sorted(s.statuses.items()))
        lines.append(f"Statuses seen: {mix}.")
    op: dict = {
        "operationId": op_id,
        "summary": f"{ep.method} {ep.template}",
        "description": " ".join(lines),
        "x-mockstore": {"samples": s.count, "p50_ms": _round(p50), "p95_ms": _round(p95)},
    }
    query = []
    for name, info in sorted(s.query.items()):
        schema = info.get("schema") if isinstance(info, dict) else None
        count = info.get("count", 0) if isinstance(info, dict) else 0
        query.append({
            "name": name, "in": "query", "required": False,
            "description": f"Seen {_n(count, 'time')} in {_n(s.count, 'request')}.",
            "schema": copy.deepcopy(schema) if isinstance(schema, dict) else {"type": "string"},
        })
    other = _other_query(s)
    if other is not None:
        query.append(other)
    if query:
        op["parameters"] = query
    req_schema = ep.request_schema()
    if req_schema is not None:
        op["requestBody"] = {
            "description": f"Learned from {_n(ep.request_samples(), 'body', 'bodies')}.",
            "required": ep.request_samples() >= s.count > 0,
            "content": {"application/json": {"schema": req_schema}},
        }
    op["responses"] = _responses(ep)
    return op


def _other_query(s) -> dict | None:
    """The names folded into patterns (see mockstore.stats), as one free-form parameter: a
    form-style object, whose properties are any names, with the values' schema."""
    patterns = s.query_patterns
    if not patterns:
        return None
    schemas = [p.get("schema") for p in patterns.values() if isinstance(p, dict)]
    schema = schemas[0] if schemas and all(x == schemas[0] for x in schemas) and isinstance(schemas[0], dict) else {"type": "string"}
    shapes = ", ".join(
        f"{shape} ({_n(p.get('count', 0), 'time')}, e.g. {p.get('example', '')!r})" if shape != "*" else
        f"other names ({_n(p.get('count', 0), 'time')}, e.g. {p.get('example', '')!r})"
        for shape, p in sorted(patterns.items()) if isinstance(p, dict)
    )
    name = next(n for n in ("other", "other_query", "x-other-query") if n not in s.query)
    return {
        "name": name, "in": "query", "required": False, "style": "form", "explode": True,
        "description": f"Names not kept one by one: {shapes}.",
        "schema": {"type": "object", "additionalProperties": copy.deepcopy(schema)},
    }


def _responses(ep: Endpoint) -> dict:
    types = ep.stats.content_types
    json_type = next((t for t in sorted(types, key=types.get, reverse=True) if is_json_type(t)), "application/json")
    other_types = [t for t in sorted(types, key=types.get, reverse=True) if not is_json_type(t)]
    out: dict = {}
    for status, n in sorted(ep.stats.statuses.items()):
        if not 100 <= status <= 599:
            continue
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Status"
        resp: dict = {"description": f"{phrase} (seen {_n(n, 'time')})."}
        schema = ep.response_schema(status)
        if schema is not None:
            resp["content"] = {json_type: {"schema": schema}}
        elif other_types and 200 <= status < 300 and status != 204:
            resp["content"] = {t: {} for t in other_types}
        out[str(status)] = resp
    if not out:  # OpenAPI wants at least one response
        out["default"] = {"description": "No response with a standard status was seen."}
    return out


def _n(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)
