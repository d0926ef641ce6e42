"""The virtual backend: one object the addon (or `mockstore serve`) asks first.

It owns the model, the storage, the sessions, auth and snapshots, and answers a request
for a virtual resource, or returns None so the engine can go on to recorded or
synthesized responses. One lock serialises requests: the addon calls from worker
threads, and a virtual backend is a test double, not a database server.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from mockstore import changes
from mockstore.exchange import Request, Response
from mockstore.offloop import OffLoop
from mockstore.store import connect

from . import aging
from .auth import Auth, store_secret
from .crud import Crud, Router, split_path
from .entities import model_from_entities
from .errors import HttpError
from .model import Model, ModelError
from .openapi import model_from_openapi
from .seed import build_seed, dependency_order, load_seed_file
from .sessions import Sessions
from .snapshots import Snapshots, SnapshotError, check_name
from .storage import DEFAULT, KINDS, open_storage

log = logging.getLogger("mockstore.vb")

OPTIONS: list[tuple[str, type, object, str]] = [
    ("mock_spec", str, "", "OpenAPI 3.x or Swagger 2.0 file: its collections become stateful virtual resources"),
    ("mock_entities", str, "", "Entity file (YAML or JSON) declaring virtual resources, relations, auth, aging"),
    ("mock_vb_learned", bool, False, "Build virtual resources from learned traffic (see `mockstore resources infer`)"),
    ("mock_vb_storage", str, "sqlite", "Where virtual rows live: sqlite (in the store), json (a file) or memory"),
    ("mock_vb_file", str, "", "The JSON storage file (default: next to the store, <store>.vb.json)"),
    ("mock_vb_host", str, "", "Serve virtual resources only for this host (default: any host)"),
    ("mock_vb_sessions", str, "", "Header or cookie whose value gets its own isolated copy of the data"),
    ("mock_vb_session_ttl", int, 3600, "Seconds of inactivity after which a session's data is dropped"),
    ("mock_jwt_secret", str, "", "HS256 secret for virtual auth tokens (default: generated once per store)"),
    ("mock_jwt_lifetime", int, 3600, "Seconds a virtual auth token stays valid"),
    ("mock_vb_reset", bool, False, "Reset the virtual data to its seeded state at start"),
    ("mock_vb_snapshot", str, "", "Restore this snapshot (a name) at start"),
    ("mock_vb_max_body", int, 1_048_576, "Largest request body a virtual resource accepts (bytes); larger gets 413"),
    ("mock_vb_sweep", int, 60, "Seconds between background sweeps for data aging and expired sessions (0: off)"),
]
DEFAULTS = {name: default for name, _, default, _ in OPTIONS}


def _opt(opts: dict, name: str) -> Any:
    value = opts.get(name)
    return DEFAULTS[name] if value is None else value


def validate_options(opts: dict) -> None:
    """Raise ValueError with a message a person can act on."""
    for name in ("mock_spec", "mock_entities"):
        path = _opt(opts, name)
        if path and not Path(path).is_file():
            raise ValueError(f"{name}: file not found: {path}")
    storage = _opt(opts, "mock_vb_storage")
    if storage not in KINDS:
        raise ValueError(f"mock_vb_storage: {storage!r} is not one of {', '.join(KINDS)}")
    for name in ("mock_vb_session_ttl", "mock_jwt_lifetime", "mock_vb_max_body", "mock_vb_sweep"):
        value = _opt(opts, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name}: a whole number of at least 0, not {value!r}")
    if _opt(opts, "mock_jwt_lifetime") == 0:
        raise ValueError("mock_jwt_lifetime: must be at least 1 second")
    vb_file = _opt(opts, "mock_vb_file")
    if vb_file and not Path(vb_file).parent.exists():
        raise ValueError(f"mock_vb_file: the folder does not exist: {Path(vb_file).parent}")
    snap = _opt(opts, "mock_vb_snapshot")
    if snap:
        try:
            check_name(snap)
        except SnapshotError as e:
            raise ValueError(f"mock_vb_snapshot: {e}") from None
    try:
        if _opt(opts, "mock_spec"):
            model_from_openapi(_opt(opts, "mock_spec"))
        if _opt(opts, "mock_entities"):
            model_from_entities(_opt(opts, "mock_entities"))
    except ModelError as e:
        raise ValueError(str(e)) from None


def build_model(opts: dict, db_path: str | Path | None) -> Model | None:
    """The model from every configured source (entity file first, then spec, then learned)."""
    model, found = Model(), False
    if _opt(opts, "mock_entities"):
        model.merge(model_from_entities(_opt(opts, "mock_entities")))
        found = True
    if _opt(opts, "mock_spec"):
        model.merge(model_from_openapi(_opt(opts, "mock_spec")))
        found = True
    if _opt(opts, "mock_vb_learned") and db_path:
        from .infer import infer

        learned, notes = infer(db_path)
        for note in notes:
            log.info("learned resources: %s", note)
        model.merge(learned)
        found = True
    return model.validate() if found else None


class VirtualBackend:
    def __init__(self, model: Model, db_path: str | Path, *, seed: int = 0, storage: str = "sqlite",
                 json_file: str = "", host: str = "", sessions: str = "", session_ttl: int = 3600,
                 jwt_secret: str = "", jwt_lifetime: int = 3600, reset: bool = False,
                 snapshot: str = "", max_body: int = 1_048_576, sweep: int = 60):
        self.model = model
        self.seed = seed
        self.max_body = max_body
        self.lock = threading.RLock()
        self._off_loop = OffLoop("mockstore-vb")
        self.router = Router(model, host or None)
        self.storage = open_storage(storage, db_path, json_file or None, resources=model.resources)
        self.conn = self.storage.conn if storage == "sqlite" else connect(db_path).conn
        self.snapshots = Snapshots(self.conn)
        self.auth = Auth(model, jwt_secret or store_secret(self.conn), jwt_lifetime)
        self.crud = Crud(model, self.storage, seed, guard=self.auth.guard)
        self.pks = {n: r.pk for n, r in model.resources.items()}
        self.sessions = Sessions(sessions, session_ttl, self.storage, self._fill)
        self.fingerprint = model.fingerprint()
        with self.lock:
            fresh = build_seed(model, seed) if self.snapshots.baseline(self.fingerprint) is None else None
            # one transaction: workers opening one store at once seed it once, and a
            # snapshot that cannot be restored leaves the data as it was
            with self.storage.transaction():
                self.baseline = self.snapshots.baseline(self.fingerprint)
                if self.baseline is None:
                    self.baseline = fresh if fresh is not None else build_seed(model, seed)
                    self.snapshots.set_baseline(self.fingerprint, self.baseline)
                self.sessions.forget_all()
                if reset or not self._initialized():
                    self.reset()
                if snapshot:
                    self.snapshot_restore(snapshot)
        self._stop = threading.Event()
        self._sweeper = None
        if sweep and (model.aging or sessions):
            self._sweeper = threading.Thread(target=self._sweep_loop, args=(sweep,), name="mockstore-vb-sweep", daemon=True)
            self._sweeper.start()

    @classmethod
    def from_options(cls, opts: dict, db_path: str, seed: int) -> "VirtualBackend | None":
        """None when no resource source is configured."""
        validate_options(opts)
        try:
            model = build_model(opts, db_path)
        except ModelError as e:
            raise ValueError(str(e)) from None
        if model is None:
            return None
        return cls(
            model, db_path, seed=seed, storage=_opt(opts, "mock_vb_storage"), json_file=_opt(opts, "mock_vb_file"),
            host=_opt(opts, "mock_vb_host"), sessions=_opt(opts, "mock_vb_sessions"),
            session_ttl=_opt(opts, "mock_vb_session_ttl"), jwt_secret=_opt(opts, "mock_jwt_secret"),
            jwt_lifetime=_opt(opts, "mock_jwt_lifetime"), reset=_opt(opts, "mock_vb_reset"),
            snapshot=_opt(opts, "mock_vb_snapshot"), max_body=_opt(opts, "mock_vb_max_body"),
            sweep=_opt(opts, "mock_vb_sweep"),
        )

    # --- state -----------------------------------------------------------------------

    def _initialized(self) -> bool:
        kind = self.storage.kind
        if kind == "sqlite":
            return self.snapshots.state("vb_data") == self.fingerprint
        if kind == "json":
            return self.storage.meta.get("fingerprint") == self.fingerprint
        return False

    def _mark_initialized(self) -> None:
        if self.storage.kind == "sqlite":
            self.snapshots.set_state("vb_data", self.fingerprint)
        elif self.storage.kind == "json":
            self.storage.set_meta("fingerprint", self.fingerprint)

    def _fill(self, ns: str) -> None:
        self.storage.load(ns, self.baseline, self.pks)

    def dump(self, ns: str = DEFAULT) -> dict[str, list[dict]]:
        with self.lock:
            return self.storage.dump(ns, list(self.model.resources))

    # --- requests --------------------------------------------------------------------

    def template(self, request: Request) -> str | None:
        """The route's path template ('/v2/pets/{id}'), so chaos rules written for an
        endpoint apply to a virtual resource nothing was learned for; None when not ours."""
        route = self.router.match(request)
        if route is None or route.child or route.many:
            return None
        base = "/" + "/".join(s for s in (*route.prefix.split("/"), *route.res.segments) if s)
        return base if route.key is None else f"{base}/{{{route.res.pk}}}"

    async def answer(self, request: Request) -> Response | None:
        """`handle`, off the event loop, on the backend's own thread (`mockstore.offloop`): its
        lock lets one request in at a time anyway."""
        return await self._off_loop.run(self.handle, request)

    def handle(self, request: Request) -> Response | None:
        """Answer a request for a virtual resource, or None when the path is not ours."""
        try:
            with self.lock:
                return self._handle(request)
        except HttpError as e:
            return e.response()
        except Exception as e:  # never take the proxy down; say what happened
            if isinstance(e, sqlite3.OperationalError) and ("locked" in str(e) or "busy" in str(e)):
                # another writer held the store past busy_timeout; the transaction never began
                log.warning("virtual backend: the store stayed locked on %s %s", request.method, request.path)
                return HttpError(503, "the store is busy (another writer holds it); the request was not carried out, "
                                      "try again", headers=[("retry-after", "1")]).response()
            log.exception("virtual backend failed on %s %s", request.method, request.path)
            return HttpError(500, f"the virtual backend failed: {type(e).__name__}: {e}").response()

    def _handle(self, req: Request) -> Response | None:
        method = req.method.upper()
        if method in ("HEAD", "OPTIONS", "CONNECT", "TRACE"):
            return None
        route = self.router.match(req)
        auth_route = route is None and self.model.auth is not None and method in ("POST", "GET")
        if route is None and not auth_route:
            return None
        if len(req.body) > self.max_body:
            return HttpError(413, f"the request body is {len(req.body)} bytes; the limit is {self.max_body} "
                                  f"(mock_vb_max_body)").response()
        with self.storage.transaction():
            ns = self.sessions.namespace(req)
        with self.storage.transaction():
            if auth_route:
                return self.auth.endpoint(req, split_path(req.path), ns, self.storage, self.crud)
            for name in {route.res.name, route.target.name}:
                aging.apply(self.model, self.storage, ns, self.crud, name)
        with self.storage.transaction():
            user, error = self.auth.user(req, ns, self.storage)
            self.auth.require(route.res, method, user, error)
            if route.target is not route.res:
                self.auth.require(route.target, method, user, error)
            return self.crud.handle(route, req, ns, user)

    # --- snapshots, reset, seeding ---------------------------------------------------

    def reset(self) -> None:
        """Back to the seeded state (session copies are dropped too)."""
        with self.lock, self.storage.transaction():
            self.sessions.forget_all()
            self._fill(DEFAULT)
            self._mark_initialized()
            self._changed()

    def snapshot_create(self, name: str, description: str = "") -> dict:
        with self.lock:
            return self.snapshots.create(name, self.dump(), description)

    def snapshot_list(self) -> list[dict]:
        with self.lock:
            return self.snapshots.list()

    def snapshot_restore(self, name: str) -> None:
        with self.lock:
            data = self.snapshots.get(name)["data"]
            with self.storage.transaction():
                self.storage.load(DEFAULT, data, self.pks)
                self._mark_initialized()
                self._changed()

    def _changed(self) -> None:
        """Tell the other processes on this store that the data changed under them (a
        running proxy reloads what it keeps in memory: `reload`)."""
        self.conn.execute("create table if not exists meta (key text primary key, value text)")
        changes.bump(self.conn, "vb")

    def reload(self) -> None:
        """Another process restored a snapshot or reset the data: read again what this one
        keeps in memory (a JSON file's rows; which session copies still exist)."""
        with self.lock:
            self.storage.reload()
            alive = set(self.storage.namespaces())
            for ns in [ns for ns in self.sessions.seen if ns not in alive]:
                del self.sessions.seen[ns]

    def snapshot_delete(self, name: str) -> bool:
        with self.lock:
            return self.snapshots.delete(name)

    def snapshot_save(self, name: str, path: str | os.PathLike) -> Path:
        with self.lock:
            return self.snapshots.save(name, path)

    def snapshot_load(self, path: str | os.PathLike, name: str | None = None) -> dict:
        with self.lock:
            return self.snapshots.load(path, name)

    def seed_file(self, path: str | os.PathLike) -> int:
        """Add a seed file's rows to the data and to the seeded state reset returns to.

        Each row passes the check an HTTP write passes (`Crud.validate`), parents before
        children so references can point into the same file; one bad row and nothing of
        the file is kept (ValueError naming the resource, the row and the field)."""
        data = load_seed_file(path)
        unknown = [r for r in data if r not in self.model.resources]
        if unknown:
            raise ValueError(f"seed: unknown resource(s) {', '.join(map(repr, unknown))}; "
                             f"known: {', '.join(self.model.resources)}")
        n = 0
        baseline = dict(self.baseline)
        with self.lock, self.storage.transaction():
            for res in dependency_order(self.model):
                if res.name not in data:
                    continue
                base = {str(r.get(res.pk)): r for r in baseline.get(res.name, [])}
                for i, row in enumerate(data[res.name], 1):
                    try:
                        row = self.crud.seed(DEFAULT, res, dict(row), set(base))
                    except HttpError as e:
                        raise ValueError(f"seed: {path}: {res.name} row {i}: {e.message}; nothing was seeded") from None
                    base[str(row[res.pk])] = row
                    n += 1
                baseline[res.name] = list(base.values())
            self.snapshots.set_baseline(self.fingerprint, baseline)
        self.baseline = baseline
        return n

    def resources(self) -> list[dict]:
        return [r.describe() for r in self.model.resources.values()]

    def command(self, verb: str, *args: str) -> str:
        """mitmproxy commands: snapshot.create NAME [DESC], snapshot.list, snapshot.restore NAME,
        snapshot.delete NAME, reset, resources."""
        try:
            if verb in ("snapshot", "snapshot.create"):
                s = self.snapshot_create(args[0], " ".join(args[1:]))
                return f"snapshot {s['name']!r} created ({s['rows']} rows)"
            if verb == "snapshot.list":
                return "\n".join(f"{s['name']}\t{s['rows']} rows\t{s['description']}" for s in self.snapshot_list()) or "no snapshots"
            if verb == "snapshot.restore":
                self.snapshot_restore(args[0])
                return f"snapshot {args[0]!r} restored"
            if verb == "snapshot.delete":
                return f"snapshot {args[0]!r} deleted" if self.snapshot_delete(args[0]) else f"no snapshot {args[0]!r}"
            if verb == "reset":
                self.reset()
                return "virtual data reset to the seeded state"
            if verb == "resources":
                return "\n".join(f"{r['name']}\t{r['path']}\t{r['source']}" for r in self.resources())
        except IndexError:
            return f"{verb}: a snapshot name is required"
        except (SnapshotError, ValueError) as e:
            return str(e)
        return f"unknown command {verb!r}"

    # --- background ------------------------------------------------------------------

    def sweep(self, now: float | None = None) -> int:
        """Apply aging to every namespace and drop expired sessions; returns rows affected."""
        n = 0
        with self.lock:
            n += self.sessions.expire(now)
            with self.storage.transaction():
                for ns in self.storage.namespaces():
                    n += aging.apply(self.model, self.storage, ns, self.crud, None, now)
        return n

    def _sweep_loop(self, interval: int) -> None:
        while not self._stop.wait(interval):
            try:
                self.sweep()
            except Exception:
                log.exception("virtual backend sweep failed")

    def close(self) -> None:
        self._stop.set()
        if self._sweeper:
            self._sweeper.join(timeout=5)
        self._off_loop.close()
        with self.lock:
            if self.conn is not getattr(self.storage, "conn", None):
                self.conn.close()
            self.storage.close()
