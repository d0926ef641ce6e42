"""HTTP semantics over stored rows: routes, list/get/create/put/patch/delete, relations.

Everything a real CRUD service enforces lives here: 404 for a missing item, 409 for a
primary-key or unique conflict, 422 naming the field for a bad body, foreign keys checked
on write, deletes that cascade, restrict or nullify as declared. Rows are plain dicts; the
storage backend under it does not matter. `validate` is the one check every written row
passes, from an HTTP request or a seed file alike; `remove` is the one way a row goes, so
its id is retired (never minted again) however it went.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from mockstore.exchange import Request, Response

from .errors import HttpError
from .ids import IdMaker
from .model import Field, ManyToMany, Model, Resource
from .storage import Storage
from .validate import check, parse_body

PAGING = {"limit", "offset", "page", "per_page", "sort"}
OPS = ("gt", "lt", "gte", "lte", "contains", "ne")
MAX_LIMIT = 10_000

Guard = Callable[[str, Resource, "dict | None", "dict | None"], None]


@dataclass
class Route:
    res: Resource
    prefix: str
    key: str | None = None
    child: tuple[Resource, Field] | None = None  # /parents/{id}/children
    many: tuple[ManyToMany, Resource, str, str] | None = None  # (rel, other, this_col, other_col)
    other_key: str | None = None  # /posts/{id}/tags/{tag_id}
    action: str | None = None  # /posts/{slug}/like: one of the resource's toggles

    @property
    def target(self) -> Resource:
        if self.child:
            return self.child[0]
        if self.many:
            return self.many[1]
        return self.res


def split_path(path: str) -> list[str] | None:
    segs = [unquote(s) for s in path.split("?")[0].split("/") if s]
    return segs


class Router:
    def __init__(self, model: Model, host: str | None = None):
        self.model = model
        self.host = host.lower() if host else None
        self.resources = sorted(
            (r for r in model.resources.values() if not r.hidden and not r.nested), key=lambda r: -len(r.segments)
        )

    def _strip(self, segs: list[str], prefix: str) -> list[str] | None:
        p = [s for s in prefix.split("/") if s]
        return segs[len(p) :] if segs[: len(p)] == p else None

    def _foreign(self, segs: list[str]) -> bool:
        for prefixes, tmpl in self.model.foreign:
            for prefix in prefixes:
                rest = self._strip(segs, prefix)
                if rest is not None and len(rest) == len(tmpl) and all(
                    t.startswith("{") or t == s for t, s in zip(tmpl, rest)
                ):
                    return True
        return False

    def match(self, req: Request) -> Route | None:
        if self.host and req.host.lower() != self.host:
            return None
        segs = split_path(req.path)
        for res in self.resources:
            if res.host and req.host.lower() != res.host.lower():
                continue
            for prefix in res.prefixes:
                rest = self._strip(segs, prefix)
                if rest is None or rest[: len(res.segments)] != res.segments:
                    continue
                rest = rest[len(res.segments) :]
                if not rest:
                    if res.items_only:
                        continue
                    return Route(res, prefix)
                if self._foreign(segs):
                    return None
                if len(rest) == 1:
                    return Route(res, prefix, key=rest[0])
                if len(rest) == 2 and rest[1] in res.toggles:
                    return Route(res, prefix, key=rest[0], action=rest[1])
                if len(rest) in (2, 3):
                    route = self._relation(res, prefix, rest)
                    if route:
                        return route
        return None

    def _relation(self, res: Resource, prefix: str, rest: list[str]) -> Route | None:
        key, rel = rest[0], rest[1]
        other_key = rest[2] if len(rest) == 3 else None
        for m in self.model.many:
            for this, other, tc, oc in ((m.left, m.right, m.left_field, m.right_field),
                                        (m.right, m.left, m.right_field, m.left_field)):
                o = self.model.resources[other]
                if this == res.name and rel in (o.name, o.segments[-1] if o.segments else o.name):
                    return Route(res, prefix, key=key, many=(m, o, tc, oc), other_key=other_key)
        if other_key is None:
            for child, f in self.model.children(res.name):
                if not child.hidden and rel in (child.name, child.segments[-1] if child.segments else child.name):
                    return Route(res, prefix, key=key, child=(child, f))
        return None


def _eq(value: Any, q: str) -> bool:
    if isinstance(value, bool):
        return q.lower() in (("true", "1", "yes") if value else ("false", "0", "no"))
    if value is None:
        return q.lower() in ("null", "none", "")
    if isinstance(value, (int, float)):
        try:
            return float(q) == value
        except ValueError:
            return False
    if isinstance(value, list):
        return any(_eq(v, q) for v in value)
    return str(value) == q


def _cmp(value: Any, q: str) -> int | None:
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    if isinstance(value, (int, float)):
        try:
            f = float(q)
        except ValueError:
            return None
        return (value > f) - (value < f)
    s = str(value)
    return (s > q) - (s < q)


def _matches(value: Any, op: str, q: str) -> bool:
    if op == "eq":
        return _eq(value, q)
    if op == "ne":
        return not _eq(value, q)
    if op == "contains":
        if isinstance(value, list):
            return any(q.lower() in str(v).lower() for v in value)
        return value is not None and q.lower() in str(value).lower()
    c = _cmp(value, q)
    if c is None:
        return False
    return {"gt": c > 0, "lt": c < 0, "gte": c >= 0, "lte": c <= 0}[op]


def _sort_key(v: Any) -> tuple:
    if v is None:
        return (1, 0, "")
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, 0, v)
    return (0, 1, str(v))


def _int(params: dict, name: str, default: int | None, low: int) -> int | None:
    if name not in params:
        return default
    try:
        n = int(params[name])
    except ValueError:
        raise HttpError(400, f"{name} must be an integer, not {params[name]!r}", name) from None
    if n < low:
        raise HttpError(400, f"{name} must be at least {low}", name)
    return min(n, MAX_LIMIT)


def query_rows(rows: list[dict], res: Resource, query: list[tuple[str, str]]) -> tuple[list[dict], int]:
    """Filter, sort and page rows by the query; returns (page, total before paging)."""
    params = dict(query)
    known = set(res.fields) | {k for r in rows[:50] for k in r}
    for name, q in query:
        if name in PAGING:
            continue
        field, _, op = name.rpartition("__") if "__" in name else (name, "", "eq")
        if op not in OPS and op != "eq":
            field, op = name, "eq"
        if field not in known:
            continue  # unknown parameters (cache busters, API keys) are not filters
        rows = [r for r in rows if _matches(r.get(field), op, q)]
    if params.get("sort"):
        for part in reversed([p.strip() for p in params["sort"].split(",") if p.strip()]):
            desc = part.startswith("-")
            name = part.lstrip("-+")
            rows.sort(key=lambda r: _sort_key(r.get(name)), reverse=desc)
    total = len(rows)
    limit = _int(params, "limit", None, 0)
    offset = _int(params, "offset", 0, 0)
    if "page" in params or "per_page" in params:
        page = _int(params, "page", 1, 1)
        per_page = _int(params, "per_page", limit or 20, 1)
        offset, limit = (page - 1) * per_page, per_page
    rows = rows[offset:]
    if limit is not None:
        rows = rows[:limit]
    return rows, total


def slugify(text: Any) -> str:
    """A key made from a field the way servers make slugs: `Hello, World!` -> `hello-world`."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


# Row fields the virtual backend keeps for itself (who liked a post, which post a reply is
# under): stored with the row, never shown.
BOOKKEEPING = "__mockstore_"


def toggled(action: str) -> str:
    """The row field holding who turned an action on."""
    return f"{BOOKKEEPING}{action}"


def link_field(parent: str) -> str:
    """The row field of a nested item holding its parent's key."""
    return f"{BOOKKEEPING}{parent}"


def _same(a: Any, b: Any) -> bool:
    return a is not None and b is not None and str(a) == str(b)


class Crud:
    def __init__(self, model: Model, storage: Storage, seed: int, guard: Guard | None = None):
        self.model = model
        self.storage = storage
        self.guard = guard or (lambda action, res, row, user: None)
        rng = random.Random(seed)
        self.ids = {n: IdMaker(r.id_rule, r.pk_type, random.Random(rng.getrandbits(64)))
                    for n, r in model.resources.items()}

    # --- helpers ---------------------------------------------------------------------

    def counted(self, ns: str | None, res: Resource) -> dict[str, dict[str, int]]:
        """For each counting field of `res`: parent key -> how many nested rows it has now."""
        out: dict[str, dict[str, int]] = {}
        for name, child_name in res.counts.items():
            link = link_field(res.name)
            per: dict[str, int] = {}
            for r in self.storage.rows(ns, child_name) if ns is not None else ():
                per[str(r.get(link))] = per.get(str(r.get(link)), 0) + 1
            out[name] = per
        return out

    def public(self, res: Resource, row: dict, user: dict | None = None, counts: dict | None = None) -> dict:
        """A row as answers show it: without write-only fields and bookkeeping; for a resource
        learned from a real API, only the fields it showed, toggles as the `user` sees them."""
        hidden = [f.name for f in res.fields.values() if f.write_only]
        out = {k: v for k, v in row.items() if k not in hidden and not k.startswith(BOOKKEEPING)}
        if res.toggles:
            me = user.get(self._user_pk()) if user else None
            for action, t in res.toggles.items():
                who = row.get(toggled(action)) or []
                if t.get("flag"):
                    out[t["flag"]] = me is not None and me in who
                if t.get("count"):
                    out[t["count"]] = len(who)
        for name, per in (counts or {}).items():
            out[name] = per.get(str(row.get(res.pk)), 0)
        if res.view is not None:
            out = {k: out[k] for k in res.view if k in out}
        return out

    def one(self, res: Resource, row: dict, user: dict | None = None, ns: str | None = None) -> dict:
        """One item's answer body: wrapped in the resource's envelope if it has one."""
        out = self.public(res, row, user, self.counted(ns, res) if res.counts else None)
        return {res.item_key: out} if res.item_key else out

    def unwrap(self, res: Resource, body: dict) -> dict:
        """A request body as a row: out of the item envelope a real API expects."""
        if res.item_key and isinstance(body.get(res.item_key), dict):
            return dict(body[res.item_key])
        return body

    def location(self, route: Route, res: Resource, key: Any) -> str:
        return f"{route.prefix}{res.path}/{quote(str(key), safe='')}"

    def _get(self, ns: str, res: Resource, key: str) -> dict:
        row = self.storage.get(ns, res.name, key)
        if row is None:
            raise HttpError(404, f"{res.name} {key!r} not found")
        return row

    def _check_refs(self, ns: str, res: Resource, row: dict) -> None:
        for f in res.fields.values():
            if f.ref and row.get(f.name) is not None:
                target = self.model.resources[f.ref.resource]
                value = row[f.name]
                if f.ref.field == target.pk:
                    found = self.storage.get(ns, target.name, str(value)) is not None
                else:
                    found = any(_same(r.get(f.ref.field), value) for r in self.storage.rows(ns, target.name))
                if not found:
                    raise HttpError(422, f"{f.name}: no {target.name} with {f.ref.field} {value!r}", f.name)

    def _check_unique(self, ns: str, res: Resource, row: dict, key: str | None) -> None:
        uniques = [f.name for f in res.fields.values() if f.unique and row.get(f.name) is not None]
        if not uniques:
            return
        for other in self.storage.view(ns, res.name):
            if key is not None and str(other.get(res.pk)) == key:
                continue
            for name in uniques:
                if _same(other.get(name), row[name]):
                    raise HttpError(409, f"{name}: {row[name]!r} is already taken", name)

    def _check_id(self, res: Resource, row: dict) -> None:
        value = row.get(res.pk)
        if value is not None and (why := self.ids[res.name].problem(value)):
            raise HttpError(422, f"{res.pk}: {why}", res.pk)

    def _write(self, ns: str, res: Resource, row: dict, key: str | None) -> None:
        self._check_refs(ns, res, row)
        self._check_unique(ns, res, row, key)

    def validate(self, ns: str, res: Resource, row: dict, key: str | None) -> None:
        """What a whole row must be to be stored: its schema, an id its rule could have made,
        references that exist, unique values (`key`: the row it replaces, if any)."""
        check(res.write_schema(), row)
        self._check_id(res, row)
        self._write(ns, res, row, key)

    def new_id(self, ns: str, res: Resource, taken: set[str]) -> Any:
        return self.ids[res.name].next_id(taken, self.storage.mark(ns, res.name))

    def remove(self, ns: str, res: Resource, key: str) -> bool:
        """Delete one row and retire its id: the high-water mark rises to it."""
        if not self.storage.delete(ns, res.name, key):
            return False
        n = self.ids[res.name].counter(key)
        if n is not None and n <= 2**63 - 1:
            self.storage.raise_mark(ns, res.name, n)
        return True

    def seed(self, ns: str, res: Resource, row: dict, taken: set[str] = frozenset()) -> dict:
        """Store a seed file's row, checked as an HTTP write is; a row whose key exists
        replaces it (seeding twice is not an error). `taken`: ids to keep clear of."""
        if row.get(res.pk) is None:
            row = {res.pk: self.new_id(ns, res, self.storage.keys(ns, res.name) | set(taken)), **row}
        key = str(row[res.pk])
        self.validate(ns, res, row, key)
        self.storage.put(ns, res.name, key, row)
        return row

    # --- operations ------------------------------------------------------------------

    def handle(self, route: Route, req: Request, ns: str, user: dict | None) -> Response:
        m = req.method.upper()
        if route.child or route.many:
            return self._relation(route, req, ns, user, m)
        res = route.res
        if route.action is not None:
            return self.toggle(res, route.key, route.action, m, ns, user)
        if route.key is None:
            if m == "GET":
                return self.list(route, res, self.storage.view(ns, res.name), req, user, ns)
            if m == "POST":
                return self.create(route, res, self.unwrap(res, parse_body(req.body, req.content_type)), ns, user)
            if m == "PUT":  # update by the key in the body (petstore's PUT /pet)
                body = self.unwrap(res, parse_body(req.body, req.content_type))
                if body.get(res.pk) is None:
                    raise HttpError(400, f"{res.pk} is required in the body to update a {res.name}", res.pk)
                return self.replace(route, res, str(body[res.pk]), body, ns, user)
            raise HttpError(405, f"{m} is not allowed on {res.path}", headers=[("allow", "GET, POST, PUT")])
        key = route.key
        if m == "GET":
            row = self._get(ns, res, key)
            self.guard("read", res, row, user)
            return Response.make_json(200, self.one(res, row, user, ns))
        if m == "PUT":
            return self.replace(route, res, key, self.unwrap(res, parse_body(req.body, req.content_type)), ns, user)
        if m == "PATCH":
            return self.patch(res, key, self.unwrap(res, parse_body(req.body, req.content_type)), ns, user)
        if m == "DELETE":
            row = self._get(ns, res, key)
            self.guard("delete", res, row, user)
            self.delete(ns, res, key)
            return Response(204)
        raise HttpError(405, f"{m} is not allowed on a {res.name}", headers=[("allow", "GET, PUT, PATCH, DELETE")])

    def list(self, route: Route, res: Resource, rows: list[dict], req: Request, user: dict | None,
             ns: str | None = None) -> Response:
        if res.rules.get("read") == "owner" and res.owner:
            rows = [r for r in rows if user and _same(r.get(res.owner), user.get(self._user_pk()))]
        query = req.query
        if res.toggles:  # ?liked_by=NAME: the rows NAME turned the action on for
            by = {t["by"]: a for a, t in res.toggles.items() if t.get("by")}
            for name, q in query:
                if name in by:
                    rows = [r for r in rows if q in (r.get(toggled(by[name])) or [])]
            query = [(k, v) for k, v in query if k not in by]
        if res.filters:
            query = [(res.filters.get(k, k), v) for k, v in query]
        if res.newest_first:
            rows = rows[::-1]
        page, total = query_rows(rows, res, query)
        counts = self.counted(ns, res) if res.counts else None
        page = [self.public(res, r, user, counts) for r in page]
        headers = [("x-total-count", str(total))]
        env = res.envelope
        if env:
            body: Any = {env["items"]: page}
            if env.get("total"):
                body[env["total"]] = total
        else:
            body = page
        return Response.make_json(200, body, headers)

    def _user_pk(self) -> str:
        auth = self.model.auth
        return self.model.resources[auth.users].pk if auth else "id"

    def create(self, route: Route, res: Resource, body: dict, ns: str, user: dict | None,
               status: int = 201) -> Response:
        self.guard("create", res, None, user)
        if res.owner and user is not None:
            body[res.owner] = user.get(self._user_pk())
        for f in res.fields.values():
            if f.read_only and f.name != res.pk:
                body.pop(f.name, None)
        for name, value in res.defaults.items():
            body.setdefault(name, value)
        if res.stamps:
            now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            for name in res.stamps:
                body.setdefault(name, now)
        for key_field, source in res.derive.items():  # the server makes the key: a slug of the title
            if body.get(key_field) is None and isinstance(body.get(source), str):
                body[key_field] = slugify(body[source])
        taken = self.storage.keys(ns, res.name)
        if body.get(res.pk) is not None:
            key = str(body[res.pk])
            if key in taken and key in res.replayed_keys:  # the learned session creating it again
                self.delete(ns, res, key)
                taken = self.storage.keys(ns, res.name)
            if key in taken:
                raise HttpError(409, f"{res.name} with {res.pk} {body[res.pk]!r} already exists", res.pk)
        else:
            body = {res.pk: self.new_id(ns, res, taken), **body}
            key = str(body[res.pk])
        self.validate(ns, res, body, None)
        self.storage.put(ns, res.name, key, body)
        return Response.make_json(status, self.one(res, body, user, ns),
                                  [("location", self.location(route, res, body[res.pk]))])

    def replace(self, route: Route, res: Resource, key: str, body: dict, ns: str, user: dict | None) -> Response:
        old = self._get(ns, res, key)
        self.guard("update", res, old, user)
        if body.get(res.pk) is not None and str(body[res.pk]) != key:
            raise HttpError(400, f"{res.pk} in the body ({body[res.pk]!r}) does not match the URL ({key!r})", res.pk)
        for f in res.fields.values():
            if (f.read_only or f.name == res.owner) and f.name in old:
                body[f.name] = old[f.name]
        body[res.pk] = old[res.pk]
        body.update({k: v for k, v in old.items() if k.startswith(BOOKKEEPING)})
        self.validate(ns, res, body, key)
        self.storage.put(ns, res.name, key, body)
        return Response.make_json(200, self.one(res, body, user, ns))

    def patch(self, res: Resource, key: str, body: dict, ns: str, user: dict | None) -> Response:
        old = self._get(ns, res, key)
        self.guard("update", res, old, user)
        if body.get(res.pk) is not None and str(body[res.pk]) != key:
            raise HttpError(400, f"{res.pk} cannot be changed ({body[res.pk]!r} != {key!r})", res.pk)
        for f in res.fields.values():
            if f.read_only or f.name == res.owner:
                body.pop(f.name, None)
        check(res.write_schema(partial=True), body)
        row = {**old, **body}
        self._write(ns, res, row, key)
        self.storage.put(ns, res.name, key, row)
        return Response.make_json(200, self.one(res, row, user, ns))

    def toggle(self, res: Resource, key: str, action: str, method: str, ns: str, user: dict | None) -> Response:
        """`PUT /posts/{slug}/like` turns the action on for the token's user, `DELETE` off: the
        flag the user sees flips and the count moves; GET shows the item as it is."""
        row = self._get(ns, res, key)
        if method == "GET":
            return Response.make_json(200, self.one(res, row, user, ns))
        if method not in ("PUT", "POST", "DELETE"):
            raise HttpError(405, f"{method} is not allowed on {action}", headers=[("allow", "PUT, POST, DELETE")])
        if user is None:
            raise HttpError(401, f"authentication required to {action} a {res.name}")
        me = user.get(self._user_pk())
        who = [w for w in row.get(toggled(action)) or [] if w != me]
        if method != "DELETE":
            who.append(me)
        row = {**row, toggled(action): who}
        self.storage.put(ns, res.name, key, row)
        return Response.make_json(200, self.one(res, row, user, ns))

    def delete(self, ns: str, res: Resource, key: str) -> None:
        """Delete a row and what hangs on it, as each reference says; 409 when restricted."""
        deletes: dict[tuple[str, str], None] = {}
        nullify: list[tuple[str, str, str]] = []
        self._plan(ns, res, key, deletes, nullify)
        for rname, k, fname in nullify:
            if (rname, k) not in deletes:
                row = self.storage.get(ns, rname, k)
                if row is not None:
                    row[fname] = None
                    self.storage.put(ns, rname, k, row)
        for rname, k in deletes:
            self.remove(ns, self.model.resources[rname], k)

    def _plan(self, ns: str, res: Resource, key: str, deletes: dict, nullify: list) -> None:
        if (res.name, key) in deletes:
            return
        deletes[(res.name, key)] = None
        row = self.storage.get(ns, res.name, key) or {}
        for child, f in self.model.children(res.name):
            value = row.get(f.ref.field)
            kids = [r for r in self.storage.rows(ns, child.name) if _same(r.get(f.name), value)]
            kids = [r for r in kids if (child.name, str(r.get(child.pk))) not in deletes]
            if not kids or f.ref.on_delete == "none":
                continue
            if f.ref.on_delete == "restrict":
                raise HttpError(409, f"cannot delete {res.name} {key!r}: {len(kids)} {child.name} "
                                     f"still reference it through {f.name}", f.name)
            for kid in kids:
                if f.ref.on_delete == "cascade":
                    self._plan(ns, child, str(kid.get(child.pk)), deletes, nullify)
                else:
                    nullify.append((child.name, str(kid.get(child.pk)), f.name))
        for m in self.model.many:
            for this, col in ((m.left, m.left_field), (m.right, m.right_field)):
                if this == res.name:
                    for j in self.storage.rows(ns, m.junction):
                        if _same(j.get(col), row.get(res.pk)):
                            deletes[(m.junction, str(j["id"]))] = None

    # --- relationship routes ---------------------------------------------------------

    def _relation(self, route: Route, req: Request, ns: str, user: dict | None, m: str) -> Response:
        res = route.res
        parent = self._get(ns, res, route.key)
        self.guard("read", res, parent, user)
        if route.child:
            child, f = route.child
            value = parent.get(f.ref.field)
            if m == "GET":
                rows = [r for r in self.storage.rows(ns, child.name) if _same(r.get(f.name), value)]
                return self.list(route, child, rows, req, user, ns)
            if m == "POST":
                body = self.unwrap(child, parse_body(req.body, req.content_type))
                body[f.name] = value
                return self.create(Route(child, route.prefix), child, body, ns, user)
            raise HttpError(405, f"{m} is not allowed here", headers=[("allow", "GET, POST")])
        rel, other, tc, oc = route.many
        junction = self.storage.rows(ns, rel.junction)
        pk_value = parent[res.pk]
        links = [j for j in junction if _same(j.get(tc), pk_value)]
        if route.other_key is None:
            if m == "GET":
                linked = {str(j.get(oc)) for j in links}
                rows = [r for r in self.storage.rows(ns, other.name) if str(r.get(other.pk)) in linked]
                return self.list(route, other, rows, req, user, ns)
            if m == "POST":
                body = parse_body(req.body, req.content_type)
                if body.get(other.pk) is not None and len(body) == 1:
                    target = self._get(ns, other, str(body[other.pk]))
                    return self._link(ns, rel, tc, oc, pk_value, target[other.pk], links, other, target)
                created = self.create(Route(other, route.prefix), other, body, ns, user)
                new = created.json()
                self._link(ns, rel, tc, oc, pk_value, new[other.pk], links, other, new)
                return created
            raise HttpError(405, f"{m} is not allowed here", headers=[("allow", "GET, POST")])
        target = self._get(ns, other, route.other_key)
        linked = [j for j in links if _same(j.get(oc), target[other.pk])]
        if m == "GET":
            if not linked:
                raise HttpError(404, f"{other.name} {route.other_key!r} is not linked to {res.name} {route.key!r}")
            return Response.make_json(200, self.public(other, target))
        if m == "PUT":
            return self._link(ns, rel, tc, oc, pk_value, target[other.pk], links, other, target)
        if m == "DELETE":
            if not linked:
                raise HttpError(404, f"{other.name} {route.other_key!r} is not linked to {res.name} {route.key!r}")
            self.guard("update", res, parent, user)
            for j in linked:
                self.remove(ns, self.model.resources[rel.junction], str(j["id"]))
            return Response(204)
        raise HttpError(405, f"{m} is not allowed here", headers=[("allow", "GET, PUT, DELETE")])

    def _link(self, ns, rel, tc, oc, this_value, other_value, links, other, target) -> Response:
        if any(_same(j.get(oc), other_value) for j in links):
            return Response.make_json(200, self.public(other, target))
        taken = self.storage.keys(ns, rel.junction)
        jid = self.new_id(ns, self.model.resources[rel.junction], taken)
        self.storage.put(ns, rel.junction, str(jid), {"id": jid, tc: this_value, oc: other_value})
        return Response.make_json(201, self.public(other, target))
