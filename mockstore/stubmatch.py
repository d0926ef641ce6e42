"""Answering a request from the stubs: the index, the conditions and the response templates.

Built once each time the stubs change (`StubIndex(mocks)`), so a request costs a walk of its
path's segments in a tree per method (literal segments before `{param}` ones), then the
conditions of the routes it found, already sorted (priority, then declaration order). With a
thousand stubs loaded, a request looks at the few routes of its own path, never at the rest.

Pure (no mitmproxy): the addon hands a `mockstore.exchange.Request` in and gets a
`StubAnswer` (a response and the mock's delay) back, or None to go on as without stubs.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl

from .exchange import Request, Response
from .stubs import Condition, Mock, Route, comparable, json_path

SOURCE = "stub"
_MISSING = object()
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")


@dataclass
class StubAnswer:
    response: Response
    delay_ms: int
    mock: str
    route: str  # 'GET /api/items/{id}'
    condition: int | None  # index of the condition that answered in its route, None: the default


class _Node:
    __slots__ = ("literal", "param", "routes")

    def __init__(self):
        self.literal: dict[str, _Node] = {}
        self.param: _Node | None = None
        self.routes: list[_CompiledRoute] = []


class StubIndex:
    """The ACTIVE REST mocks' routes, by method and path, ready to answer."""

    def __init__(self, mocks: list[Mock]):
        self.trees: dict[str, _Node] = {}
        self.count = 0
        self._counters: dict[str, itertools.count] = {}
        self._counter_lock = threading.Lock()
        for mock in mocks:
            if not mock.active or mock.protocol != "REST":  # GRPC and KAFKA: stored, not served yet
                continue
            for route in mock.routes:
                node = self.trees.setdefault(route.method, _Node())
                for seg in _segments(route.path):
                    if seg.startswith("{") and seg.endswith("}"):
                        node.param = node.param or _Node()
                        node = node.param
                    else:
                        node = node.literal.setdefault(seg, _Node())
                node.routes.append(_CompiledRoute(mock, route, self))
                self.count += 1

    def __bool__(self) -> bool:
        return self.count > 0

    def routes_for(self, method: str, path: str) -> list[tuple["_CompiledRoute", list[str]]]:
        """The routes whose method and path template match, best first (literal segments
        before parameters, then declaration order), with the path parameter values."""
        tree = self.trees.get(method)
        if tree is None:
            return []
        out: list = []
        _walk(tree, _segments(path), 0, [], out)
        return out

    def answer(self, req: Request) -> StubAnswer | None:
        for route, values in self.routes_for(req.method, req.path):
            return route.answer(req, values)
        return None

    def next_count(self, key: str) -> int:
        with self._counter_lock:
            c = self._counters.get(key)
            if c is None:
                c = self._counters[key] = itertools.count(1)
            return next(c)


def _segments(path: str) -> list[str]:
    return path.strip("/").split("/") if path.strip("/") else []


def _walk(node: _Node, segs: list[str], i: int, values: list[str], out: list) -> None:
    if i == len(segs):
        for r in node.routes:
            out.append((r, values))
        return
    child = node.literal.get(segs[i])
    if child is not None:
        _walk(child, segs, i + 1, values, out)
    if node.param is not None and segs[i]:
        _walk(node.param, segs, i + 1, values + [segs[i]], out)


class _Values:
    """What the conditions and templates of one request read, each part parsed once, when
    first asked for."""

    __slots__ = ("req", "path", "_query", "_headers", "_body")

    def __init__(self, req: Request, path: dict[str, str]):
        self.req, self.path = req, path
        self._query = self._headers = self._body = None

    @property
    def query(self) -> dict[str, str]:
        if self._query is None:
            self._query = {}
            for k, v in self.req.query:
                self._query.setdefault(k, v)
        return self._query

    @property
    def headers(self) -> dict[str, str]:
        if self._headers is None:
            self._headers = {}
            for k, v in self.req.headers:
                self._headers.setdefault(k.lower(), v)
        return self._headers

    @property
    def body(self) -> Any:
        """The body as JSON, or as a form's fields (a mapping), or None."""
        if self._body is None:
            body = self.req.body
            value: Any = None
            if body:
                ct = self.req.content_type
                if ct == "application/x-www-form-urlencoded":
                    value = _form(body)
                else:
                    try:
                        value = json.loads(body)
                    except (ValueError, UnicodeDecodeError, RecursionError):
                        value = _form(body) if ct in ("", "text/plain") else None
            self._body = (value,)
        return self._body[0]

    def get(self, source: str, name: str, steps: tuple | None = None) -> Any:
        if source == "QUERY":
            return self.query.get(name, _MISSING)
        if source == "HEADER":
            return self.headers.get(name.lower(), _MISSING)
        if source == "PATH":
            return self.path.get(name, _MISSING)
        return _follow(self.body, steps if steps is not None else json_path(name))


def _form(body: bytes) -> dict | None:
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except (ValueError, UnicodeDecodeError):
        return None
    out: dict = {}
    for k, v in pairs:
        out.setdefault(k, v)
    return out


def _follow(value: Any, steps: tuple) -> Any:
    for step in steps:
        if isinstance(step, int) and isinstance(value, list):
            if step >= len(value):
                return _MISSING
            value = value[step]
        elif isinstance(value, dict) and str(step) in value:
            value = value[str(step)]
        else:
            return _MISSING
    return value


def as_text(value: Any) -> str:
    """A request value as a condition compares it: JSON scalars as JSON writes them."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _tester(c: Condition) -> Callable[[Any], bool]:
    """The condition's test of a value (_MISSING when the request has none)."""
    expected, op = c.expected_value, c.operator
    if op == "EQUALS":
        return lambda v: v is not _MISSING and as_text(v) == expected
    if op == "NOT_EQUALS":
        return lambda v: v is _MISSING or as_text(v) != expected
    if op == "CONTAINS":
        return lambda v: v is not _MISSING and (expected in as_text(v) or (isinstance(v, list) and any(as_text(x) == expected for x in v)))
    if op == "NOT_CONTAINS":
        return lambda v: v is _MISSING or not (expected in as_text(v) or (isinstance(v, list) and any(as_text(x) == expected for x in v)))
    if op == "REGEX":
        pattern = re.compile(expected)
        return lambda v: v is not _MISSING and pattern.search(as_text(v)) is not None
    bound = comparable(expected)
    greater = op == "GREATER_THAN"

    def compare(v: Any) -> bool:
        if v is _MISSING or isinstance(v, bool) or bound is None:
            return False
        got = (0, float(v)) if isinstance(v, (int, float)) else comparable(as_text(v))
        if got is None or got[0] != bound[0]:
            return False
        return got[1] > bound[1] if greater else got[1] < bound[1]

    return compare


class _CompiledRoute:
    def __init__(self, mock: Mock, route: Route, index: StubIndex):
        self.mock, self.route, self.index = mock, route, index
        self.label = f"{route.method} {route.path}"
        self.param_names = route.params
        # priority first, then the order declared: sorted() is stable
        order = sorted(range(len(route.conditions)), key=lambda i: -route.conditions[i].priority)
        self.conditions = [
            (i, c.parameter_source, c.parameter_name,
             json_path(c.parameter_name) if c.parameter_source == "BODY" else None, _tester(c),
             _Template(c.response if c.response is not None else route.body),
             c.status_code if c.status_code is not None else route.status_code)
            for i in order for c in [route.conditions[i]]
        ]
        self.default = _Template(route.body)
        self.headers = [(k, _Template(v)) for k, v in route.headers.items()]

    def answer(self, req: Request, values: list[str]) -> StubAnswer:
        v = _Values(req, dict(zip(self.param_names, values)))
        chosen, body, status = None, self.default, self.route.status_code
        for i, source, name, steps, test, template, code in self.conditions:
            if test(v.get(source, name, steps)):
                chosen, body, status = i, template, code
                break
        ctx = _Context(v, self)
        headers = [(k, t.render(ctx)) for k, t in self.headers]
        response = Response(status, headers, body.render_body(ctx))
        return StubAnswer(response, self.mock.response_delay, self.mock.name, self.label, chosen)


class _Context:
    def __init__(self, values: _Values, route: _CompiledRoute):
        self.values, self.route = values, route

    def lookup(self, expr: str) -> str:
        parts = expr.split(None, 1)
        head, arg = parts[0], (parts[1].strip().strip("'\"") if len(parts) > 1 else "")
        if head.startswith("request."):
            kind, _, name = head[len("request."):].partition(".")
            v = self.values
            if kind == "path":
                value = v.path.get(name, _MISSING)
            elif kind == "query":
                value = v.query.get(name, _MISSING)
            elif kind in ("headers", "header"):
                value = v.headers.get(name.lower(), _MISSING)
            elif kind == "body":
                value = _follow(v.body, json_path(name)) if name else (v.req.body.decode("utf-8", "replace") or _MISSING)
            elif kind == "method":
                value = v.req.method
            elif kind == "url" or kind == "pathname":
                value = v.req.path
            else:
                value = _MISSING
            return "" if value is _MISSING else as_text(value)
        if head == "now":
            now = datetime.now(timezone.utc)
            return now.strftime(arg) if arg else now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if head == "uuid":
            return str(uuid.uuid4())
        if head == "counter" or head.startswith("counter."):
            key = head.partition(".")[2] or f"{self.route.mock.name} {self.route.label}"
            return str(self.route.index.next_count(key))
        if head.startswith("faker."):
            return str(_fake(head[len("faker."):]))
        return "{{" + expr + "}}"  # not a placeholder we know: left as written


_faker = None


def _fake(provider: str) -> Any:
    global _faker
    if _faker is None:
        from faker import Faker

        _faker = Faker("en_US")
    fn = getattr(_faker, provider, None)
    return fn() if callable(fn) else ""


class _Template:
    """A body or header value with `{{...}}` placeholders, split once. A JSON body is filled
    in inside its strings and written again, so what a value holds (quotes, newlines) leaves
    it valid JSON; a placeholder that is a whole JSON string takes the value's JSON type when
    the value came as JSON (a number stays a number)."""

    def __init__(self, text: str):
        self.text = text
        self.static = "{{" not in text
        self.encoded = text.encode()
        self.json: Any = _MISSING
        if not self.static:
            try:
                self.json = json.loads(text)
            except ValueError:
                self.json = _MISSING

    def render(self, ctx: _Context) -> str:
        if self.static:
            return self.text
        return _PLACEHOLDER.sub(lambda m: ctx.lookup(m.group(1)), self.text)

    def render_body(self, ctx: _Context) -> bytes:
        if self.static:
            return self.encoded
        if self.json is _MISSING:
            return self.render(ctx).encode()
        return json.dumps(_fill(self.json, ctx), ensure_ascii=False).encode()


def _fill(value: Any, ctx: _Context) -> Any:
    if isinstance(value, str):
        if "{{" not in value:
            return value
        whole = _PLACEHOLDER.fullmatch(value)
        if whole and whole.group(1).startswith("request.body."):
            raw = _follow(ctx.values.body, json_path(whole.group(1)[len("request.body."):]))
            if raw is not _MISSING and not isinstance(raw, str):
                return raw
        return _PLACEHOLDER.sub(lambda m: ctx.lookup(m.group(1)), value)
    if isinstance(value, dict):
        return {_fill(k, ctx): _fill(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ctx) for v in value]
    return value
