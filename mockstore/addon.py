"""The mockstore addon: options, hooks and commands, delegating to the library.

It lives in the package (not only in addons/) so that `mockstore serve` can load the very
same object into its lean master; `addons/mockstore.py` is the script for `mitmdump -s`.
One addon object does all the dispatch: mitmproxy offers every event to every addon, and
that dispatch is most of its per-request cost.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import Sequence

from mitmproxy import command, ctx, exceptions, flow, http

from . import admin, changes, chaosrules, control, drift, flows, rebuild, upstream, vb
from .answer import Answer, Responder
from .chaos import Chaos, compile_filter
from .exchange import Request
from .learn import Learner
from .model import Model, response_from_row
from .schemas import SchemaModel
from .sqltext import to_column
from .store import Store, StoreError

log = logging.getLogger("mockstore")

MODES = ("learn", "mock", "failover", "replay")
STATE = "state"  # the source of answers from the stateful virtual backend
MOCK_HEADER = b"x-mock-enabled"  # X-Mock-Enabled, as flows.take_header looks for it
INLINE_LEARN_LIMIT = 64 * 1024  # bytes; larger bodies are learned on a worker thread
PERSIST_INTERVAL = 1.0  # seconds between handing model changes to the writer
CATCH_UP_INTERVAL = 0.05  # seconds between counting the exchanges learned again (Learner.catch_up)


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
        self.watch: changes.Watch | None = None
        self._mode_generation = 0  # this process's own mode switches (see changes.Watch)
        self.admin = None  # mockstore.admin.api.AdminServer, once it listens
        self.relay = None  # mockstore.admin.relay.RelayClient: another worker's dashboard watches
        self._admin_bind: tuple[str, int] | None = None
        self._warned: set[str] = set()
        self.upstream_timeout = 10.0
        self._mode, self._max_body, self._chaos_on = "learn", 1024 * 1024, True

    # --- options -----------------------------------------------------------------------

    def load(self, loader):
        loader.add_option("mock_mode", str, "learn", "learn | mock | failover | replay.", choices=MODES)
        loader.add_option("mock_db", str, "./mockstore.db", "The SQLite store.")
        loader.add_option("mock_seed", int, 0, "Seed for synthesis, simulated latency and chaos.")
        loader.add_option("mock_latency", str, "learned", "Simulated latency of mocked answers: learned | none.", choices=("learned", "none"))
        loader.add_option("mock_redact", bool, True, "Redact secrets (Authorization, cookies, API keys, token parameters) before storing.")
        loader.add_option("mock_max_body", int, 1024 * 1024, "Bytes of a body learned and recorded; larger bodies pass through unlearned.")
        loader.add_option("mock_upstream_timeout", str, "10", "Seconds to wait for the real API in failover mode before answering from mockstore.")
        loader.add_option("mock_worker", int, 0, "Worker slot (0-15) when several proxy processes share one store.")
        for name, typespec, default, help in drift.OPTIONS + chaosrules.OPTIONS + vb.OPTIONS + admin.OPTIONS:
            loader.add_option(name, typespec, default, help)

    def configure(self, updated):
        o = ctx.options
        if "connection_strategy" in o and o.connection_strategy != "lazy":
            # mitmproxy connects upstream as soon as a client connects ("eager"); a mock must
            # answer without a real API, so connect only when a request really goes upstream.
            o.connection_strategy = "lazy"
        if "mock_max_body" in updated and o.mock_max_body <= 0:
            raise exceptions.OptionsError(f"mock_max_body must be a positive number of bytes, not {o.mock_max_body}")
        if "mock_upstream_timeout" in updated:
            self.upstream_timeout = _positive_seconds(o.mock_upstream_timeout)
        if "mock_worker" in updated and not 0 <= o.mock_worker <= 15:
            raise exceptions.OptionsError(f"mock_worker must be 0-15, not {o.mock_worker}")
        # read on every flow: kept here, as reading ctx.options costs a few microseconds each
        self._mode, self._max_body, self._chaos_on = o.mock_mode, o.mock_max_body, o.mock_chaos_enabled
        for module in (drift, chaosrules):
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
        reopened = "mock_db" in updated and o.mock_db != self.db_path
        if reopened:
            self._open(o.mock_db, o.mock_worker)
        if reopened or updated & {"mock_drift", "mock_drift_warmup"}:
            self.drift = drift.DriftWatch(self.store, warmup=o.mock_drift_warmup) if o.mock_drift else None
            if self.drift is not None:
                self.drift.on_accept = self._accept_drift
                self.drift.apply_pending()
        if reopened or updated & {"mock_seed", "mock_latency", "mock_redact", "mock_drift", "mock_drift_warmup"}:
            self.catch_up()  # what the learner replaced has queued
            self.learner = Learner(self.model, self.store, redacting=o.mock_redact, drift=self.drift)
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
            store = Store(path)
            model = Model.load(store.db, slot=slot)
            rebuild.catch_up(store, model, slot)
        except StoreError as e:
            raise exceptions.OptionsError(f"mock_db: {e}") from None
        self.close()
        self.store, self.model, self.db_path = store, model, path
        log.info(f"mockstore: {path}: {len(model.endpoints)} endpoints, {len(model.recorded)} recorded requests")

    def _open_vb(self, opts: dict) -> None:
        try:
            backend = vb.VirtualBackend.from_options(opts, self.db_path, ctx.options.mock_seed)
        except ValueError as e:
            raise exceptions.OptionsError(str(e)) from None
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
            row = None
            if ep is not None:
                row = self.store.reader().execute(
                    "select status, resp_headers, resp_body from exchanges where host = ? and method = ? "
                    "and template = ? and status = ? order by id desc limit 1",
                    [to_column(ep.host), to_column(ep.method), to_column(ep.template), status],
                ).fetchone()
            if row is not None:
                resp = response_from_row(*row)
                row = (resp.status, resp.headers, resp.body)
            self._error_samples[key] = row
        return self._error_samples[key]

    # --- lifecycle ---------------------------------------------------------------------

    def running(self):
        if self._persister is None:
            self._persister = asyncio.get_running_loop().create_task(self._persist_forever())
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
        if self._persister is not None:
            self._persister.cancel()
        if self.admin is not None:
            self.admin.stop()
            self.admin = None
        self.close()

    def close(self) -> None:
        if self.chaos is not None:
            self.chaos.rules.flush_counters()
        if self.vb is not None:
            self.vb.close()
            self.vb = None
        if self.store is not None:
            self.persist()
            self.store.close()
            self.store = None

    def persist(self) -> None:
        if self.model is not None and self.store is not None:
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
            except Exception:  # never let the timer die
                log.exception("mockstore: persisting the model failed")

    # --- hooks -------------------------------------------------------------------------

    # mitmproxy awaits what a hook returns if it is awaitable, so the hooks are plain
    # functions that hand back a coroutine only when there is something to wait for: an
    # exchange learned again makes none (a coroutine and its await cost ~0.5 us a hook).

    def request(self, f: http.HTTPFlow):
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
        if not chaos and (mode == "learn" or _is_upgrade(f)):
            return None
        return self._stand_in(f, mode, chaos)

    async def _stand_in(self, f: http.HTTPFlow, mode: str, chaos: bool) -> None:
        if chaos:
            await self._chaos(f)
            if f.response is not None or not f.live or f.error:
                return
            if mode == "learn" or _is_upgrade(f):
                return
        if mode == "failover":
            await self._failover(f)
        else:
            await self._answer(f, exact_only=mode == "replay")

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
                      prefix: str = "", note: str = "") -> None:
        self.catch_up()
        req, problem = flows.to_request(f.request, self._max_body)
        if problem:
            self._warn_once(f"request body: {problem}")
        if self.vb is not None and await self._virtual(f, req, prefix, body_dropped=problem is not None):
            return
        key = self.responder.key(req)
        answer: Answer | None = None if exact_only or avoid_errors else self.responder.exact_cached(req, key)
        if answer is None:
            answer = await asyncio.to_thread(
                self.responder.answer, req, key, exact_only=exact_only, avoid_errors=avoid_errors
            )
        if answer.delay_ms > 0:
            await asyncio.sleep(answer.delay_ms / 1000)
        flows.respond(f, answer.response, prefix + answer.source, note)
        if answer.endpoint:
            f.metadata[flows.META_KEY]["endpoint"] = answer.endpoint

    async def _virtual(self, f: http.HTTPFlow, req: Request, prefix: str, *, body_dropped: bool) -> bool:
        if body_dropped and f.request.raw_content and "content-encoding" not in f.request.headers:
            req.body = f.request.raw_content  # over mock_max_body: the vb has its own limit (413)
        response = await asyncio.to_thread(self.vb.handle, req)
        if response is None:
            return False
        flows.respond(f, response, prefix + STATE)
        return True

    async def _failover(self, f: http.HTTPFlow) -> None:
        r = f.request
        started = time.time()
        try:
            status, headers, body = await asyncio.to_thread(
                upstream.forward, r.method, r.scheme, r.host, r.port, r.path,
                list(r.headers.items(multi=True)), r.raw_content or b"",
                timeout=self.upstream_timeout, verify=not ctx.options.ssl_insecure,
            )
        except upstream.UpstreamError as e:
            await self._answer(f, prefix="failover-", note=str(e))
            return
        f.response = http.Response.make(status, body, http.Headers([(k.encode(), v.encode()) for k, v in headers]))
        f.response.timestamp_start = started
        f.metadata.setdefault(flows.META_KEY, {}).update(forwarded=True, duration_ms=(time.time() - started) * 1000)

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
        failed_over = meta is not None and meta.get("forwarded") and f.response.status_code >= 500
        if when is None and fault is None and not failed_over:
            if self.relay is not None or (self.admin is not None and self.admin.hub.subscribers):
                self._publish(f)
            return None
        return self._response(f, fault, when, fingerprint, failed_over)

    async def _response(self, f: http.HTTPFlow, fault, when, fingerprint, failed_over: bool) -> None:
        if when is not None:
            await self._learn(f, *when, fingerprint)
        if failed_over:
            await self._answer(f, prefix="failover-", note=f"upstream answered {f.response.status_code}", avoid_errors=True)
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
        """Where each flow's response came from (real, recorded, synthesized, ...)."""
        return [f.metadata.get(flows.META_KEY, {}).get("source", "real") for f in flows_]


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1
    if not value > 0:
        raise exceptions.OptionsError(f"mock_upstream_timeout must be a positive number of seconds, not {text!r}")
    return value


def _learned_latency(stats, stat: str) -> float | None:
    """A chaos rule's learned statistic ('p99', 'median', 'max', ...) in milliseconds.
    The latency histogram keeps no mean: the median stands in for it."""
    named = {"median": 50.0, "mean": 50.0, "max": 100.0, "min": 0.0}
    return stats.percentile(named[stat] if stat in named else float(stat.lstrip("p")))


def _is_upgrade(f: http.HTTPFlow) -> bool:
    return "upgrade" in f.request.headers.get("connection", "").lower()
