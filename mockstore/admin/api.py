"""The admin API's routes, the dashboard's files, and the server that runs them on
mitmproxy's event loop.

Each route is one entry of `ROUTES`: a path, a method, what it does (its summary in the API's
own OpenAPI document, `/admin/api.json`) and a function of the `Control` that does it. Routes
that read the store's file run on a thread; the others only touch memory and run on the loop.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import tornado.httpserver
import tornado.netutil
import tornado.web
import tornado.websocket

from .. import __version__
from ..control import Control, ControlError
from . import is_loopback, say
from .relay import RelayServer
from .stream import Hub

log = logging.getLogger("mockstore.admin")

STATIC = Path(__file__).parent / "static"
COOKIE = "mockstore_admin"


@dataclass
class Route:
    path: str  # OpenAPI form: /admin/endpoints/{id}
    method: str
    summary: str
    call: Callable  # (control, handler, *path args) -> JSON value
    thread: bool = False  # reads the store's file: run off the event loop
    status: int = 200
    query: list[str] = field(default_factory=list)
    body: dict | None = None  # the request body's JSON schema

    @property
    def pattern(self) -> str:
        return "^" + re.sub(r"\{(\w+)\}", lambda m: "(.+)" if m.group(1) == "id" else "([^/]+)", self.path) + "$"


def _body(h) -> dict:
    if not h.request.body:
        return {}
    try:
        value = json.loads(h.request.body)
    except ValueError as e:
        raise ControlError(f"the request body is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise ControlError(f"the request body must be a JSON object, not {type(value).__name__}")
    return value


def _flag(h, name: str, default: bool = False) -> bool:
    v = h.get_query_argument(name, None)
    if v is None:
        return default
    if v.lower() in ("1", "true", "yes", "on"):
        return True
    if v.lower() in ("0", "false", "no", "off"):
        return False
    raise ControlError(f"query parameter {name!r} must be true or false, not {v!r}")


def _int(h, name: str, default: int | None) -> int | None:
    v = h.get_query_argument(name, None)
    if v is None:
        return default
    try:
        return int(v)
    except ValueError:
        raise ControlError(f"query parameter {name!r} must be a whole number, not {v!r}") from None


def _samples(c: Control, h, eid: str):
    ep = c.endpoint(eid)  # on the loop: the model; then the store's rows on a thread
    return asyncio.to_thread(c.read_samples, ep, _int(h, "limit", 5))


async def _learned_openapi(c: Control, h) -> dict:
    doc = c.openapi(await asyncio.to_thread(c.read_openapi_inputs))
    # "try it out" goes through the proxy, which answers as the mode says
    doc["servers"] = [{"url": h.admin.proxy_url, "description": "through mockstore"}] + doc.get("servers", [])
    return doc


def _switch(body: dict, key: str = "enabled") -> bool:
    v = body.get(key)
    if not isinstance(v, bool):
        raise ControlError(f"the body needs {key!r}: true or false")
    return v


def _mode(body: dict) -> str:
    if "mode" not in body:
        raise ControlError("the body needs 'mode': learn | mock | failover | replay")
    return body["mode"]


def _name(body: dict) -> str:
    if not isinstance(body.get("name"), str):
        raise ControlError("the body needs 'name': the snapshot's name")
    return body["name"]


RULE_SCHEMA = {"type": "object", "description": "A chaos rule, as `mockstore chaos add` takes it",
               "properties": {"id": {"type": "string"}, "endpoint": {"type": "string", "example": "GET /users/{id}"},
                              "effect": {"enum": ["latency", "error", "reset", "slow_body", "timeout"]},
                              "probability": {"type": "number"}, "enabled": {"type": "boolean"}},
               "required": ["effect"]}

ROUTES: list[Route] = [
    Route("/admin/endpoints", "GET", "Learned endpoints: template, count, latency percentiles, EMA, status mix",
          lambda c, h: c.endpoints()),
    Route("/admin/endpoints/{id}/drift-stats", "GET", "Drift statistics of one endpoint",
          lambda c, h, eid: c.drift_stats(eid)),
    Route("/admin/endpoints/{id}/samples", "GET", "The last recorded exchanges of one endpoint",
          _samples, query=["limit"]),
    Route("/admin/endpoints/{id}", "GET", "One endpoint: schemas, latency histogram, drift (samples: /samples)",
          lambda c, h, eid: c.endpoint(eid, with_drift=True)),
    Route("/admin/drift-alerts", "GET", "Drift alerts", lambda c, h: c.drift_alerts(
        unresolved_only=_flag(h, "unresolved_only"), endpoint=h.get_query_argument("endpoint", None)),
          query=["unresolved_only", "endpoint"]),
    Route("/admin/drift-alerts/{alert}/resolve", "POST", "Resolve a drift alert (accept: take the new shape)",
          lambda c, h, aid: c.resolve(aid, accept=_body(h).get("accept", True) is not False),
          body={"type": "object", "properties": {"accept": {"type": "boolean", "default": True}}}),
    Route("/admin/chaos", "GET", "Chaos: the switch and the rules with their counters", lambda c, h: c.chaos_rules()),
    Route("/admin/chaos", "PUT", "Switch all chaos on or off", lambda c, h: c.chaos_enabled(_switch(_body(h))),
          body={"type": "object", "properties": {"enabled": {"type": "boolean"}}, "required": ["enabled"]}),
    Route("/admin/chaos/rules", "GET", "Chaos rules", lambda c, h: c.chaos_rules()["rules"]),
    Route("/admin/chaos/rules", "POST", "Add a chaos rule", lambda c, h: c.chaos_add(_body(h)), status=201,
          body=RULE_SCHEMA),
    Route("/admin/chaos/rules/{rule}", "GET", "One chaos rule", lambda c, h, rid: c.chaos_rule(rid)),
    Route("/admin/chaos/rules/{rule}", "PUT", "Replace a chaos rule (its counters stay)",
          lambda c, h, rid: c.chaos_replace(rid, _body(h)), body=RULE_SCHEMA),
    Route("/admin/chaos/rules/{rule}", "DELETE", "Remove a chaos rule",
          lambda c, h, rid: c.chaos_remove(rid) or {"removed": rid}),
    Route("/admin/chaos/rules/{rule}/enable", "POST", "Switch one rule on",
          lambda c, h, rid: c.chaos_rule_enabled(rid, True)),
    Route("/admin/chaos/rules/{rule}/disable", "POST", "Switch one rule off",
          lambda c, h, rid: c.chaos_rule_enabled(rid, False)),
    Route("/admin/mode", "GET", "The mode", lambda c, h: {"mode": c.mode()}),
    Route("/admin/mode", "PUT", "Switch the mode (every worker follows)",
          lambda c, h: {"mode": c.set_mode(_mode(_body(h)))},
          body={"type": "object", "properties": {"mode": {"enum": ["learn", "mock", "failover", "replay"]}},
                "required": ["mode"]}),
    Route("/admin/snapshots", "GET", "Snapshots of the virtual data", lambda c, h: c.read_snapshots(), thread=True),
    Route("/admin/snapshots", "POST", "Save the virtual data under a name",
          lambda c, h: c.snapshot_create(_name(b := _body(h)), b.get("description", "")), thread=True, status=201,
          body={"type": "object", "properties": {"name": {"type": "string"}, "description": {"type": "string"}},
                "required": ["name"]}),
    Route("/admin/snapshots/{name}/restore", "POST", "Restore a snapshot",
          lambda c, h, name: c.snapshot_restore(name), thread=True),
    Route("/admin/snapshots/{name}", "DELETE", "Delete a snapshot",
          lambda c, h, name: c.snapshot_delete(name), thread=True),
    Route("/admin/reset", "POST", "Virtual data back to its seeded state", lambda c, h: c.reset(), thread=True),
    Route("/admin/resources", "GET", "Virtual resources", lambda c, h: c.resources()),
    Route("/admin/resources/{name}/rows", "GET", "The rows of a virtual resource",
          lambda c, h, name: c.read_rows(name), thread=True),
    Route("/admin/stubs", "GET", "Hand-written stubs (mocks, their routes and conditions)",
          lambda c, h: c.read_stubs(), thread=True),
    Route("/admin/stubs", "POST", "Add a mock, or several ({\"mocks\": [...]}), as a stubs file lays them out",
          lambda c, h: {"added": c.stubs_add(_body(h))}, thread=True, status=201,
          body={"type": "object", "description": "A mock: name, status, responseDelay, routes with conditions"}),
    Route("/admin/stubs/{name}", "DELETE", "Remove a mock", lambda c, h, name: c.stub_remove(name), thread=True),
    Route("/admin/stubs/{name}/enable", "POST", "Switch a mock on (ACTIVE)",
          lambda c, h, name: c.stub_enabled(name, True), thread=True),
    Route("/admin/stubs/{name}/disable", "POST", "Switch a mock off (INACTIVE)",
          lambda c, h, name: c.stub_enabled(name, False), thread=True),
    Route("/admin/traffic", "GET", "Recent recorded traffic, newest first",
          lambda c, h: c.read_traffic(limit=_int(h, "limit", 50), before=_int(h, "before", None)), thread=True,
          query=["limit", "before"]),
    Route("/admin/openapi.json", "GET", "The learned API as OpenAPI 3.1", _learned_openapi),
    Route("/admin/har", "GET", "The recorded exchanges as HAR 1.2", lambda c, h: json.loads(c.read_har()),
          thread=True),
    Route("/admin/api.json", "GET", "This API's own OpenAPI document", lambda c, h: admin_openapi()),
]


def admin_openapi() -> dict:
    paths: dict = {}
    for r in ROUTES:
        params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                  for n in re.findall(r"\{(\w+)\}", r.path)]
        params += [{"name": n, "in": "query", "schema": {"type": "string"}} for n in r.query]
        op = {"summary": r.summary, "operationId": f"{r.method.lower()}{re.sub(r'[^A-Za-z0-9]+', '_', r.path)}",
              "responses": {str(r.status): {"description": "JSON"},
                            "4XX": {"description": "JSON: {\"error\": what was wrong}"}}}
        if params:
            op["parameters"] = params
        if r.body:
            op["requestBody"] = {"content": {"application/json": {"schema": r.body}}}
        paths.setdefault(r.path, {})[r.method.lower()] = op
    paths["/admin/stream"] = {"get": {"summary": "WebSocket: batches of exchanges, drift alerts and mode changes",
                                      "responses": {"101": {"description": "WebSocket"}}}}
    paths["/admin/try/{path}"] = {"get": {
        "summary": "Send a request on to the proxy (Swagger UI's try it out); any method",
        "parameters": [{"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"default": {"description": "what the proxy answered"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "mockstore admin API", "version": __version__},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                           "token": {"type": "apiKey", "in": "query", "name": "token"}}},
        "security": [{"bearer": []}, {"token": []}],
        "paths": paths,
    }


class Access:
    """Host, Origin and token checks, before any handler does anything."""

    admin: "AdminServer"

    def check_access(self) -> None:
        a = self.admin
        host = self.request.headers.get("Host", "")
        if not a.host_allowed(host):
            raise tornado.web.HTTPError(403, reason=f"Host {host!r} is not this admin server's (DNS rebinding?)")
        origin = self.request.headers.get("Origin")
        if origin is not None and not a.origin_allowed(origin):
            raise tornado.web.HTTPError(403, reason=f"Origin {origin!r} is not this admin server's (cross-site request)")
        given = self._given_token()
        if given is None:
            raise tornado.web.HTTPError(401, reason="a token is needed: open the URL printed at start "
                                                    "(.../?token=...), or send Authorization: Bearer TOKEN")
        if not hmac.compare_digest(given.encode(), a.token.encode()):
            raise tornado.web.HTTPError(401, reason="wrong token")

    def _given_token(self) -> str | None:
        auth = self.request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        q = self.get_query_argument("token", None)
        if q is not None:
            return q
        return self.get_cookie(COOKIE)

    def write_error(self, status_code: int, **kwargs) -> None:
        reason = self._reason
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, tornado.web.HTTPError) and exc.reason:
            reason = exc.reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": reason, "status": status_code}))


class Api(Access, tornado.web.RequestHandler):
    routes: dict[str, Route] = {}

    def prepare(self):
        self.check_access()
        self.set_header("Cache-Control", "no-store")

    def check_xsrf_cookie(self):
        pass  # Origin and the token stand in for it

    async def _run(self, *args):
        route = self.routes.get(self.request.method)
        if route is None:
            allowed = ", ".join(sorted(self.routes))
            raise tornado.web.HTTPError(405, reason=f"{self.request.method} is not allowed here; allowed: {allowed}")
        c = self.admin.control()
        try:
            if route.thread:
                value = await asyncio.to_thread(route.call, c, self, *args)
            else:
                value = route.call(c, self, *args)
                if inspect.isawaitable(value):
                    value = await value
        except ControlError as e:
            raise tornado.web.HTTPError(e.status, reason=str(e)) from None
        self.set_status(route.status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(value, default=str))

    get = post = put = delete = patch = _run


class TryIt(Access, tornado.web.RequestHandler):
    """Swagger UI's "try it out", sent on to the proxy: the page cannot call the proxy's port
    itself (another origin, and the proxy adds no CORS headers to what it answers). The admin
    server is a client of the proxy here; the proxy answers as its mode says."""

    SKIP = {"host", "cookie", "origin", "referer", "content-length", "connection", "accept-encoding"}

    def prepare(self):
        self.check_access()

    def _given_token(self) -> str | None:
        # the page's cookie: an Authorization header here is the tried API's, sent on
        return self.get_query_argument("token", None) or self.get_cookie(COOKIE)

    def check_xsrf_cookie(self):
        pass

    async def _send(self, path: str):
        import tornado.httpclient

        query = self.request.query
        url = f"{self.admin.proxy_url}/{path}" + (f"?{query}" if query else "")
        headers = {k: v for k, v in self.request.headers.get_all() if k.lower() not in self.SKIP}
        body = self.request.body if self.request.method in ("POST", "PUT", "PATCH", "DELETE") else None
        try:
            r = await tornado.httpclient.AsyncHTTPClient().fetch(
                url, method=self.request.method, headers=headers, body=body,
                allow_nonstandard_methods=True, raise_error=False, follow_redirects=False, request_timeout=60)
        except OSError as e:
            raise tornado.web.HTTPError(502, reason=f"the proxy at {self.admin.proxy_url} did not answer: {e}") from None
        self.set_status(r.code, r.reason)
        for name in ("Content-Type", "Server", "Date"):  # the proxy's, not tornado's defaults
            self.clear_header(name)
        for k, v in r.headers.get_all():
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                self.add_header(k, v)
        self.finish(r.body or b"")

    def compute_etag(self):
        return None

    get = post = put = delete = patch = _send


class NotFound(Access, tornado.web.RequestHandler):
    def prepare(self):
        self.check_access()
        raise tornado.web.HTTPError(404, reason=f"no admin route {self.request.method} {self.request.path}; "
                                                "see /admin/api.json")


class Index(Access, tornado.web.RequestHandler):
    def prepare(self):
        self.check_access()

    def get(self, page: str = "index.html"):
        q = self.get_query_argument("token", None)
        if q is not None:  # the page keeps it for its own calls and its WebSocket
            self.set_cookie(COOKIE, q, httponly=True, samesite="Strict")
        self.set_header("Cache-Control", "no-store")
        self.set_header("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:; "
                                                   "img-src 'self' data:; style-src 'self' 'unsafe-inline'")
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish((STATIC / page).read_bytes())


class Static(Access, tornado.web.StaticFileHandler):
    def prepare(self):
        self.check_access()


class Stream(Access, tornado.websocket.WebSocketHandler):
    def prepare(self):
        self.check_access()

    def check_origin(self, origin: str) -> bool:
        return self.admin.origin_allowed(origin)

    def open(self):
        self.sub = self.admin.hub.subscribe(self._send)
        self.write_message(json.dumps({"type": "hello", "mode": self.admin.control().mode(), "time": time.time()}))

    def _send(self, text: str):
        return self.write_message(text)

    def on_close(self):
        sub = getattr(self, "sub", None)
        if sub is not None:
            self.admin.hub.unsubscribe(sub)


class AdminServer:
    """The app, on the running loop, on one port; `control()` gives the owner's controls."""

    def __init__(self, control: Callable[[], Control], on_watched: Callable[[str], None] | None = None):
        """`on_watched(address)`: the relay's address while someone watches the stream, ""
        when nobody does (for the other workers, `mockstore.admin.relay`)."""
        self.control = control
        self.on_watched = on_watched
        self.relay = None
        self.hub = Hub(self._watched)
        self.server: tornado.httpserver.HTTPServer | None = None
        self.host, self.port, self.token, self.proxy_url = "127.0.0.1", 0, "", ""
        self.loopback = True

    def start(self, host: str, port: int, token: str, proxy_url: str) -> bool:
        """Listen; False (and a warning) if the port is taken: the proxy runs on without it."""
        self.token, self.proxy_url, self.loopback = token, proxy_url, is_loopback(host)
        try:
            sockets = tornado.netutil.bind_sockets(port, host)
        except OSError as e:
            log.warning(f"mockstore: the admin API cannot listen on {host}:{port} ({e.strerror or e}); "
                        "the proxy runs on without it (set mock_admin to another port, or 'off')")
            return False
        self.host, self.port = host, sockets[0].getsockname()[1]
        self.server = tornado.httpserver.HTTPServer(self.app(), xheaders=False)
        self.server.add_sockets(sockets)
        self.relay = RelayServer(self.hub.publish)
        self._watched(False)
        shown = f"[{host}]" if ":" in host else host
        say(f"mockstore: dashboard and admin API at http://{shown}:{self.port}/?token={token}")
        self.control().admin_started(self.url)
        return True

    @property
    def url(self) -> str:
        """Where a client on this machine reaches it (a bind to every address includes loopback)."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def _watched(self, active: bool) -> None:
        if self.on_watched is not None and self.relay is not None:
            self.on_watched(self.relay.address if active else "")

    def stop(self) -> None:
        self.hub.close()
        if self.relay is not None:
            self.relay.close()
            self.relay = None
        if self.server is not None:
            self.server.stop()
            self.server = None
            self.control().admin_stopped(self.url)

    def app(self) -> tornado.web.Application:
        handlers = []
        by_pattern: dict[str, dict[str, Route]] = {}
        for r in ROUTES:
            by_pattern.setdefault(r.pattern, {})[r.method] = r
        for pattern, routes in by_pattern.items():
            handlers.append((pattern, type("Api", (Api,), {"routes": routes, "admin": self})))
        from swagger_ui import __file__ as swagger_ui_file

        swagger = os.path.join(os.path.dirname(swagger_ui_file), "static")
        handlers += [
            (r"/admin/stream", type("Stream", (Stream,), {"admin": self})),
            (r"/admin/try/(.*)", type("TryIt", (TryIt,), {"admin": self})),
            (r"/", type("Index", (Index,), {"admin": self})),
            (r"/(swagger\.html)", type("Index", (Index,), {"admin": self})),
            (r"/static/(.*)", type("Static", (Static,), {"admin": self}), {"path": str(STATIC)}),
            (r"/swagger/(.*)", type("Static", (Static,), {"admin": self}), {"path": swagger}),
        ]
        return tornado.web.Application(
            handlers, default_handler_class=type("NotFound", (NotFound,), {"admin": self}),
            websocket_ping_interval=20, compress_response=False, log_function=_log_request,
        )

    def host_allowed(self, host: str) -> bool:
        if not self.loopback:
            return True  # an explicit token guards a server beyond loopback; its names are unknown here
        name, port = _split_host(host)
        return is_loopback(name) and port == self.port

    def origin_allowed(self, origin: str) -> bool:
        u = urlsplit(origin)
        if u.scheme not in ("http", "https") or not u.hostname:
            return False
        if not self.loopback:
            return True
        return is_loopback(u.hostname) and (u.port or 80) == self.port

    def publish(self, event: dict) -> None:
        self.hub.publish(event)


def _log_request(handler) -> None:
    """Refusals where a person sees them; the rest only at debug level."""
    status = handler.get_status()
    r = handler.request
    (log.warning if status in (401, 403) else log.debug)(
        f"mockstore admin: {status} {r.method} {r.path} from {r.remote_ip}")


def _split_host(host: str) -> tuple[str, int | None]:
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        name, _, port = host.partition(":")
    return name, int(port) if port.isdigit() else (80 if not port else None)
