"""Resources from learned traffic: what the proxy saw a real CRUD API do.

A template that answered a POST with an object carrying an id, and whose items
(`/posts/{id}`) were read, replaced, patched or deleted, is a resource. Its fields are
the learned response schema; its seed rows are the objects seen in real responses,
replayed in order (a row deleted while learning stays deleted).

Real APIs dress the same idea differently, and each dress is read off the traffic, not
configured: an item in an envelope (`{"post": {...}}`) and lists with a count
(`{"posts": [...], "postsCount": n}`); a natural key the item path is named by (`{slug}`,
`{username}`, see mockstore.paths), possibly made by the server (a slug of the title, checked
on every create seen); what a create adds (timestamps, constant defaults, the signed-in user
as owner); sub-resources that toggle state per user (`PUT`/`DELETE .../like`); collections
nested under an item (`/posts/{slug}/replies`) and the parent's count of them; sign-up and
sign-in answering a token, and the route answering the token's user (`/me`); filters from the
query keys seen. Every decision is written to the resource's `why` (`resources infer`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from mockstore import recordings
from mockstore.model import Model as Learned
from mockstore.store import connect

from .crud import PAGING, link_field, slugify
from .model import AuthConfig, Field, Model, Reference, Resource, link_foreign_keys
from .model import singular as _model_singular
from .openapi import _type

_PARAM = re.compile(r"^\{[^}]*\}$")
SAMPLE = 500  # recorded exchanges read where a sample tells enough (shapes, order, toggles)
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
    try:
        for host, templates in sorted(by_host.items()):
            _Host(conn, eps, host, templates, model, notes).infer()
    finally:
        conn.close()
    link_foreign_keys(model)
    if not model.resources and not notes:
        notes.append("no POST to a collection with item routes has been learned yet")
    return model, notes


def _item_of(s: dict | None) -> tuple[str | None, dict | None]:
    """An item's schema and the key it travels in: `{"post": {...}}` -> ("post", {...})."""
    s = _object_schema(s)
    if s is None:
        return None, None
    props = s.get("properties") or {}
    if len(props) == 1:
        (key, inner), = props.items()
        inner = _object_schema(inner) if isinstance(inner, dict) else None
        if inner is not None and inner.get("properties"):
            return key, inner
    return None, s


def _unwrap(value: Any, key: str | None) -> Any:
    return value.get(key) if key and isinstance(value, dict) else value


def _stem(word: str) -> str:
    return re.sub(r"[^a-z]", "", word.lower())[:4]


class _Host:
    """Inference over one host's templates: resources, their shapes, and who the user is."""

    def __init__(self, conn, eps: dict, host: str, templates: dict, model: Model, notes: list[str]):
        self.conn, self.eps, self.host, self.templates = conn, eps, host, templates
        self.model, self.notes = model, notes
        self.user_values: set[str] = set()  # the users' keys seen (who owns what)

    def schema(self, template: str, method: str, kind: str = "response", status: int | None = None) -> dict | None:
        eid = self.templates.get(template, {}).get(method)
        return _schema(self.eps, eid, kind, status) if eid else None

    def exchanges(self, *templates: str, sample: bool = False) -> list[tuple[str, str, str, Any, Any]]:
        """(method, path, template, request JSON, response JSON) of the 2xx exchanges, in order;
        only the first `SAMPLE` when a sample is enough (a shape, an order)."""
        rows = recordings.bodies_of_templates(self.conn, list(templates), SAMPLE if sample else -1)
        return [(str(m).upper(), p, t, _json(rq), _json(rs)) for m, p, t, _st, rq, rs in rows]

    def query_keys(self, template: str, method: str = "GET") -> list[str]:
        ep = self.eps.get(self.templates.get(template, {}).get(method))
        return list(ep.stats.query) if ep is not None else []

    def items(self, coll: str) -> list[str]:
        segs = _segs(coll)
        return [t for t in self.templates if len(_segs(t)) == len(segs) + 1
                and _segs(t)[:-1] == segs and _PARAM.match(_segs(t)[-1])]

    # -- the whole host ----------------------------------------------------------------

    def infer(self) -> None:
        auth = self.auth()
        # Collections: those requested, and those only their items were (/members/{username})
        colls = dict(self.templates)
        for t in self.templates:
            ts = _segs(t)
            if len(ts) > 1 and _PARAM.match(ts[-1]):
                colls.setdefault("/" + "/".join(ts[:-1]), {})
        for coll, methods in sorted(colls.items()):
            segs = _segs(coll)
            if not segs or any(_PARAM.match(s) for s in segs):
                continue
            items = self.items(coll)
            if not items:
                if "POST" in methods and not (auth and coll in (auth.login, auth.register)):
                    self.notes.append(f"{self.host}{coll}: POST seen but no item template like {coll}/{{id}}")
                continue
            res = self.resource(coll, methods, items[0])
            if res is not None:
                for child in self.nested(res, items[0]):
                    self.model.add(child)
        if auth is not None:
            self.users(auth)

    # -- one resource ------------------------------------------------------------------

    def resource(self, coll: str, methods: dict, item: str) -> Resource | None:
        host, segs = self.host, _segs(coll)
        imethods = self.templates[item]
        if not set(imethods) & {"GET", "PUT", "PATCH", "DELETE"}:
            self.notes.append(f"{host}{coll}: no GET/PUT/PATCH/DELETE seen on {item}")
            return None
        create_key, created = _item_of(self.schema(coll, "POST")) if "POST" in methods else (None, None)
        read_key, shape = _item_of(self.schema(item, "GET", status=200)) if "GET" in imethods else (None, None)
        shape, item_key = shape or created, read_key or create_key
        props = (shape or {}).get("properties") or {}
        param = _segs(item)[-1][1:-1]
        why: list[str] = []
        if param in props:  # the item path's segment is this field: a natural key
            pk = param
            why.append(f"key {pk!r}: the item path {item} is named by it and its answers carry it")
        else:
            pk = next((k for k in _IDS if k in props), None) or self.key_by_value(item, item_key, props)
            if pk is None or ("POST" in methods and pk not in ((created or {}).get("properties") or {})):
                self.notes.append(f"{host}{coll}: the POST response has no id field; not a resource")
                return None
            why.append(f"key {pk!r}: " + ("an id field" if pk in _IDS else f"the segment of {item} equals it"))
        if "POST" not in methods and not (self.templates.get(item, {}).keys() & {"GET"}):
            return None
        name = re.sub(r"[^A-Za-z0-9_-]", "_", segs[-1])[:64]
        if not re.match(r"^[A-Za-z_]", name):
            name = "r_" + name
        if name in self.model.resources:
            self.notes.append(f"{host}{coll}: a resource named {name!r} was already inferred; skipped")
            return None
        req_key, req = _item_of(self.schema(coll, "POST", "request")) if "POST" in methods else (None, None)
        req = req or {}
        required = set(req.get("required") or []) - {pk}
        res = Resource(name=name, path="/" + "/".join(segs), pk=pk, source="learned", item_key=item_key,
                       items_only=not methods)
        if not methods:
            why.append(f"{coll} itself was never requested: only its items are served")
        for fname, fs in props.items():
            if isinstance(fs, dict):
                res.fields[fname] = Field(fname, _type(fs), fs.get("format"),
                                          required=fname in required and not item_key)
        for fname, fs in (req.get("properties") or {}).items():  # sent, never shown (a password)
            if fname not in res.fields and isinstance(fs, dict):
                res.fields[fname] = Field(fname, _type(fs), fs.get("format"), write_only=True)
        if res.fields[pk].type == "string" and pk in _IDS:
            res.id_rule = "uuid"  # a natural key (a slug, a username) is whatever the client or server made it
        if item_key:
            why.append(f"one item travels as {{{item_key!r}: {{...}}}}")
        self.list_shape(res, coll, methods, why)
        if "POST" in methods:
            self.created(res, coll, req_key, set(req.get("properties") or {}), why)
        self.toggles(res, coll, item, why)
        self.filters(res, coll, why)
        if res.toggles or item_key or res.envelope:
            res.view = list(props) + [f for t in res.toggles.values() for f in (t.get("flag"), t.get("count")) if f and f not in props]
        res.seed_rows = _seen_rows(self.conn, host, coll, item, pk, res.envelope, item_key)
        sources = "POST " + coll if "POST" in methods else "GET " + item
        res.why = [
            f"{sources} answered objects with {pk!r}",
            f"{', '.join(sorted(set(imethods) & {'GET', 'PUT', 'PATCH', 'DELETE'}))} seen on {item}",
            f"fields from the learned {'GET ' + item if 'GET' in imethods else 'POST'} response schema",
            *why,
            f"{len(res.seed_rows)} objects seen in real responses become seed rows",
        ]
        self.model.add(res)
        return res

    def key_by_value(self, item: str, item_key: str | None, props: dict) -> str | None:
        """The field whose value is the item path's segment in the recorded reads."""
        for method, path, _t, _rq, rs in self.exchanges(item, sample=True):
            obj = _unwrap(rs, item_key)
            seg = _segs(path)[-1] if _segs(path) else None
            if method == "GET" and isinstance(obj, dict):
                for k in props:
                    if seg is not None and str(obj.get(k)) == seg:
                        return k
        return None

    def list_shape(self, res: Resource, coll: str, methods: dict, why: list[str]) -> None:
        lst = self.schema(coll, "GET", status=200) if "GET" in methods else None
        if not (lst and lst.get("type") == "object"):
            return
        props = lst.get("properties") or {}
        arrays = [k for k, v in props.items() if isinstance(v, dict) and v.get("type") == "array"]
        if len(arrays) != 1:
            return
        ints = [k for k, v in props.items() if isinstance(v, dict) and v.get("type") == "integer"]
        items = arrays[0]
        total = next((k for k in (f"{items}Count", f"{items}_count", "total", "count", "total_count", "totalCount")
                      if k in ints), None) or (ints[0] if len(ints) == 1 else None)
        res.envelope = {"items": items, "total": total}
        why.append(f"lists travel as {{{items!r}: [...]" + (f", {total!r}: n}} (the count of all matches)" if total else "}"))
        seen = [rs.get(items) for m, _p, _t, _rq, rs in self.exchanges(coll, sample=True)
                if m == "GET" and isinstance(rs, dict)]
        stamps = [f.name for f in res.fields.values() if f.format == "date-time"]
        orders = []
        for page in seen:
            values = [o.get(stamps[0]) for o in page or [] if isinstance(o, dict)] if stamps else []
            if len(values) >= 2 and all(isinstance(v, str) for v in values):
                orders.append(values == sorted(values, reverse=True) and values != sorted(values))
        if orders and all(orders):
            res.newest_first = True
            why.append(f"lists show the newest first (by {stamps[0]!r} in every list seen)")

    def created(self, res: Resource, coll: str, req_key: str | None, sent: set[str], why: list[str]) -> None:
        """What the server adds to a create: a derived key, constant defaults, timestamps, the owner."""
        pairs = [(_unwrap(rq, req_key), _unwrap(rs, res.item_key)) for m, _p, _t, rq, rs in self.exchanges(coll)
                 if m == "POST" and isinstance(_unwrap(rs, res.item_key), dict)]
        pairs = [(rq if isinstance(rq, dict) else {}, rs) for rq, rs in pairs]
        if not pairs:
            return
        pk = res.pk
        if pk not in _IDS:  # a natural key: the session's own creates replay
            res.replayed_keys = {str(rs[pk]) for _rq, rs in pairs if rs.get(pk) is not None}
            if res.replayed_keys:
                why.append(f"the {len(res.replayed_keys)} {pk!r} the learned session created can be created again "
                           "(the session replays)")
        if pk not in sent:
            for f in sent:
                if all(isinstance(rq.get(f), str) and slugify(rq[f]) == str(rs.get(pk)) for rq, rs in pairs):
                    res.derive = {pk: f}
                    why.append(f"the server makes {pk!r} from {f!r} (a slug of it, in every create seen)")
                    break
        for fname, f in res.fields.items():
            if fname in sent or fname == pk or f.write_only:
                continue
            values = [rs.get(fname) for _rq, rs in pairs]
            if f.format == "date-time":
                res.stamps.append(fname)
                why.append(f"{fname!r} is stamped with the time of the create")
            elif values and all(isinstance(v, str) for v in values) and set(values) <= self.user_values:
                res.owner, res.protected = fname, "write"
                why.append(f"{fname!r} is the signed-in user (every create answered a user's key): "
                           "writes need a token")
            elif values and all(v == values[0] for v in values) and not isinstance(values[0], (dict, list)) or values == [[]] * len(values):
                res.defaults[fname] = values[0]
        if res.defaults:
            why.append("a create gives " + ", ".join(f"{k}={json.dumps(v)}" for k, v in res.defaults.items()))

    def toggles(self, res: Resource, coll: str, item: str, why: list[str]) -> None:
        """`PUT`/`DELETE {item}/<action>` answering the item: the action a user turns on and off."""
        segs = _segs(item)
        for t, methods in sorted(self.templates.items()):
            ts = _segs(t)
            if len(ts) != len(segs) + 1 or ts[:-1] != segs or _PARAM.match(ts[-1]):
                continue
            if not set(methods) & {"PUT", "DELETE"} or "GET" in methods and "POST" in methods:
                continue
            on: dict = {}
            off: dict = {}
            for m, _p, _t, _rq, rs in self.exchanges(t, sample=True):
                obj = _unwrap(rs, res.item_key)
                if isinstance(obj, dict):
                    (off if m == "DELETE" else on).update(obj)
            if not (on or off):
                continue
            action, stem = ts[-1], _stem(ts[-1])
            bools = [k for k, f in res.fields.items() if f.type == "boolean"]
            flag = next((k for k in bools if on.get(k) is True and off.get(k) is False), None)
            flag = flag or next((k for k in bools if _stem(k) == stem), None)
            ints = [k for k, f in res.fields.items() if f.type == "integer" and k != res.pk]
            count = next((k for k in ints if isinstance(on.get(k), int) and isinstance(off.get(k), int)
                          and on[k] - off[k] == 1 and _stem(k) == stem), None)
            count = count or next((k for k in ints if _stem(k) == stem and "count" in k.lower()), None)
            if flag is None and count is None:
                continue
            keys = self.query_keys(coll)
            by = next((k for k in keys if k.endswith("_by") and (_stem(k) == stem or (flag and k == f"{flag}_by"))), None)
            res.toggles[action] = {"flag": flag, "count": count, "by": by}
            res.defaults.pop(flag or "", None)
            res.defaults.pop(count or "", None)
            why.append(f"{'/'.join(sorted(set(methods) & {'PUT', 'DELETE', 'POST'}))} {t} turns {action!r} on and off "
                       f"for the user: {flag!r} flips" + (f", {count!r} moves" if count else "")
                       + (f"; ?{by}= lists what a user turned on" if by else ""))

    def filters(self, res: Resource, coll: str, why: list[str]) -> None:
        keys = [k for k in self.query_keys(coll) if k not in PAGING]
        taken = {t.get("by") for t in res.toggles.values()}
        direct, mapped = [], []
        for k in keys:
            if k in taken:
                continue
            if k in res.fields:
                direct.append(k)
                continue
            field = next((f for f in res.fields if res.fields[f].type == "array" and _model_singular(f) == k), None)
            if field:
                res.filters[k] = field
                mapped.append(f"?{k}= matches an item of {field!r}")
        paging = [k for k in self.query_keys(coll) if k in PAGING]
        if direct or mapped or paging:
            why.append("filters: " + ", ".join([f"?{k}=" for k in direct] + mapped + [f"?{k}=" for k in paging]))

    def nested(self, parent: Resource, item: str) -> list[Resource]:
        """`{item}/<name>` with a POST or a list: a collection that lives under each parent."""
        out = []
        segs = _segs(item)
        for t, methods in sorted(self.templates.items()):
            ts = _segs(t)
            if len(ts) != len(segs) + 1 or ts[:-1] != segs or _PARAM.match(ts[-1]) or "POST" not in methods:
                continue
            key, shape = _item_of(self.schema(t, "POST"))
            props = (shape or {}).get("properties") or {}
            pk = next((k for k in _IDS if k in props), None)
            if pk is None:
                continue
            name = re.sub(r"[^A-Za-z0-9_-]", "_", ts[-1])[:64]
            if name in self.model.resources:
                continue
            res = Resource(name=name, path="/" + name, pk=pk, source="learned", item_key=key, nested=True)
            for fname, fs in props.items():
                if isinstance(fs, dict):
                    res.fields[fname] = Field(fname, _type(fs), fs.get("format"))
            link = link_field(parent.name)
            res.fields[link] = Field(link, "any", write_only=True, ref=Reference(parent.name, parent.pk, "cascade"))
            res.id_rule = "uuid" if res.fields[pk].type == "string" else "increment"
            why: list[str] = []
            req_key, req = _item_of(self.schema(t, "POST", "request"))
            self.list_shape(res, t, methods, why)
            self.created(res, t, req_key, set((req or {}).get("properties") or {}), why)
            res.view = list(props)
            counter = next((k for k, f in parent.fields.items() if f.type == "integer"
                            and k.lower() in (f"{name.lower()}count", f"{name.lower()}_count")), None)
            if counter:
                parent.counts[counter] = name
                parent.defaults.pop(counter, None)
                parent.why.insert(-1, f"{counter!r} counts its {name}")
            res.why = [f"POST {self.host}{t} answered objects with {pk!r}: {name} live under each {_model_singular(parent.name)}",
                       f"deleting a {_model_singular(parent.name)} deletes its {name}", *why]
            out.append(res)
        return out

    # -- who the user is ---------------------------------------------------------------

    def auth(self) -> AuthConfig | None:
        """Sign-up and sign-in: POSTs taking a password and answering a token."""
        found = []
        for t, methods in sorted(self.templates.items()):
            if "POST" not in methods or any(_PARAM.match(s) for s in _segs(t)):
                continue
            req_key, req = _item_of(self.schema(t, "POST", "request"))
            resp_key, resp = _item_of(self.schema(t, "POST"))
            rprops, qprops = (resp or {}).get("properties") or {}, (req or {}).get("properties") or {}
            token = next((k for k in rprops if _TOKEN.fullmatch(k)), None)
            if token and "password" in qprops:
                found.append((t, req_key, resp_key, token, set(qprops), list(rprops)))
        if not found:
            return None
        login = next((f for f in found if _LOGIN.search(f[0]) or len(f[4]) == 2), None)
        register = next((f for f in found if f is not login), None)
        anyone = register or login
        cfg = AuthConfig(users="", username_field="", password_field="password",
                         login=login[0] if login else "/auth/login", register=register[0] if register else None,
                         item_key=anyone[2], token_field=anyone[3], view=[k for k in anyone[5] if k != anyone[3]])
        if login:
            cfg.login_field = next(iter(sorted(login[4] - {"password"})), None)
        for t, methods in sorted(self.templates.items()):  # the current user: a literal GET answering the same item
            if "GET" in methods and not any(_PARAM.match(s) for s in _segs(t)) and not self.items(t):
                key, shape = _item_of(self.schema(t, "GET", status=200))
                if key == cfg.item_key and shape and set((shape.get("properties") or {})) <= set(cfg.view) | {cfg.token_field}:
                    cfg.me = t
        for _m, _p, _t, rq, rs in self.exchanges(*(f[0] for f in found)):
            obj = _unwrap(rs, cfg.item_key)
            if isinstance(obj, dict):
                self.user_values.update(str(v) for k, v in obj.items() if isinstance(v, str) and k != cfg.token_field)
        return cfg

    def users(self, cfg: AuthConfig) -> None:
        """The users are the resource keyed by a field sign-up answers (members by username);
        without one, sign-up's collection keeps them out of sight."""
        users = next((r for r in self.model.resources.values() if not r.nested and r.pk in (cfg.view or [])), None)
        if users is None:
            path = cfg.register or cfg.login
            name = re.sub(r"[^A-Za-z0-9_-]", "_", _segs(path)[0] if _segs(path) else "users")[:64]
            key = next((k for k in ("username", "email", "id") if k in (cfg.view or [])), None)
            if key is None or name in self.model.resources:
                self.notes.append(f"{self.host}: sign-up seen, but no key to keep users by")
                return
            users = Resource(name=name, path="/" + name, pk=key, source="learned", hidden=True)
            self.model.add(users)
        for t in (cfg.register, cfg.login):
            if not t:
                continue
            _k, req = _item_of(self.schema(t, "POST", "request"))
            for fname, fs in ((req or {}).get("properties") or {}).items():
                if fname not in users.fields and isinstance(fs, dict):
                    users.fields[fname] = Field(fname, _type(fs), fs.get("format"), write_only=fname == "password")
            _k, resp = _item_of(self.schema(t, "POST"))
            for fname, fs in ((resp or {}).get("properties") or {}).items():
                if fname not in users.fields and fname != cfg.token_field and isinstance(fs, dict):
                    users.fields[fname] = Field(fname, _type(fs), fs.get("format"))
        users.id_rule = "uuid" if users.pk_type != "integer" and users.pk in _IDS else "increment"
        if cfg.register:  # what sign-up gives a new user besides what was sent (an empty bio)
            sent = set(((_item_of(self.schema(cfg.register, "POST", "request"))[1] or {}).get("properties") or {}))
            answers = [_unwrap(rs, cfg.item_key) for m, _p, _t, _rq, rs in self.exchanges(cfg.register)]
            answers = [a for a in answers if isinstance(a, dict)]
            for fname in cfg.view or []:
                values = [a.get(fname) for a in answers]
                if fname not in sent and fname != users.pk and values and all(v == values[0] for v in values):
                    users.defaults.setdefault(fname, values[0])
            users.replayed_keys |= {str(a[users.pk]) for a in answers if a.get(users.pk) is not None}
        cfg.users, cfg.username_field = users.name, users.pk
        self.model.auth = cfg
        users.why.append(
            f"the users: sign-up (POST {cfg.register}) and sign-in (POST {cfg.login}, by {cfg.login_field!r}) answer "
            f"{{{cfg.item_key!r}: {{..., {cfg.token_field!r}}}}}, a token later requests send; "
            + (f"GET {cfg.me} answers the token's user" if cfg.me else "no current-user route seen"))


_TOKEN = re.compile(r"(?i)(access_?)?token|jwt|auth_?token")
_LOGIN = re.compile(r"(?i)(log_?in|sign_?in|session)")


def _seen_rows(conn, host: str, coll: str, item: str, pk: str, envelope: dict | None,
               item_key: str | None = None) -> list[dict]:
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
            elif item_key and isinstance(data.get(item_key), dict):
                objs = [data[item_key]]
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
