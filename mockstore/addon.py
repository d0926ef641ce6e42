"""The mockstore addon: options, hooks and commands, delegating to the library.

It lives in the package (not only in addons/) so that `mockstore serve` can load the very
same object into its lean master; `addons/mockstore.py` is the script for `mitmdump -s`.
One addon object does all the dispatch: mitmproxy offers every event to every addon, and
that dispatch is most of its per-request cost.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import sqlite3
import threading
import time
import traceback
from collections.abc import Sequence

from mitmproxy import command, ctx, exceptions, flow, http

from . import admin, changes, chaosrules, control, drift, flows, options, rebuild, recordings, sessions, stubs, stubwatch, upstream, vb
from .answer import Answer, Responder
from .breaker import Breaker
from .chaos import Chaos, compile_filter
from .exchange import Request
from .learn import Learner
from .model import Model
from .schemas import SchemaModel
from .store import ReadOnlyStoreError, Store, StoreError, readonly_for, remove_files
from .stubmatch import SOURCE as STUB

log = logging.getLogger("mockstore")

MODES = options.MODES
STATE = "state"  # the source of answers from the stateful virtual backend
MOCK_HEADER = b"x-mock-enabled"  # X-Mock-Enabled, as flows.take_header looks for it
INLINE_LEARN_LIMIT = 64 * 1024  # bytes; larger bodies are learned on a worker thread
PERSIST_INTERVAL = 1.0  # seconds between handing model changes to the writer
CATCH_UP_INTERVAL = 0.05  # seconds between counting the exchanges learned again (Learner.catch_up)
OFF_LOOP_ENCODED = 16 * 1024  # bytes; a larger compressed body is decoded on a worker thread
UPSTREAM_HEADER = "X-Mockstore-Upstream"  # on a failover answer: why the real API was not used
ERROR = "error"  # the source of an answer mockstore failed to make


class MockStore:
    def __init__(self):
        self.store: Store | None = None
        self.model: Model | None = None
        self.learner: Learner | None = None
        self.responder: Responder | None = None
        self.drift: drift.DriftWatch | None = None
        self.chaos: Chaos | None = None
        self.vb: vb.VirtualBackend | None = None
        self.faults: dict[str, object] = {}  # flow id -> chaos fault, until its response
        self._error_samples: dict[tuple[str, int], tuple | None] = {}
        self.db_path: str | None = None
        self.learn_lock = threading.Lock()
        self._persister: asyncio.Task | None = None
        self.stubs: stubwatch.StubWatch | None = None
        self.stub_index = None  # the StubIndex while any stub is ACTIVE: one check per request
        self._stub_watcher: asyncio.Task | None = None
        self.watch: changes.Watch | None = None
        self._mode_generation = 0  # this process's own mode switches (see changes.Watch)
        self.admin = None  # mockstore.admin.api.AdminServer, once it listens
        self.relay = None  # mockstore.admin.relay.RelayClient: another worker's dashboard watches
        self._admin_bind: tuple[str, int] | None = None
        self._warned: set[str] = set()
        self.upstream_timeout = 10.0
        self.breaker = Breaker()
        self._forwarder: upstream.Forwarder | None = None
        self._forwarder_key: tuple | None = None
        self._mode, self._max_body, self._chaos_on = "learn", 1024 * 1024, True
        self._good_db: str | None = None  # the store of the last update that went through
        self._undoing = False  # mitmproxy is undoing an update that failed
        self._refused: dict[str, str] = {}  # option -> why its command-line text was refused
        self.sessions = sessions.Sessions()  # a new client session rewinds recorded sequences
        self._rewinds = 0  # the store's rewind counter when last looked at

    # --- options -----------------------------------------------------------------------

    def load(self, loader):
        for name, typespec, default, help, choices in _declared():
            loader.add_option(name, typespec, default, help, choices=choices)
        self._refused = _read_deferred(loader.master.options, {name: t for name, t, *_ in _declared()})
        loader.master.options.errored.connect(self._options_failed)
        _script_errors_in_one_line()

    def _options_failed(self, exc) -> None:
        """mitmproxy undoes a failed update by configuring again with the options from before
        it: when that brings back the default store, which nothing had opened, open nothing."""
        self._undoing = True

    def configure(self, updated):
        o = ctx.options
        if self._refused:  # said once, at the first configure: mitmdump stops there
            refused, self._refused = self._refused, {}
            raise exceptions.OptionsError("; ".join(refused.values()))
        try:
            checked = {name: options.check(name, getattr(o, name)) for name in updated & options.OWN}
        except ValueError as e:
            raise exceptions.OptionsError(str(e)) from None
        if "mock_upstream_timeout" in checked:
            self.upstream_timeout = checked["mock_upstream_timeout"]
        if "mock_session_gap" in checked:
            self.sessions.gap = checked["mock_session_gap"]
        # read on every flow: kept here, as reading ctx.options costs a few microseconds each
        self._mode, self._max_body, self._chaos_on = o.mock_mode, o.mock_max_body, o.mock_chaos_enabled
        for module in (drift, chaosrules, stubwatch):
            try:
                module.validate_options(o)
            except ValueError as e:
                raise exceptions.OptionsError(str(e)) from None
        try:
            self._admin_bind = admin.validate_options(o)
        except ValueError as e:
            raise exceptions.OptionsError(str(e)) from None
        if "mock_mode" in updated and self.admin is not None:
            self.admin.publish({"type": "mode", "mode": o.mock_mode, "time": time.time()})
        if "connection_strategy" in o and o.connection_strategy != "lazy":
            # mitmproxy connects upstream as soon as a client connects ("eager"); a mock must
            # answer without a real API, so connect only when a request really goes upstream.
            # (Set once the values are known good: setting it configures again, and a value
            # refused then would be refused again on every undo, without end.)
            o.connection_strategy = "lazy"
        undoing, self._undoing = self._undoing, False
        reopened = "mock_db" in updated and o.mock_db != self.db_path
        if reopened and undoing and o.mock_db != self._good_db:
            return  # the failed update had opened nothing before it, nor does its undoing
        if reopened:
            self._open(o.mock_db, o.mock_worker)
        elif self.store is not None and self.store.readonly and "mock_mode" in updated:
            _check_mode(o.mock_mode, self.store)
        if self.store is None:
            return  # nothing to serve from or learn into: every update below needs the store
        try:
            self._configure_store(updated, reopened)
        except exceptions.OptionsError:
            if reopened:
                self.abandon()
            raise
        self._good_db = self.db_path

    def _configure_store(self, updated, reopened: bool) -> None:
        o = ctx.options
        if reopened or updated & {"mock_drift", "mock_drift_warmup"}:
            self.drift = drift.DriftWatch(self.store, warmup=o.mock_drift_warmup) if o.mock_drift else None
            if self.drift is not None:
                self.drift.on_accept = self._accept_drift
                self.drift.apply_pending()
        if reopened or updated & {"mock_seed", "mock_latency", "mock_redact", "mock_drift", "mock_drift_warmup"}:
            self.catch_up()  # what the learner replaced has queued
            # a read-only store learns nothing: serving from it is all it is open for
            self.learner = None if self.store.readonly else Learner(
                self.model, self.store, redacting=o.mock_redact, drift=self.drift
            )
            self.responder = Responder(
                self.model, self.store, seed=o.mock_seed, latency=o.mock_latency == "learned", redacting=o.mock_redact
            )
        if reopened or updated & {"mock_seed", "mock_chaos", "mock_chaos_timeout"}:
            # the filter compiler from the start, so a bad filter in the file is refused here
            rules = chaosrules.ChaosRules(self.store, seed=o.mock_seed, filter_compiler=compile_filter)
            try:
                if o.mock_chaos:
                    rules.load_file(o.mock_chaos)
            except ValueError as e:
                raise exceptions.OptionsError(f"mock_chaos: {e}") from None
            self.chaos = Chaos(rules, max_timeout=o.mock_chaos_timeout, error_sample=self._error_sample)
        if reopened or "mock_stubs" in updated:
            try:
                self.stubs = stubwatch.StubWatch(self.store, o.mock_stubs)
            except (stubs.StubError, StoreError) as e:
                raise exceptions.OptionsError(f"mock_stubs: {e}") from None
            self.stub_index = self.stubs.index
        vb_names = {name for name, *_ in vb.OPTIONS}
        if reopened or updated & (vb_names | {"mock_seed"}):
            self._open_vb({name: getattr(o, name) for name in vb_names})
        if reopened:
            self.watch = changes.Watch(self.store.reader(), {
                "chaos": lambda db: self.chaos.rules.read_stored(db) if self.chaos else None,
                "vb": lambda db: self.vb.reload() if self.vb else None,
                "mode": lambda db: changes.get_setting(db, "mode"),
                "stream": lambda db: changes.get_setting(db, "stream"),
            }, {
                "chaos": lambda: self.chaos.rules.generation if self.chaos else 0,
                "mode": lambda: self._mode_generation,
            })

    def _open(self, path: str, slot: int) -> None:
        try:
            store = Store(path, readonly=readonly_for(self._mode))
        except ReadOnlyStoreError as e:
            raise exceptions.OptionsError(
                f"mock_db: {e}; mock_mode={self._mode} writes to it: use mock or replay mode, or a store that can be written"
            ) from None
        except StoreError as e:
            raise exceptions.OptionsError(f"mock_db: {e}") from None
        try:
            model = Model.load(store.db, slot=slot)
            rebuild.catch_up(store, model, slot)
        except (StoreError, sqlite3.Error) as e:
            store.close()
            raise exceptions.OptionsError(f"mock_db: cannot read the store {path}: {e}") from None
        self.close()
        self.store, self.model, self.db_path = store, model, path
        self._rewinds = sessions.read_rewinds(store.reader())  # a rewind asked before is done
        log.info(f"mockstore: {path}: {len(model.endpoints)} endpoints, {len(model.recorded)} recorded requests")
        if store.readonly:
            log.warning(f"mockstore: {store.readonly_reason}: serving from it, learning nothing")

    def _open_vb(self, opts: dict) -> None:
        try:
            backend = vb.VirtualBackend.from_options(opts, self.db_path, ctx.options.mock_seed)
        except ValueError as e:
            raise exceptions.OptionsError(str(e)) from None
        except (StoreError, sqlite3.Error) as e:  # it keeps its state in the store
            hint = "; set mock_vb_storage=memory to serve it from a read-only store" if self.store.readonly else ""
            raise exceptions.OptionsError(f"virtual backend: {e}{hint}") from None
        if self.vb is not None:
            self.vb.close()
        self.vb = backend
        if backend is not None:
            names = ", ".join(r["name"] for r in backend.resources())
            log.info(f"mockstore: virtual resources: {names}")

    def _accept_drift(self, alert) -> None:
        """A resolved drift alert whose new shape is accepted joins the learned baseline."""
        ep = self.model.endpoints.get(alert.endpoint) if self.model else None
        if ep is None or alert.sample is None:
            return
        if alert.kind == "request":
            if ep.request is None:
                ep.request = SchemaModel()
            ep.request.add(alert.sample)
        else:
            ep.responses.setdefault(alert.status, SchemaModel()).add(alert.sample)
        ep.dirty = True

    def _error_sample(self, endpoint_id: str, status: int):
        """An error body this endpoint really returned, for chaos errors (read once, kept)."""
        key = (endpoint_id, status)
        if key not in self._error_samples:
            ep = self.model.endpoints.get(endpoint_id)
            resp = None
            if ep is not None:
                resp = recordings.latest_response(self.store.reader(), ep.host, ep.method, ep.template, status)
            self._error_samples[key] = (resp.status, resp.headers, resp.body) if resp is not None else None
        return self._error_samples[key]

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """mitmproxy told it `running`: from then on it is told `done` as well."""
        return self._persister is not None

    def running(self):
        if self._persister is None:
            self._persister = asyncio.get_running_loop().create_task(self._persist_forever())
        if self._stub_watcher is None:
            self._stub_watcher = asyncio.get_running_loop().create_task(self._watch_stubs())
        if self.admin is None and self._admin_bind is not None and ctx.options.mock_worker == 0:
            self._start_admin(*self._admin_bind)
        # Everything alive now (mitmproxy, faker, jsonschema and the rest, the loaded model)
        # stays alive: move it out of the collector's sight. Otherwise each full collection,
        # and mitmproxy's flows make many, walks all of it: ~10% of a learned request's CPU.
        gc.collect()
        gc.freeze()

    def _start_admin(self, host: str, port: int) -> None:
        """The admin API and dashboard (`mockstore.admin`): one per store's pool, by worker 0."""
        from .admin.api import AdminServer

        o = ctx.options
        token = o.mock_admin_token or admin.store_token(self.store.reader())
        listen = o.listen_host if "listen_host" in o and o.listen_host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        port_ = o.listen_port if "listen_port" in o and o.listen_port else 8080
        server = AdminServer(
            lambda: self.controls(source="api"),
            lambda address: self.store.submit(lambda db: changes.put_setting(db, "stream", address, "stream")),
        )
        if server.start(host, port, token, f"http://{listen}:{port_}"):
            self.admin = server

    def _relay_to(self, address: str) -> None:
        """Worker 0's dashboard watches (an address) or not (""): send our exchanges there."""
        from .admin.relay import RelayClient

        if self.relay is not None:
            self.relay.close()
        self.relay = RelayClient(address) if address else None

    def done(self):
        if self.relay is not None:
            self.relay.close()
            self.relay = None
        for task in (self._persister, self._stub_watcher):
            if task is not None:
                task.cancel()
        self.breaker.close()
        if self.admin is not None:
            self.admin.stop()
            self.admin = None
        self.close()

    def abandon(self) -> None:
        """Stop before serving (options refused, the proxy not started): leave nothing
        behind, the store closed, and removed if this opened it new."""
        store = self.store
        self.close()
        self.model = self.learner = self.responder = self.drift = self.chaos = None
        self.db_path = None
        if store is not None and store.created:
            remove_files(store.path)

    def close(self) -> None:
        if self.chaos is not None:
            self.chaos.rules.flush_counters()
        if self.vb is not None:
            self.vb.close()
            self.vb = None
        if self.model is not None:
            self.model.recorded.close()  # its connections would keep the WAL from folding in
        if self.store is not None:
            self.persist()
            self.store.close()
            self.store = None

    def persist(self) -> None:
        if self.model is not None and self.store is not None and not self.store.readonly:
            self.catch_up()
            self.store.submit(self.model.persist())
            if self.chaos is not None:
                self.chaos.rules.flush_counters()  # `chaos list` is at most a second behind
            if self.watch is not None:
                self.watch.schedule(self.store)
            # other workers' alerts and resolutions, ours to them; an acceptance changes the
            # model: not while a worker thread learns (then at the next tick)
            if self.drift is not None and self.learn_lock.acquire(blocking=False):
                try:
                    self.drift.sync()
                finally:
                    self.learn_lock.release()

    def take_changes(self) -> None:
        """What another process changed in the store (the CLI, the admin API served by
        another worker), read on the writer thread at the last tick (`mockstore.changes`)."""
        for concern, value in self.watch.take():
            if concern == "chaos" and value is not None and self.chaos is not None:
                self.chaos.rules.apply_stored(value)
            elif concern == "mode" and value in MODES and value != self._mode:
                ctx.options.update(mock_mode=value)
                log.info(f"mockstore: mode {value} (changed on the store)")
            elif concern == "stream" and ctx.options.mock_worker != 0:
                self._relay_to(value or "")
            elif concern == "vb":
                log.info("mockstore: virtual data changed on the store (snapshot restore or reset)")

    def catch_up(self) -> None:
        """Count and record what was learned again since the last time (`Learner.catch_up`):
        before anything reads the model, and every CATCH_UP_INTERVAL. If a worker thread is
        learning right now, it catches up itself."""
        if self.learner is not None and self.learn_lock.acquire(blocking=False):
            try:
                self.learner.catch_up()
            finally:
                self.learn_lock.release()

    async def _persist_forever(self):
        ticks = max(1, round(PERSIST_INTERVAL / CATCH_UP_INTERVAL))
        n = 0
        while True:
            await asyncio.sleep(CATCH_UP_INTERVAL)
            n += 1
            try:
                if self.watch is not None:
                    self.take_changes()  # what the writer read at the last persist, at once
                if n % ticks:
                    self.catch_up()
                else:
                    self.persist()
                    await self._rewind_if_asked()
            except Exception:  # never let the timer die
                log.exception("mockstore: persisting the model failed")

    async def _watch_stubs(self):
        """Stubs changed in the store (the CLI, a scenario, another worker) or in the stubs
        file reach this proxy within stubwatch.POLL_INTERVAL; reading them is off the loop."""
        while True:
            await asyncio.sleep(stubwatch.POLL_INTERVAL)
            watch = self.stubs
            if watch is None:
                continue
            try:
                if await asyncio.to_thread(watch.poll) and watch is self.stubs:
                    self.stub_index = watch.index
            except Exception:  # never let the timer die
                log.exception("mockstore: reading the stubs failed")

    async def _rewind_if_asked(self) -> None:
        """`mockstore rewind` bumped the store's counter: rewind (read off the event loop)."""
        store, model = self.store, self.model
        if store is None or model is None:
            return

        def read() -> int:
            try:
                return sessions.read_rewinds(store.reader())
            except (StoreError, sqlite3.Error):  # the store went away: nothing asked
                return self._rewinds

        n = await asyncio.to_thread(read)
        if n != self._rewinds and store is self.store:
            self._rewinds = n
            model.reset_cursors()
            log.info("mockstore: rewound recorded sequences (mockstore rewind)")

    # --- hooks -------------------------------------------------------------------------

    # mitmproxy awaits what a hook returns if it is awaitable, so the hooks are plain
    # functions that hand back a coroutine only when there is something to wait for: an
    # exchange learned again makes none (a coroutine and its await cost ~0.5 us a hook).

    def request(self, f: http.HTTPFlow):
        try:
            if f.response is not None or self.responder is None:
                return None
            override = flows.take_header(f.request, MOCK_HEADER)
            mode = self._mode
            if override is not None:
                wanted = override.strip().lower() in ("1", "true", "yes", "on")
                if wanted and mode not in ("mock", "replay"):
                    mode = "mock"
                elif not wanted:
                    mode = "learn"
            chaos = self.chaos is not None and self._chaos_on and self.chaos.rules.active()
            stub = None
            if self.stub_index is not None and not _is_upgrade(f):
                # a stub is what the user asked for: it answers in every mode, learn included
                found = self.stub_index.routes_for(f.request.method, f.request.path.split("?", 1)[0])
                stub = found[0] if found else None
            if stub is None and not chaos and (mode == "learn" or _is_upgrade(f)):
                return None
        except Exception as e:
            if self._mode in ("mock", "replay"):  # a mock never lets a request through
                self._fail(f, e)
                return None
            raise
        return self._stand_in(f, mode, chaos, stub)

    async def _stand_in(self, f: http.HTTPFlow, mode: str, chaos: bool, stub=None) -> None:
        """Whatever goes wrong here, a request mockstore is to answer gets an answer: left
        without one, mitmproxy would forward it to the real API (which mock and replay modes
        must never contact), or, in failover, answer with a dead upstream's error page."""
        try:
            if chaos:
                await self._chaos(f)
                if f.response is not None or not f.live or f.error:
                    return
            if stub is not None:
                await self._stub(f, *stub)
                return
            if mode == "learn" or _is_upgrade(f):
                return
            if mode == "failover":
                await self._failover(f)
            else:
                await self._answer(f, exact_only=mode == "replay")
        except Exception as e:
            if mode == "learn" or not f.live:
                raise
            self._fail(f, e)
        else:
            if mode != "failover" and f.response is None and f.live and not f.error:
                self._fail(f, RuntimeError("no answer was made"))

    def _fail(self, f: http.HTTPFlow, e: BaseException) -> None:
        """Answer a 500 that says mockstore could not answer (source `error`), logged once
        per cause (the exception's type and where it was raised)."""
        frames = traceback.extract_tb(e.__traceback__) if e.__traceback__ else []
        ours = [fr for fr in frames if f"{_PACKAGE}/" in fr.filename] or frames  # the library line that failed
        where = f" at {ours[-1].filename.rsplit('/', 1)[-1]}:{ours[-1].lineno}" if ours else ""
        cause = type(e).__name__ + where
        if cause not in self._warned:
            self._warned.add(cause)
            log.error(f"mockstore: could not answer a request ({cause}); answered 500 instead, never the real API",
                      exc_info=e)
        r = f.request
        body = json.dumps({
            "error": f"mockstore could not answer this request: {type(e).__name__}: {e}",
            "request": f"{r.method} {r.host}:{r.port}{r.path}",
        }).encode()
        f.response = http.Response.make(500, body, {"content-type": "application/json", flows.SOURCE_HEADER: ERROR})
        try:
            flows.mark(f, ERROR, str(e))
        except Exception:  # the answer is what matters
            pass

    async def _chaos(self, f: http.HTTPFlow) -> None:
        r = f.request
        path = r.path.split("?", 1)[0]
        ep, _ = self.model.find_endpoint(r.method, flows.authority(r), path)
        template = ep.template if ep else None
        if template is None and self.vb is not None:  # a virtual resource, unlearned
            template = self.vb.template(Request(r.method, r.host, path))
        fault = self.chaos.decide(
            f, r.method, template,
            (lambda stat: _learned_latency(ep.stats, stat)) if ep else None,
            endpoint_id=ep.id if ep else None,
        )
        if fault is not None:
            self.faults[f.id] = fault
            await self.chaos.apply_request(f, fault)

    async def _answer(self, f: http.HTTPFlow, *, exact_only: bool = False, avoid_errors: bool = False,
                      prefix: str = "", note: str = "") -> Answer | None:
        self.catch_up()
        if _encoded_size(f.request) > OFF_LOOP_ENCODED:
            req, problem = await asyncio.to_thread(flows.to_request, f.request, self._max_body)
        else:
            req, problem = flows.to_request(f.request, self._max_body)
        if problem:
            self._warn_once(f"request body: {problem}")
        if self.vb is not None and await self._virtual(f, req, prefix, body_dropped=problem is not None):
            return None
        if self.sessions.new(req.headers):  # a client starting its run again: sequences too
            self.model.reset_cursors()
        key = self.responder.key(req)
        answer: Answer | None = None if exact_only else self.responder.exact_cached(req, key, avoid_errors=avoid_errors)
        if answer is None:
            answer = await asyncio.to_thread(
                self.responder.answer, req, key, exact_only=exact_only, avoid_errors=avoid_errors
            )
        if answer.delay_ms > 0:
            await asyncio.sleep(answer.delay_ms / 1000)
        flows.respond(f, answer.response, prefix + answer.source, note)
        if answer.endpoint:
            f.metadata[flows.META_KEY]["endpoint"] = answer.endpoint
        return answer

    async def _stub(self, f: http.HTTPFlow, route, values: list[str]) -> None:
        req, problem = flows.to_request(f.request, self._max_body)
        if problem:
            self._warn_once(f"request body: {problem}")
        answer = route.answer(req, values)
        if answer.delay_ms > 0:
            await asyncio.sleep(answer.delay_ms / 1000)
        which = "default" if answer.condition is None else f"condition #{answer.condition + 1}"
        flows.respond(f, answer.response, STUB, f"{answer.mock}: {answer.route}, {which}")
        f.metadata[flows.META_KEY]["stub"] = {"mock": answer.mock, "route": answer.route, "condition": answer.condition}

    async def _virtual(self, f: http.HTTPFlow, req: Request, prefix: str, *, body_dropped: bool) -> bool:
        if body_dropped and f.request.raw_content and "content-encoding" not in f.request.headers:
            req.body = f.request.raw_content  # over mock_max_body: the vb has its own limit (413)
        response = await self.vb.answer(req)
        if response is None:
            return False
        flows.respond(f, response, prefix + STATE)
        return True

    # --- failover ----------------------------------------------------------------------

    async def _failover(self, f: http.HTTPFlow) -> None:
        r = f.request
        name = f"{r.scheme}://{flows.authority(r)}"
        if self.breaker.is_open(name):  # known down: not worth a try
            await self._stand_in_for_upstream(f, "down", f"upstream {name} is down")
            return
        if r.raw_content is None:  # streamed (stream_large_bodies): only mitmproxy can forward it
            return
        started = time.time()
        try:
            forwarder = self._forwarding()
        except ValueError as e:  # the trusted CA options name no usable certificates
            await self._stand_in_for_upstream(f, upstream.TLS, str(e))
            return
        sni = f.server_conn.sni if isinstance(f.server_conn.sni, str) else None
        request = (r.method, r.scheme, r.host, r.port, r.path, list(r.headers.fields), r.raw_content)
        try:
            try:
                reply = await forwarder.forward(*request, sni=sni)
            except upstream.UpstreamError:
                raise
            except Exception as e:  # a request httpx refuses to send (a header it cannot encode, ...)
                log.debug("mockstore: forwarding failed", exc_info=True)
                raise upstream.UpstreamError(upstream.UNREACHABLE, f"forwarding failed: {type(e).__name__}: {e}") from None
        except upstream.UpstreamError as e:
            self.breaker.failed(name, e.cause, self._probe(forwarder, request, sni))
            await self._stand_in_for_upstream(f, e.cause, str(e))
            return
        headers = reply.headers
        bodiless = r.method == "HEAD" or reply.status in (204, 304) or reply.status < 200
        if not bodiless:  # the length of the body read (a chunked one sent with a Content-Length too: not that)
            headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(reply.body)).encode()))
        # as it came: raw bytes under their own content-encoding (Response.make would encode again)
        f.response = http.Response(
            reply.http_version, reply.status, reply.reason, http.Headers(headers), reply.body, None, started, time.time()
        )
        if reply.status < 500:
            self.breaker.succeeded(name)
        # A 5xx is answered from mockstore in the response hook, after it is learned. It is
        # no sign of a dead upstream for the breaker: one failing endpoint would open it for all.
        f.metadata.setdefault(flows.META_KEY, {}).update(forwarded=True, duration_ms=(time.time() - started) * 1000)

    async def _stand_in_for_upstream(self, f: http.HTTPFlow, cause: str, note: str) -> None:
        """A failover answer: never a recorded error when a success of the request is known;
        logged once per endpoint and cause."""
        answer = await self._answer(f, prefix="failover-", note=note, avoid_errors=True)
        if f.response is not None:
            f.response.headers[UPSTREAM_HEADER] = cause
        endpoint = answer.endpoint if answer is not None and answer.endpoint else "a virtual or unknown endpoint"
        key = f"failover\n{endpoint}\n{cause}"
        if key not in self._warned:
            self._warned.add(key)
            source = f.metadata.get(flows.META_KEY, {}).get("source", "?")
            log.warning(f"mockstore: failover for {endpoint}: {note}; answered {source} (logged once per endpoint and cause)")

    def _forwarding(self) -> upstream.Forwarder:
        """The forwarder for the current options (made again when they change)."""
        o = ctx.options
        key = (self.upstream_timeout, o.ssl_insecure, o.ssl_verify_upstream_trusted_ca, o.ssl_verify_upstream_trusted_confdir)
        if key != self._forwarder_key:
            old = self._forwarder
            self._forwarder = upstream.Forwarder(timeout=key[0], tls=upstream.Tls(*key[1:]))
            self._forwarder_key = key
            if old is not None:
                asyncio.get_running_loop().create_task(old.aclose())
        return self._forwarder

    @staticmethod
    def _probe(forwarder: upstream.Forwarder, request: tuple, sni: str | None):
        """How the breaker tells the upstream is back: the failed request sent again when it
        is safe to (GET, HEAD, OPTIONS) is answered, whatever the status (a hanging upstream
        accepts connections); otherwise a connection is made."""
        method, scheme, host, port = request[:4]

        async def probe() -> bool:
            if method in ("GET", "HEAD", "OPTIONS"):
                try:
                    await forwarder.forward(*request, sni=sni)
                    return True
                except upstream.UpstreamError:
                    return False
            return await forwarder.reachable(scheme, host, port, sni)

        return probe

    def response(self, f: http.HTTPFlow):
        fault = self.faults.pop(f.id, None) if self.faults else None
        when = self._when(f, fault)
        fingerprint = None
        if when is not None:
            # the common case: a real exchange like one learned before, queued right here
            fingerprint = flows.fingerprint(f, INLINE_LEARN_LIMIT)
            if fingerprint is not None and self._learn_again(fingerprint, *when):
                when = None
        meta = f.metadata.get(flows.META_KEY)
        failed_over = meta is not None and "source" not in meta and meta.get("forwarded") and f.response.status_code >= 500
        if when is None and fault is None and not failed_over:
            if self.relay is not None or (self.admin is not None and self.admin.hub.subscribers):
                self._publish(f)
            return None
        return self._response(f, fault, when, fingerprint, failed_over)

    async def _response(self, f: http.HTTPFlow, fault, when, fingerprint, failed_over: bool) -> None:
        if when is not None:
            await self._learn(f, *when, fingerprint)
        if failed_over:
            try:
                await self._stand_in_for_upstream(f, upstream.SERVER_ERROR, f"upstream answered {f.response.status_code}")
            except Exception as e:
                self._fail(f, e)
        if fault is not None:
            self.chaos.apply_response(f, fault)
        if self.relay is not None or (self.admin is not None and self.admin.hub.subscribers):
            self._publish(f)

    def _publish(self, f: http.HTTPFlow) -> None:
        """The exchange, to the dashboards watching (`mockstore.admin.stream`), as a row of
        `stream.EXCHANGE_FIELDS`: its cost is paid on every flow while someone watches."""
        r, resp = f.request, f.response
        meta = f.metadata.get(flows.META_KEY) or {}
        ep = None
        if self.model is not None:
            eid = meta.get("endpoint")  # an answer of ours knows its endpoint
            ep = self.model.endpoints.get(eid) if eid is not None else None
            if ep is None:
                ep, _ = self.model.find_endpoint(r.method, flows.authority(r), r.path.split("?", 1)[0])
        source = "chaos" if "chaos" in meta else meta.get("source") or ("forwarded" if meta.get("forwarded") else "real")
        start = r.timestamp_start
        row = (start, r.method, ep.host if ep is not None else flows.authority(r), r.path,
               ep.template if ep is not None else None, resp.status_code, source,
               round(((resp.timestamp_end or time.time()) - start) * 1000, 2), "drift" in meta)
        if self.admin is not None:
            self.admin.publish(row)
        else:
            self.relay.send(row)

    def error(self, f: http.HTTPFlow) -> None:
        self.faults.pop(f.id, None)

    def _when(self, f: http.HTTPFlow, fault) -> tuple[float, float] | None:
        """When a real exchange started and how long the real API took to answer it; None
        for a flow not to learn from (mockstore's own answer, a replayed response)."""
        meta = f.metadata.get(flows.META_KEY)
        if self.learner is None or f.is_replay == "response" or (meta is not None and "source" in meta):
            return None
        started, duration_ms = flows.timing(f)
        if meta is not None and "duration_ms" in meta:  # failover forwarded it itself
            duration_ms = meta["duration_ms"]
        elif fault is not None and fault.effect == "latency":  # the delay chaos held it is ours
            duration_ms = max(0.0, duration_ms - fault.delay_s * 1000)
        return started, duration_ms

    def _learn_again(self, fingerprint, started: float, duration_ms: float) -> bool:
        """Learn an exchange identical to one learned before (see `Learner.learn_again`):
        no conversion, parsing or encoding, most of learning's cost. False if it is not one,
        or if a worker thread is learning right now."""
        if not self.learn_lock.acquire(blocking=False):
            return False
        try:
            return self.learner.learn_again(fingerprint, started, duration_ms) is not None
        finally:
            self.learn_lock.release()

    async def _learn(self, f: http.HTTPFlow, started: float, duration_ms: float, fingerprint) -> None:
        """Learning's full path: an exchange not seen before (or not cheaply)."""
        if _encoded_size(f.request) + _encoded_size(f.response) > OFF_LOOP_ENCODED:
            ex, problem = await asyncio.to_thread(flows.to_exchange, f, self._max_body)
        else:
            ex, problem = flows.to_exchange(f, self._max_body)
        ex.started, ex.duration_ms = started, duration_ms
        if problem:
            self._warn_once(problem)
        big = len(ex.request.body) + len(ex.response.body) > INLINE_LEARN_LIMIT
        if not big and self.learn_lock.acquire(blocking=False):
            try:
                learned = self.learner.learn(ex, record_body=problem is None, fingerprint=fingerprint)
            finally:
                self.learn_lock.release()
        else:
            learned = await asyncio.to_thread(self._learn_locked, ex, problem is None, fingerprint)
        for alert in learned.alerts:
            flows.note(f, "drift", f"{alert.kind} drift, score {alert.score}: {alert.summary}")
            if self.admin is not None and self.admin.hub.subscribers:
                self.admin.publish({"type": "drift", "time": time.time(), **alert.to_dict()})
            elif self.relay is not None:
                self.relay.send({"type": "drift", "time": time.time(), **alert.to_dict()})
            log.warning(f"mockstore drift: {learned.endpoint.id}: {alert.summary} (alert {alert.id or 'new'}, seen {alert.count}x)")

    def _learn_locked(self, ex, record_body: bool, fingerprint):
        with self.learn_lock:
            return self.learner.learn(ex, record_body=record_body, fingerprint=fingerprint)

    def _warn_once(self, message: str) -> None:
        kind = message.split(":")[0][:60]
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning(f"mockstore: not learning a body ({message}); the flow passes through untouched")

    # --- commands ----------------------------------------------------------------------

    def controls(self, source: str = "command") -> control.Control:
        """The controls (`mockstore.control`) on this proxy's live objects."""
        if self.store is None:
            raise exceptions.CommandError("mockstore has no store open")
        return control.Control(
            self.store, model=self.model, drift=self.drift, chaos=self.chaos.rules if self.chaos else None,
            vb=self.vb, get_mode=lambda: self._mode, set_mode=self._set_mode, source=source,
        )

    def _set_mode(self, mode: str) -> None:
        self._mode_generation += 1
        ctx.options.update(mock_mode=mode)

    def _command(self, fn):
        try:
            return fn(self.controls())
        except control.ControlError as e:
            raise exceptions.CommandError(str(e)) from None

    @command.command("mockstore.endpoints")
    def endpoints(self) -> Sequence[str]:
        """The learned endpoints: template, count, p50/p95 latency, status mix."""
        self.catch_up()
        return [f"{e['id']}  n={e['count']} p50={e['p50_ms'] or 0:.1f}ms p95={e['p95_ms'] or 0:.1f}ms "
                f"statuses={e['statuses']}" for e in sorted(self._command(lambda c: c.endpoints()), key=lambda e: e["id"])]

    @command.command("mockstore.flush")
    def flush(self) -> None:
        """Write everything learned so far to the store now."""
        self.persist()
        self.store.flush()

    @command.command("mockstore.rewind")
    def rewind(self) -> None:
        """Replay recorded sequences from their first recording again."""
        self.model.reset_cursors()

    @command.command("mockstore.mode")
    def mode(self, mode: str) -> None:
        """Switch the mode: learn | mock | failover | replay (every worker on the store follows)."""
        try:
            options.check("mock_mode", mode)
        except ValueError as e:
            raise exceptions.CommandError(str(e)) from None
        self._command(lambda c: c.set_mode(mode))

    @command.command("mockstore.drift")
    def drift_alerts(self) -> Sequence[str]:
        """Open contract drift alerts: id, endpoint, score, summary, count."""
        if self.drift is None:
            return ["drift watching is off (mock_drift=false)"]
        return [
            f"#{a['id'] or 'new'} {a['endpoint']} score={a['score']} x{a['count']}: {a['summary']}"
            for a in self._command(lambda c: c.drift_alerts(unresolved_only=True))
        ]

    @command.command("mockstore.resolve")
    def resolve(self, alert_id: int, accept: bool = True) -> str:
        """Resolve a drift alert; accept=true takes the new shape into the baseline."""
        a = self._command(lambda c: c.resolve(alert_id, accept=accept))
        return f"#{a['id']} resolved ({a['resolution']})"

    @command.command("mockstore.chaos.add")
    def chaos_add(self, rule_yaml: str) -> str:
        """Add a chaos rule, written as YAML or JSON: '{endpoint: GET /users/{id}, probability: 0.3, effect: error, status: 503}'."""
        import yaml

        try:
            spec = yaml.safe_load(rule_yaml)
        except yaml.YAMLError as e:
            raise exceptions.CommandError(f"the chaos rule is not valid YAML: {e}") from None
        rule = self._command(lambda c: c.chaos_add(spec))
        return f"chaos rule {rule['id']} added"

    @command.command("mockstore.chaos.rm")
    def chaos_rm(self, rule_id: str) -> str:
        """Remove one chaos rule."""
        self._command(lambda c: c.chaos_remove(rule_id))
        return f"chaos rule {rule_id} removed"

    @command.command("mockstore.chaos.enable")
    def chaos_enable(self, on: bool = True, rule_id: str = "") -> str:
        """Switch chaos on or off: all of it, or one rule (its id)."""
        if rule_id:
            self._command(lambda c: c.chaos_rule_enabled(rule_id, on))
            return f"chaos rule {rule_id} {'enabled' if on else 'disabled'}"
        self._command(lambda c: c.chaos_enabled(on))
        return f"chaos {'enabled' if on else 'disabled'}"

    @command.command("mockstore.chaos.clear")
    def chaos_clear(self) -> None:
        """Remove every chaos rule."""
        self._command(lambda c: c.chaos_clear())

    @command.command("mockstore.stub.list")
    def stub_list(self) -> Sequence[str]:
        """The stub mocks: name, status, delay, routes, conditions, where they came from."""
        return self._stub_watch().describe() or ["no stubs (mockstore stub add FILE, or mock_stubs=FILE)"]

    @command.command("mockstore.stub.add")
    def stub_add(self, stubs_yaml: str) -> str:
        """Add stub mocks, written as YAML or JSON as in a stubs file: '{name: items, routes: [{method: GET, path: /items/{id}, defaultResponse: {body: {}}}]}'."""
        import yaml

        watch = self._stub_watch()
        try:
            mocks = stubs.parse(yaml.safe_load(stubs_yaml), "the command")
        except (stubs.StubError, yaml.YAMLError) as e:
            raise exceptions.CommandError(str(e)) from None
        taken = {m.name for m in watch.mocks} & {m.name for m in mocks}
        if taken:
            raise exceptions.CommandError(f"mock {sorted(taken)[0]!r}: field 'name' is already used by a stored mock")
        self.store.submit(stubs.later(stubs.save, mocks, source="command"))
        return f"{len(mocks)} stub mock(s) added"

    @command.command("mockstore.stub.enable")
    def stub_enable(self, name: str) -> None:
        """Make a stub mock ACTIVE."""
        self._stub_known(name)
        self.store.submit(stubs.later(stubs.update, name, status="ACTIVE"))

    @command.command("mockstore.stub.disable")
    def stub_disable(self, name: str) -> None:
        """Make a stub mock INACTIVE (kept, not answering)."""
        self._stub_known(name)
        self.store.submit(stubs.later(stubs.update, name, status="INACTIVE"))

    @command.command("mockstore.stub.rm")
    def stub_rm(self, name: str) -> None:
        """Remove a stub mock, its routes and conditions."""
        self._stub_known(name)
        self.store.submit(stubs.later(stubs.remove, name))

    def _stub_watch(self) -> stubwatch.StubWatch:
        if self.stubs is None:
            raise exceptions.CommandError("no store open (mock_db)")
        return self.stubs

    def _stub_known(self, name: str) -> None:
        if not any(m.name == name or m.id == name for m in self._stub_watch().mocks):
            raise exceptions.CommandError(f"no stub mock {name!r}")

    @command.command("mockstore.snapshot")
    def snapshot(self, verb: str, name: str = "") -> str:
        """Virtual backend snapshots: create NAME | list | restore NAME | delete NAME."""
        if verb == "list":
            return "\n".join(f"{s['name']}\t{s['rows']} rows\t{s['description']}"
                             for s in self._command(lambda c: c.read_snapshots())) or "no snapshots"
        if verb not in ("create", "restore", "delete"):
            raise exceptions.CommandError(f"unknown snapshot verb {verb!r}: create | list | restore | delete")
        if not name:
            raise exceptions.CommandError(f"snapshot {verb}: a snapshot name is required")
        if verb == "create":
            s = self._command(lambda c: c.snapshot_create(name))
            return f"snapshot {s['name']!r} created ({s['rows']} rows)"
        if verb == "restore":
            self._command(lambda c: c.snapshot_restore(name))
            return f"snapshot {name!r} restored"
        self._command(lambda c: c.snapshot_delete(name))
        return f"snapshot {name!r} deleted"

    @command.command("mockstore.reset")
    def reset(self) -> str:
        """Virtual backend: back to the seeded state."""
        self._command(lambda c: c.reset())
        return "virtual data reset to the seeded state"

    @command.command("mockstore.source")
    def source(self, flows_: Sequence[flow.Flow]) -> Sequence[str]:
        """Where each flow's response came from (real, recorded, adapted, synthesized, ...)."""
        return [f.metadata.get(flows.META_KEY, {}).get("source", "real") for f in flows_]


def _check_mode(mode: str, store: Store) -> None:
    if readonly_for(mode) is False:
        raise exceptions.OptionsError(
            f"mock_mode={mode} writes to the store, and {store.readonly_reason}: use mock or replay "
            f"mode, or a store that can be written"
        )


def _script_errors_in_one_line() -> None:
    """mitmdump logs an error in a script's first `configure` with its traceback, an
    OptionsError too, which is a message for the user (a store that cannot be opened): that
    one is logged as its one line."""
    script_log = logging.getLogger("mitmproxy.addons.script")
    if not any(isinstance(f, _OptionsErrorLine) for f in script_log.filters):
        script_log.addFilter(_OptionsErrorLine())


class _OptionsErrorLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, exceptions.OptionsError):
            record.msg, record.args, record.exc_info = f"{record.getMessage()}: {exc}", (), None
        return True


def _declared() -> list[tuple]:
    """Every option mockstore adds: its own (with their choices) and its parts'."""
    parts = drift.OPTIONS + chaosrules.OPTIONS + stubwatch.OPTIONS + vb.OPTIONS + admin.OPTIONS
    return options.OPTIONS + [(name, typespec, default, help, None) for name, typespec, default, help in parts]


def _read_deferred(opts, types: dict) -> dict[str, str]:
    """Read mockstore's options given as text before it was loaded (mitmdump's `--set`).

    mitmproxy keeps such a `--set` as text and parses it right after this addon's `load`,
    outside any hook: a bad value there is lost silently under mitmdump (the script is left
    unloaded and the proxy runs without mockstore). So they are read here first: a good value
    is handed back typed, a bad one taken out and kept (name -> message) for `configure` to
    refuse with the option's name. An option mitmproxy holds in another shape is left to it."""
    refused: dict[str, str] = {}
    deferred = getattr(opts, "deferred", None)
    if not isinstance(deferred, dict):
        return refused
    for name, value in list(deferred.items()):
        texts = getattr(value, "val", None)
        if name not in types or not isinstance(texts, list):
            continue
        try:
            deferred[name] = options.parse_texts(name, types[name], texts)
        except ValueError as e:
            del deferred[name]
            refused[name] = str(e)
    return refused


def _learned_latency(stats, stat: str) -> float | None:
    """A chaos rule's learned statistic ('p99', 'median', 'max', ...) in milliseconds.
    The latency histogram keeps no mean: the median stands in for it."""
    named = {"median": 50.0, "mean": 50.0, "max": 100.0, "min": 0.0}
    return stats.percentile(named[stat] if stat in named else float(stat.lstrip("p")))


_PACKAGE = __name__.rpartition(".")[0]


def _encoded_size(m: http.Message) -> int:
    """Bytes of a body under a content-encoding (decoding it may cost far more), else 0."""
    raw = m.raw_content
    return len(raw) if raw and "content-encoding" in m.headers else 0


def _is_upgrade(f: http.HTTPFlow) -> bool:
    return "upgrade" in f.request.headers.get("connection", "").lower()
