"""Resources from learned traffic: what the proxy saw a real CRUD API do.

A template that answered a POST with an object carrying an id, and whose items
(`/posts/{id}`) were read, replaced, patched or deleted, is a resource. Its fields are
the learned response schema; its seed rows are the objects seen in real responses,
replayed in order (a row deleted while learning stays deleted).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from mockstore import recordings
from mockstore.model import Model as Learned
from mockstore.store import connect

from .model import Field, Model, Resource, link_foreign_keys
from .openapi import _type

_PARAM = re.compile(r"^\{[^}]*\}$")
_IDS = ("id", "uuid", "_id", "ID", "Id")


def _segs(t: str) -> list[str]:
    return [s for s in (t or "").split("/") if s]


def _schema(eps: dict, endpoint: str, kind: str, status: int | None = None) -> dict | None:
    """An endpoint's learned schema: of its requests, of one status, or of its first 2xx."""
    ep = eps.get(endpoint)
    if ep is None:
        return None
    if kind == "request":
        s = ep.request_schema()
    elif status is not None:
        s = ep.response_schema(status)
    else:
        ok = sorted(st for st in ep.responses if 200 <= st < 300)
        s = ep.response_schema(ok[0]) if ok else None
    return s if isinstance(s, dict) else None


def _object_schema(s: dict | None) -> dict | None:
    if not s:
        return None
    if "anyOf" in s:  # genson merges differing shapes into anyOf
        s = next((x for x in s["anyOf"] if isinstance(x, dict) and x.get("type") == "object"), None) or {}
    return s if s.get("type") == "object" or "properties" in s else None


def infer(db_path: str | Path) -> tuple[Model, list[str]]:
    """The model learned traffic implies, and notes on what was skipped and why."""
    db = connect(db_path, readonly=True)
    conn = db.conn
    notes: list[str] = []
    model = Model()
    try:
        eps = Learned.load(db).endpoints
    except Exception as e:
        conn.close()
        raise ValueError(f"the store {db_path} has no learned endpoints yet ({e})") from None
    by_host: dict[str, dict[str, dict[str, str]]] = {}
    for eid, ep in eps.items():
        by_host.setdefault(ep.host or "", {}).setdefault(ep.template or "/", {})[str(ep.method).upper()] = eid
    for host, templates in sorted(by_host.items()):
        for coll, methods in sorted(templates.items()):
            segs = _segs(coll)
            if not segs or any(_PARAM.match(s) for s in segs) or "POST" not in methods:
                continue
            items = [t for t in templates if len(_segs(t)) == len(segs) + 1
                     and _segs(t)[:-1] == segs and _PARAM.match(_segs(t)[-1])]
            if not items:
                notes.append(f"{host}{coll}: POST seen but no item template like {coll}/{{id}}")
                continue
            item = items[0]
            imethods = templates[item]
            if not set(imethods) & {"GET", "PUT", "PATCH", "DELETE"}:
                notes.append(f"{host}{coll}: no GET/PUT/PATCH/DELETE seen on {item}")
                continue
            created = _object_schema(_schema(eps, methods["POST"], "response"))
            shape = _object_schema(_schema(eps, imethods["GET"], "response", 200)) if "GET" in imethods else None
            shape = shape or created
            props = (shape or {}).get("properties") or {}
            pk = next((k for k in _IDS if k in props and k in ((created or {}).get("properties") or {})), None)
            if pk is None:
                notes.append(f"{host}{coll}: the POST response has no id field; not a resource")
                continue
            name = re.sub(r"[^A-Za-z0-9_-]", "_", segs[-1])[:64]
            if not re.match(r"^[A-Za-z_]", name):
                name = "r_" + name
            if name in model.resources:
                notes.append(f"{host}{coll}: a resource named {name!r} was already inferred; skipped")
                continue
            req = _object_schema(_schema(eps, methods["POST"], "request", 0)) or {}
            required = set(req.get("required") or []) - {pk}
            res = Resource(name=name, path="/" + "/".join(segs), pk=pk, source="learned")
            for fname, fs in props.items():
                if isinstance(fs, dict):
                    res.fields[fname] = Field(fname, _type(fs), fs.get("format"), required=fname in required)
            if res.fields[pk].type == "string":
                res.id_rule = "uuid"
            lst = _schema(eps, methods["GET"], "response", 200) if "GET" in methods else None
            if lst and lst.get("type") == "object":
                arrays = [k for k, v in (lst.get("properties") or {}).items() if isinstance(v, dict) and v.get("type") == "array"]
                if len(arrays) == 1:
                    ints = [k for k, v in lst["properties"].items() if isinstance(v, dict) and v.get("type") == "integer"]
                    res.envelope = {"items": arrays[0], "total": next((k for k in ("total", "count", "total_count", "totalCount") if k in ints), None)}
            res.seed_rows = _seen_rows(conn, host, coll, item, pk, res.envelope)
            res.why = [
                f"POST {host}{coll} answered an object with {pk!r}",
                f"{', '.join(sorted(set(imethods) & {'GET', 'PUT', 'PATCH', 'DELETE'}))} seen on {item}",
                f"fields from the learned {'GET ' + item if 'GET' in imethods else 'POST'} response schema",
                f"{len(res.seed_rows)} objects seen in real responses become seed rows",
            ]
            model.add(res)
    conn.close()
    link_foreign_keys(model)
    if not model.resources and not notes:
        notes.append("no POST to a collection with item routes has been learned yet")
    return model, notes


def _seen_rows(conn, host: str, coll: str, item: str, pk: str, envelope: dict | None) -> list[dict]:
    """Replay the recorded exchanges in order: what a client would find now."""
    rows: dict[str, dict] = {}
    for method, path, template, _status, body in recordings.successes_of_templates(conn, [coll, item]):
        method = str(method).upper()
        if method == "DELETE" and template == item:
            rows.pop(_segs(path)[-1] if _segs(path) else "", None)
            continue
        data = _json(body)
        objs: list[Any] = []
        if isinstance(data, list):
            objs = data
        elif isinstance(data, dict):
            if envelope and isinstance(data.get(envelope["items"]), list):
                objs = data[envelope["items"]]
            else:
                objs = [data]
        for o in objs:
            if isinstance(o, dict) and o.get(pk) is not None:
                rows[str(o[pk])] = {**rows.get(str(o[pk]), {}), **o} if method == "PATCH" else o
    return list(rows.values())


def _json(body: Any) -> Any:
    if body is None:
        return None
    try:
        return json.loads(body)
    except (ValueError, TypeError, UnicodeDecodeError, RecursionError):
        return None
