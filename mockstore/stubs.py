"""Hand-written stubs: mocks, their routes and the conditions that pick an answer.

The model, its validation and its tables: every SQL statement on `stub_mocks`, `stub_routes`
and `stub_conditions` is here. Pure (no mitmproxy), so the CLI, scenarios and tests use it as
the proxy does; `mockstore.stubmatch` turns the mocks into an index that answers requests.

A save is all or nothing: a document is validated as a whole first (naming the file, mock,
route and field of what is wrong), then written in one transaction that also bumps the
`stubs_version` row of `meta`, the counter a running proxy watches to pick up the change.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from mockstore.store import register_tables

PROTOCOLS = ("REST", "GRPC", "KAFKA")
STATUSES = ("ACTIVE", "INACTIVE")
SOURCES = ("QUERY", "HEADER", "BODY", "PATH")
OPERATORS = ("EQUALS", "NOT_EQUALS", "CONTAINS", "NOT_CONTAINS", "GREATER_THAN", "LESS_THAN", "REGEX")
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")
VERSION_KEY = "stubs_version"

_MOCK_FIELDS = {"id", "name", "description", "protocol", "status", "responseDelay", "metadata", "routes",
                "createdAt", "updatedAt"}
_ROUTE_FIELDS = {"id", "method", "path", "description", "defaultResponse", "statusCode", "conditions",
                 "createdAt", "updatedAt"}
_CONDITION_FIELDS = {"id", "parameterName", "parameterSource", "operator", "expectedValue", "response",
                     "statusCode", "priority", "createdAt", "updatedAt"}
_PARAM = re.compile(r"\{([^{}/]+)\}")


class StubError(ValueError):
    """A stub (or a stubs file) is not valid, or cannot be saved; the message names the file,
    mock, route and field."""


@dataclass
class Condition:
    parameter_name: str
    parameter_source: str
    operator: str
    expected_value: str
    response: str | None = None  # the body; None: the route's default body
    status_code: int | None = None  # None: the route's status code
    priority: int = 0
    id: str = ""
    created_at: str = ""
    updated_at: str = ""

    def spec(self) -> dict:
        d = {"parameterName": self.parameter_name, "parameterSource": self.parameter_source,
             "operator": self.operator, "expectedValue": self.expected_value}
        if self.response is not None:
            d["response"] = self.response
        if self.status_code is not None:
            d["statusCode"] = self.status_code
        d["priority"] = self.priority
        return d


@dataclass
class Route:
    method: str
    path: str
    status_code: int = 200
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    description: str | None = None
    conditions: list[Condition] = field(default_factory=list)
    id: str = ""
    created_at: str = ""
    updated_at: str = ""

    @property
    def params(self) -> list[str]:
        return _PARAM.findall(self.path)

    def spec(self) -> dict:
        d: dict[str, Any] = {"method": self.method, "path": self.path}
        if self.description:
            d["description"] = self.description
        d["statusCode"] = self.status_code
        d["defaultResponse"] = {"body": self.body, "headers": dict(self.headers)}
        if self.conditions:
            d["conditions"] = [c.spec() for c in self.conditions]
        return d


@dataclass
class Mock:
    name: str
    protocol: str = "REST"
    status: str = "ACTIVE"
    response_delay: int = 0  # ms
    description: str | None = None
    metadata: dict = field(default_factory=dict)
    routes: list[Route] = field(default_factory=list)
    source: str = "cli"  # cli | file:PATH
    id: str = ""
    created_at: str = ""
    updated_at: str = ""

    @property
    def active(self) -> bool:
        return self.status == "ACTIVE"

    def spec(self) -> dict:
        """The mock as written in a stubs file (what `parse` accepts back)."""
        d: dict[str, Any] = {"name": self.name}
        if self.description:
            d["description"] = self.description
        d.update(protocol=self.protocol, status=self.status, responseDelay=self.response_delay)
        if self.metadata:
            d["metadata"] = self.metadata
        d["routes"] = [r.spec() for r in self.routes]
        return d

    def to_dict(self) -> dict:
        """The spec with ids and timestamps, for `show --json` and listings."""
        d = {"id": self.id, **self.spec(), "source": self.source,
             "createdAt": self.created_at, "updatedAt": self.updated_at}
        for route, rd in zip(self.routes, d["routes"]):
            rd["id"] = route.id
            for cond, cd in zip(route.conditions, rd.get("conditions", [])):
                cd["id"] = cond.id
        return d


# --- parsing and validation ---------------------------------------------------------------

def load_path(path: str | Path) -> list[Mock]:
    """The mocks of a stubs file, or of every *.yaml, *.yml and *.json file in a folder
    (in name order); a name used twice across them is refused."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".yaml", ".yml", ".json") and p.is_file())
    elif path.is_file():
        files = [path]
    else:
        raise StubError(f"{path}: no such stubs file or folder")
    mocks: list[Mock] = []
    seen: dict[str, Path] = {}
    for p in files:
        for m in parse(_read(p), str(p)):
            if m.name in seen:
                raise StubError(f"{p}: mock {m.name!r}: field 'name' is already used in {seen[m.name]}")
            seen[m.name] = p
            mocks.append(m)
    return mocks


def files_state(path: str | Path) -> tuple:
    """What changes when a stubs file or folder is edited: (name, mtime, size) of its files."""
    path = Path(path)
    try:
        files = [p for p in path.iterdir() if p.suffix.lower() in (".yaml", ".yml", ".json")] if path.is_dir() else [path]
        return tuple(sorted((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files))
    except OSError:
        return ()


def _read(p: Path) -> Any:
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise StubError(f"{p}: cannot read the stubs file: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise StubError(f"{p}: the stubs file is not UTF-8 text") from None
    try:
        return yaml.safe_load(text)  # YAML is a superset of JSON
    except yaml.YAMLError as e:
        raise StubError(f"{p}: not valid YAML or JSON: {e}") from None


def parse(doc: Any, name: str = "stubs") -> list[Mock]:
    """Validate a stubs document (`{mocks: [...]}`, a list of mocks, or one mock) into Mocks.
    Raises StubError naming `name`, the mock, the route and the field."""
    if doc is None:
        return []
    if isinstance(doc, dict) and "mocks" in doc:
        unknown = set(doc) - {"mocks"}
        if unknown:
            raise StubError(f"{name}: unknown top-level field(s) {sorted(unknown)}; expected 'mocks'")
        doc = doc["mocks"] or []
    elif isinstance(doc, dict) and ("routes" in doc or "name" in doc):
        doc = [doc]
    elif isinstance(doc, dict) and "conditions" in doc:
        raise StubError(f"{name}: field 'conditions' is outside any route: a condition belongs to a route "
                        "(mocks: - name: ... routes: - method: ... conditions: [...])")
    if not isinstance(doc, list):
        raise StubError(f"{name}: expected 'mocks:' with a list of mocks")
    mocks, names = [], set()
    for i, raw in enumerate(doc, 1):
        m = validate_mock(raw, f"{name}: mock #{i}")
        if m.name in names:
            raise StubError(f"{name}: mock {m.name!r}: field 'name' is used by two mocks")
        names.add(m.name)
        mocks.append(m)
    return mocks


def validate_mock(raw: Any, where: str = "mock") -> Mock:
    if not isinstance(raw, dict):
        raise StubError(f"{where}: must be a mapping of fields, got {type(raw).__name__}")
    mock_name = raw.get("name")
    if not isinstance(mock_name, str) or not mock_name.strip():
        raise StubError(f"{where}: field 'name' is required (a non-empty string)")
    label = where.rsplit(": mock #", 1)[0] + f": mock {mock_name!r}" if ": mock #" in where else f"mock {mock_name!r}"

    def bad(f: str, problem: str) -> StubError:
        return StubError(f"{label}: field {f!r} {problem}")

    if "conditions" in raw:
        raise bad("conditions", "is outside any route: a condition belongs to a route (put it under routes: - conditions:)")
    for k in raw:
        if k not in _MOCK_FIELDS:
            raise bad(k, f"is not known (a mock has: {', '.join(sorted(_MOCK_FIELDS - {'id', 'createdAt', 'updatedAt'}))})")
    protocol = str(raw.get("protocol", "REST")).upper()
    if protocol not in PROTOCOLS:
        raise bad("protocol", f"is unknown: {raw.get('protocol')!r}; expected one of {', '.join(PROTOCOLS)}")
    status = str(raw.get("status", "ACTIVE")).upper()
    if status not in STATUSES:
        raise bad("status", f"is unknown: {raw.get('status')!r}; expected ACTIVE or INACTIVE")
    delay = raw.get("responseDelay", 0) or 0
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
        raise bad("responseDelay", f"must be a number of milliseconds >= 0, got {delay!r}")
    metadata = raw.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise bad("metadata", "must be a mapping")
    desc = raw.get("description")
    routes_raw = raw.get("routes") or []
    if not isinstance(routes_raw, list):
        raise bad("routes", "must be a list of routes")
    routes = [validate_route(r, f"{label}: route #{i}") for i, r in enumerate(routes_raw, 1)]
    seen = set()
    for r in routes:
        key = (r.method, r.path)
        if key in seen:
            raise StubError(f"{label}: route '{r.method} {r.path}': is declared twice in this mock")
        seen.add(key)
    return Mock(name=mock_name.strip(), protocol=protocol, status=status, response_delay=int(delay),
                description=str(desc) if desc is not None else None, metadata=metadata, routes=routes,
                id=str(raw.get("id") or ""))


def validate_route(raw: Any, where: str) -> Route:
    if not isinstance(raw, dict):
        raise StubError(f"{where}: must be a mapping of fields, got {type(raw).__name__}")
    method = str(raw.get("method") or "").upper()
    path = raw.get("path")
    label = where.rsplit(": route #", 1)[0] + f": route '{method or '?'} {path}'"

    def bad(f: str, problem: str) -> StubError:
        return StubError(f"{label}: field {f!r} {problem}")

    for k in raw:
        if k not in _ROUTE_FIELDS:
            raise bad(k, f"is not known (a route has: {', '.join(sorted(_ROUTE_FIELDS - {'id', 'createdAt', 'updatedAt'}))})")
    if method not in METHODS:
        raise bad("method", f"must be an HTTP method ({', '.join(METHODS)}), got {raw.get('method')!r}")
    if not isinstance(path, str) or not path.startswith("/") or "?" in path:
        raise bad("path", f"must be a path starting with '/' (with {{param}} segments, no query), got {path!r}")
    for segment in path.split("/"):
        if "{" in segment and not re.fullmatch(r"\{[A-Za-z_][\w.-]*\}", segment):
            raise bad("path", f"has a segment {segment!r}: a parameter is a whole segment, like {{id}}")
    params = _PARAM.findall(path)
    if len(set(params)) != len(params):
        raise bad("path", "names a parameter twice")
    status = _status(raw.get("statusCode", 200), bad, "statusCode")
    default = raw.get("defaultResponse")
    if default is None:
        default = {}
    if not isinstance(default, dict) or set(default) - {"body", "headers"}:
        raise bad("defaultResponse", "must be a mapping with 'body' and 'headers'")
    headers = default.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in headers.values()):
        raise bad("defaultResponse.headers", "must be a mapping of header name to value")
    headers = {str(k): str(v) for k, v in headers.items()}
    body = _body(default.get("body"), bad, "defaultResponse.body")
    if isinstance(default.get("body"), (dict, list)) and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = "application/json"
    conds_raw = raw.get("conditions") or []
    if not isinstance(conds_raw, list):
        raise bad("conditions", "must be a list of conditions")
    conditions = [validate_condition(c, f"{label}: condition #{i}", params) for i, c in enumerate(conds_raw, 1)]
    desc = raw.get("description")
    return Route(method=method, path=path, status_code=status, body=body, headers=headers,
                 description=str(desc) if desc is not None else None, conditions=conditions,
                 id=str(raw.get("id") or ""))


def validate_condition(raw: Any, where: str, params: list[str]) -> Condition:
    if not isinstance(raw, dict):
        raise StubError(f"{where}: must be a mapping of fields, got {type(raw).__name__}")

    def bad(f: str, problem: str) -> StubError:
        return StubError(f"{where}: field {f!r} {problem}")

    for k in raw:
        if k not in _CONDITION_FIELDS:
            raise bad(k, f"is not known (a condition has: {', '.join(sorted(_CONDITION_FIELDS - {'id', 'createdAt', 'updatedAt'}))})")
    name = raw.get("parameterName")
    if not isinstance(name, (str, int)) or isinstance(name, bool) or str(name).strip() == "":
        raise bad("parameterName", "is required (a non-empty string)")
    source = str(raw.get("parameterSource") or "").upper()
    if source not in SOURCES:
        raise bad("parameterSource", f"is unknown: {raw.get('parameterSource')!r}; expected one of {', '.join(SOURCES)}")
    if source == "PATH" and str(name) not in params:
        raise bad("parameterName", f"names no parameter of the route's path: {name!r} (it has: {', '.join(params) or 'none'})")
    if source == "BODY":
        try:
            json_path(str(name))
        except ValueError as e:
            raise bad("parameterName", str(e)) from None
    operator = str(raw.get("operator") or "").upper()
    if operator not in OPERATORS:
        raise bad("operator", f"is unknown: {raw.get('operator')!r}; expected one of {', '.join(OPERATORS)}")
    if "expectedValue" not in raw or raw["expectedValue"] is None:
        raise bad("expectedValue", "is required")
    expected = raw["expectedValue"]
    if isinstance(expected, bool):
        expected = "true" if expected else "false"
    elif isinstance(expected, (int, float)):
        expected = str(expected)
    if not isinstance(expected, str):
        raise bad("expectedValue", f"must be a string, got {type(expected).__name__}")
    if operator == "REGEX":
        try:
            re.compile(expected)
        except re.error as e:
            raise bad("expectedValue", f"is not a valid regular expression ({e}): {expected!r}") from None
    if operator in ("GREATER_THAN", "LESS_THAN") and comparable(expected) is None:
        raise bad("expectedValue", f"must be a number or an ISO date for {operator}, got {expected!r}")
    response = raw.get("response")
    body = None if response is None else _body(response, bad, "response")
    status = None if raw.get("statusCode") is None else _status(raw["statusCode"], bad, "statusCode")
    priority = raw.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise bad("priority", f"must be a whole number (higher first), got {priority!r}")
    return Condition(parameter_name=str(name), parameter_source=source, operator=operator,
                     expected_value=expected, response=body, status_code=status, priority=priority,
                     id=str(raw.get("id") or ""))


def _status(v: Any, bad, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 100 <= v <= 599:
        raise bad(name, f"must be an HTTP status 100-599, got {v!r}")
    return v


def _body(v: Any, bad, name: str) -> str:
    if v is None:
        return ""
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (str, int, float)) and not isinstance(v, bool):
        return str(v)
    raise bad(name, "must be text, or a mapping or list sent as JSON")


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]|\[['\"]([^'\"]+)['\"]\]")


def json_path(name: str) -> tuple:
    """`user.age`, `items[0].sku`, `$.a.b` as its steps: ('items', 0, 'sku')."""
    text = name.strip()
    if text.startswith("$"):
        text = text[1:].lstrip(".")
    steps: list = []
    pos = 0
    while pos < len(text):
        if text[pos] == "." and steps:
            pos += 1
        m = _PATH_PART.match(text, pos)
        if not m:
            raise ValueError(f"is not a JSON path like 'user.age' or 'items[0].sku': {name!r}")
        steps.append(int(m.group(2)) if m.group(2) is not None else (m.group(1) or m.group(3)))
        pos = m.end()
    if not steps:
        raise ValueError(f"is not a JSON path like 'user.age' or 'items[0].sku': {name!r}")
    return tuple(steps)


def comparable(text: str) -> tuple[int, Any] | None:
    """A value GREATER_THAN and LESS_THAN can compare: (0, number) or (1, aware datetime)."""
    s = text.strip()
    try:
        return 0, float(s)
    except ValueError:
        pass
    try:
        d = datetime.fromisoformat(s[:-1] + "+00:00" if s.endswith(("Z", "z")) else s)
    except ValueError:
        return None
    return 1, d if d.tzinfo else d.replace(tzinfo=timezone.utc)


# --- the tables -----------------------------------------------------------------------------

@register_tables
def _migrate(db) -> None:
    db.execute(
        """create table if not exists stub_mocks (
            id text primary key, name text not null, description text,
            protocol text not null default 'REST', status text not null default 'ACTIVE',
            response_delay integer not null default 0, metadata text,   -- JSON
            source text not null default 'cli', position integer,     -- cli | file:PATH
            created_at text, updated_at text
        )"""
    )
    db.execute("create unique index if not exists stub_mocks_name on stub_mocks (name)")
    db.execute("create index if not exists stub_mocks_status on stub_mocks (status)")
    db.execute(
        """create table if not exists stub_routes (
            id text primary key, mock_id text not null references stub_mocks (id) on delete cascade,
            position integer, method text not null, path text not null, description text,
            status_code integer not null default 200,
            default_body text, default_headers text,                  -- headers: JSON object
            created_at text, updated_at text
        )"""
    )
    db.execute("create index if not exists stub_routes_mock on stub_routes (mock_id, path, method)")
    db.execute(
        """create table if not exists stub_conditions (
            id text primary key, route_id text not null references stub_routes (id) on delete cascade,
            position integer, parameter_name text, parameter_source text, operator text,
            expected_value text, response text, status_code integer, priority integer not null default 0,
            created_at text, updated_at text
        )"""
    )
    db.execute("create index if not exists stub_conditions_route on stub_conditions (route_id, priority)")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def version(db) -> int:
    """The change counter every stub write bumps: a proxy reloads its stubs when it moves."""
    try:
        row = db.execute("select value from meta where key = ?", [VERSION_KEY]).fetchone()
    except sqlite3.OperationalError:
        return 0
    return int(row[0]) if row else 0


def _bump(db) -> None:
    db.execute("insert into meta (key, value) values (?, '1') on conflict(key) do update set "
               "value = cast(value as integer) + 1", [VERSION_KEY])


class _Tx:
    """One write transaction on a connection of the store (`begin immediate`: the whole
    save, checks included, sees one state of the tables and wins or loses as a whole).
    Inside a transaction already (a write run by the store's writer thread), it joins it."""

    def __init__(self, db):
        self.conn = db.conn if hasattr(db, "conn") else db
        self.own = not self.conn.in_transaction

    def __enter__(self):
        if self.own:
            self.conn.execute("begin immediate")
        return self.conn

    def __exit__(self, kind, *_):
        if self.own:
            self.conn.execute("commit" if kind is None else "rollback")


def save(db, mocks: list[Mock], *, replace: bool = False, source: str = "cli",
         replace_source: bool = False) -> list[Mock]:
    """Write mocks, all or nothing. A name already stored is refused unless `replace` (then
    the stored mock, its routes and conditions give way; its id and createdAt stay). With
    `replace_source`, every stored mock of `source` not among `mocks` goes (a stubs file that
    lost a mock). A name stored from another source than `source` is never replaced."""
    with _Tx(db) as conn:
        return _save(conn, mocks, replace=replace, source=source, replace_source=replace_source)


def save_file(db, mocks: list[Mock], source: str) -> bool:
    """Save a stubs file's mocks (`save` with replace and replace_source) unless the store
    already holds this very content for `source`: a second worker, or a restart with the file
    unchanged, leaves the stored mocks as the CLI and scenarios left them (a mock switched
    off stays off). False if there was nothing to write."""
    digest = hashlib.sha256(json.dumps([m.spec() for m in mocks], sort_keys=True).encode()).hexdigest()
    key = f"stubs_file:{source}"
    with _Tx(db) as conn:
        row = conn.execute("select value from meta where key = ?", [key]).fetchone()
        if row is not None and row[0] == digest:
            return False
        _save(conn, mocks, replace=True, source=source, replace_source=True)
        conn.execute("insert or replace into meta (key, value) values (?, ?)", [key, digest])
    return True


def later(fn, *args, **kw):
    """A write of this module (`save`, `update`, `remove`) for the store's writer thread
    (`Store.submit`), for the proxy's commands, which must not wait on the disk; the
    writer logs a refusal."""
    return lambda db: fn(db, *args, **kw)


def _save(conn, mocks: list[Mock], *, replace: bool, source: str, replace_source: bool = False) -> list[Mock]:
    now = _now()
    stored = {name: (mid, src, created, position) for mid, name, src, created, position in
              conn.execute("select id, name, source, created_at, position from stub_mocks")}
    for m in mocks:
        if m.name in stored:
            mid, src, created, _ = stored[m.name]
            if not replace:
                raise StubError(f"mock {m.name!r}: field 'name' is already used by a stored mock "
                                f"(from {src}); remove it first, or import with --replace")
            if src != source and (source.startswith("file:") or src.startswith("file:")):
                raise StubError(f"mock {m.name!r}: field 'name' is already used by a mock from {src}")
    if replace_source:
        keep = {m.name for m in mocks}
        for name, (mid, src, *_) in stored.items():
            if src == source and name not in keep:
                _delete(conn, mid)
    top = conn.execute("select coalesce(max(position), 0) from stub_mocks").fetchone()[0]
    for i, m in enumerate(mocks, 1):
        old = stored.get(m.name)
        if old is not None:
            _delete(conn, old[0])
        m.id = old[0] if old else (m.id or str(uuid.uuid4()))
        m.created_at = old[2] if old else now
        m.updated_at, m.source = now, source
        conn.execute(
            "insert into stub_mocks (id, name, description, protocol, status, response_delay, metadata, "
            "source, position, created_at, updated_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [m.id, m.name, m.description, m.protocol, m.status, m.response_delay, json.dumps(m.metadata),
             source, old[3] if old else top + i, m.created_at, now])
        for ri, r in enumerate(m.routes):
            r.id, r.created_at, r.updated_at = str(uuid.uuid4()), now, now
            conn.execute(
                "insert into stub_routes (id, mock_id, position, method, path, description, status_code, "
                "default_body, default_headers, created_at, updated_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [r.id, m.id, ri, r.method, r.path, r.description, r.status_code, r.body,
                 json.dumps(r.headers), now, now])
            for ci, c in enumerate(r.conditions):
                c.id, c.created_at, c.updated_at = str(uuid.uuid4()), now, now
                conn.execute(
                    "insert into stub_conditions (id, route_id, position, parameter_name, parameter_source, "
                    "operator, expected_value, response, status_code, priority, created_at, updated_at) "
                    "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [c.id, r.id, ci, c.parameter_name, c.parameter_source, c.operator, c.expected_value,
                     c.response, c.status_code, c.priority, now, now])
    _bump(conn)
    return mocks


def _delete(conn, mock_id: str) -> None:
    """A mock with its routes and their conditions (the connection may not enforce the
    foreign keys' cascade: done here)."""
    conn.execute("delete from stub_conditions where route_id in (select id from stub_routes where mock_id = ?)", [mock_id])
    conn.execute("delete from stub_routes where mock_id = ?", [mock_id])
    conn.execute("delete from stub_mocks where id = ?", [mock_id])


def _find(conn, name_or_id: str) -> tuple[str, str]:
    row = conn.execute("select id, name from stub_mocks where name = ? or id = ?", [name_or_id, name_or_id]).fetchone()
    if row is None:
        names = [r[0] for r in conn.execute("select name from stub_mocks order by position")]
        raise StubError(f"no mock {name_or_id!r}; stored: {', '.join(names) or 'none'}")
    return row


def remove(db, name_or_id: str) -> str:
    with _Tx(db) as conn:
        mid, name = _find(conn, name_or_id)
        _delete(conn, mid)
        _bump(conn)
    return name


def update(db, name_or_id: str, *, status: str | None = None, response_delay: int | None = None) -> str:
    """Switch a mock on or off, or change its delay (what scenarios and the CLI do)."""
    if status is not None and status not in STATUSES:
        raise StubError(f"mock {name_or_id!r}: field 'status' is unknown: {status!r}; expected ACTIVE or INACTIVE")
    if response_delay is not None and (isinstance(response_delay, bool) or not isinstance(response_delay, int) or response_delay < 0):
        raise StubError(f"mock {name_or_id!r}: field 'responseDelay' must be a number of milliseconds >= 0, got {response_delay!r}")
    with _Tx(db) as conn:
        mid, name = _find(conn, name_or_id)
        if status is not None:
            conn.execute("update stub_mocks set status = ?, updated_at = ? where id = ?", [status, _now(), mid])
        if response_delay is not None:
            conn.execute("update stub_mocks set response_delay = ?, updated_at = ? where id = ?", [response_delay, _now(), mid])
        _bump(conn)
    return name


def load(db) -> list[Mock]:
    """Every stored mock with its routes and conditions, in declaration order."""
    try:
        mock_rows = db.execute(
            "select id, name, description, protocol, status, response_delay, metadata, source, created_at, "
            "updated_at from stub_mocks order by position, created_at").fetchall()
    except sqlite3.OperationalError:  # a store from before stubs, opened read-only
        return []
    mocks: dict[str, Mock] = {}
    for mid, name, desc, protocol, status, delay, metadata, source, created, updated in mock_rows:
        mocks[mid] = Mock(name=name, description=desc, protocol=protocol, status=status, response_delay=delay or 0,
                          metadata=json.loads(metadata or "{}"), source=source, id=mid, created_at=created,
                          updated_at=updated)
    routes: dict[str, Route] = {}
    for rid, mid, method, path, desc, status, body, headers, created, updated in db.execute(
        "select id, mock_id, method, path, description, status_code, default_body, default_headers, created_at, "
        "updated_at from stub_routes order by mock_id, position"
    ):
        if mid in mocks:
            r = Route(method=method, path=path, description=desc, status_code=status, body=body or "",
                      headers=json.loads(headers or "{}"), id=rid, created_at=created, updated_at=updated)
            routes[rid] = r
            mocks[mid].routes.append(r)
    for row in db.execute(
        "select id, route_id, parameter_name, parameter_source, operator, expected_value, response, status_code, "
        "priority, created_at, updated_at from stub_conditions order by route_id, position"
    ):
        cid, rid, name, source, op, expected, response, status, priority, created, updated = row
        if rid in routes:
            routes[rid].conditions.append(Condition(
                parameter_name=name, parameter_source=source, operator=op, expected_value=expected,
                response=response, status_code=status, priority=priority, id=cid, created_at=created,
                updated_at=updated))
    return list(mocks.values())


def from_exchanges(name: str, method: str, template: str, exchanges, *, limit: int = 50) -> Mock:
    """An editable mock of one endpoint from its recordings: the route's default answer is
    the last 2xx recorded (else the last), and one condition per distinct value recorded for
    the template's last `{param}`, answering what was recorded for it (the latest), at most
    `limit` of them."""
    route = Route(method=method.upper(), path=template)
    params = route.params
    pattern = re.compile("^" + "/".join(
        "([^/]+)" if _PARAM.fullmatch(seg) else re.escape(seg) for seg in template.split("/")) + "$")
    last: dict[str, Any] = {}
    default = ok = None
    for ex in exchanges:
        m = pattern.match(ex.request.path)
        if m is None or ex.request.method.upper() != route.method:
            continue
        default = ex
        if 200 <= ex.response.status < 300:
            ok = ex
        if params:
            value = m.group(len(params))
            last.pop(value, None)  # distinct values in the order last recorded
            last[value] = ex
    default = ok or default
    if default is None:
        raise StubError(f"no recordings of {method.upper()} {template}")
    route.status_code, route.body = default.response.status, _text(default.response.body)
    ctype = default.response.header("content-type")
    if ctype:
        route.headers = {"Content-Type": ctype}
    for value, ex in list(last.items())[-limit:] if params else []:
        route.conditions.append(Condition(
            parameter_name=params[-1], parameter_source="PATH", operator="EQUALS", expected_value=value,
            response=_text(ex.response.body), status_code=ex.response.status))
    return Mock(name=name, description=f"from the recordings of {method.upper()} {template}", routes=[route])


def _text(body: bytes) -> str:
    return body.decode("utf-8", "replace")


def export(mocks: list[Mock], fmt: str = "yaml") -> str:
    doc = {"mocks": [m.spec() for m in mocks]}
    if fmt == "json":
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100)
