"""What the addon's parts share: the open store and everything that serves from it (the
model, learner, responder, drift watch, chaos, stubs, virtual backend), made from the options,
and its life (opened, persisted, caught up, closed). The option values read on every flow are
kept here too: reading `ctx.options` costs a few microseconds each."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading

from mitmproxy import ctx, exceptions

from .. import changes, chaosrules, control, drift, rebuild, recordings, sessions, slots, stubs, stubwatch, vb
from ..answer import Responder
from ..chaos import Chaos, compile_filter
from ..learn import Learner
from ..model import Model
from ..offloop import OffLoop
from ..options import MAX_WORKER
from ..schemas import SchemaModel
from ..store import ReadOnlyStoreError, Store, StoreError, readonly_for, remove_files

log = logging.getLogger("mockstore")


class State:
    def __init__(self):
        self.store: Store | None = None
        self.model: Model | None = None
        self.learner: Learner | None = None
        self.responder: Responder | None = None
        self.off_loop = OffLoop("mockstore-answers")  # what Responder.answer may read from the disk
        self.drift: drift.DriftWatch | None = None
        self.chaos: Chaos | None = None
        self.vb: vb.VirtualBackend | None = None
        self.faults: dict[str, object] = {}  # flow id -> chaos fault, until its response
        self._error_samples: dict[tuple[str, int], tuple | None] = {}
        self.db_path: str | None = None
        self.slot: slots.Slot | None = None  # the store's worker slot this process records with
        self.learn_lock = threading.Lock()
        self.stubs: stubwatch.StubWatch | None = None
        self.stub_index = None  # the StubIndex while any stub is ACTIVE: one check per request
        self.watch: changes.Watch | None = None
        self._mode_generation = 0  # this process's own mode switches (see changes.Watch)
        self.warned: set[str] = set()
        self.upstream_timeout = 10.0
        self.mode, self.max_body, self.chaos_on = "learn", 1024 * 1024, True
        self.sessions = sessions.Sessions()  # a new client session rewinds recorded sequences
        self.rewinds = 0  # the store's rewind counter when last looked at

    def configure_store(self, updated, reopened: bool) -> None:
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
                "chaos-counts": lambda db: self.chaos.rules.read_counts(db) if self.chaos else None,
                "vb": lambda db: self.vb.reload() if self.vb else None,
                "mode": lambda db: changes.get_setting(db, "mode"),
                "stream": lambda db: changes.get_setting(db, "stream"),
            }, {
                "chaos": lambda: self.chaos.rules.generation if self.chaos else 0,
                "mode": lambda: self._mode_generation,
            })

    def open(self, path: str, slot: int) -> None:
        try:
            store = Store(path, readonly=readonly_for(self.mode))
        except ReadOnlyStoreError as e:
            raise exceptions.OptionsError(
                f"mock_db: {e}; mock_mode={self.mode} writes to it: use mock or replay mode, or a store that can be written"
            ) from None
        except StoreError as e:
            raise exceptions.OptionsError(f"mock_db: {e}") from None
        held = None
        if not store.readonly:  # it may record: with a slot no other process records with
            try:
                held = self._claim_slot(path, slot)
            except slots.SlotError as e:
                store.close()
                raise exceptions.OptionsError(f"mock_db: {e}") from None
            slot = held.number
        try:
            model = Model.load(store.db, slot=slot)
            rebuild.catch_up(store, model, slot)
        except (StoreError, sqlite3.Error) as e:
            store.close()
            if held is not None and held is not self.slot:
                held.release()
            raise exceptions.OptionsError(f"mock_db: cannot read the store {path}: {e}") from None
        if held is self.slot:
            self.slot = None  # kept across the reopen: close() must not let it go
        self.close()
        self.store, self.model, self.db_path, self.slot = store, model, path, held
        self.rewinds = sessions.read_rewinds(store.reader())  # a rewind asked before is done
        log.info(f"mockstore: {path}: {len(model.endpoints)} endpoints, {len(model.recorded)} recorded requests")
        if store.readonly:
            log.warning(f"mockstore: {store.readonly_reason}: serving from it, learning nothing")

    def _claim_slot(self, path: str, wanted: int) -> slots.Slot:
        """Slot `wanted` of the store, or, if another process records with it (a second proxy
        on the store without its own mock_worker), a free one, said in a warning."""
        path = os.path.abspath(path)
        if self.slot is not None and (self.slot.store_path, self.slot.number) == (path, wanted):
            return self.slot  # this process's already (the store opened again)
        held = slots.claim_free(path, wanted, range(MAX_WORKER + 1))
        if held.number != wanted:
            log.warning(f"mockstore: worker slot {wanted} of {path} is held by another proxy on this store; "
                        f"this one records with slot {held.number} (mock_worker gives each its own)")
        return held

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
        if self.slot is not None:  # after the store's last write
            self.slot.release()
            self.slot = None

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

    def catch_up(self) -> None:
        """Count and record what was learned again since the last time (`Learner.catch_up`):
        before anything reads the model, and every `timers.CATCH_UP_INTERVAL`. If a worker thread is
        learning right now, it catches up itself."""
        if self.learner is not None and self.learn_lock.acquire(blocking=False):
            try:
                self.learner.catch_up()
            finally:
                self.learn_lock.release()

    def controls(self, source: str = "command") -> control.Control:
        """The controls (`mockstore.control`) on this proxy's live objects."""
        if self.store is None:
            raise exceptions.CommandError("mockstore has no store open")
        return control.Control(
            self.store, model=self.model, drift=self.drift, chaos=self.chaos.rules if self.chaos else None,
            vb=self.vb, get_mode=lambda: self.mode, set_mode=self._set_mode, source=source,
        )

    def _set_mode(self, mode: str) -> None:
        self._mode_generation += 1
        ctx.options.update(mock_mode=mode)

    def warn_once(self, message: str) -> None:
        kind = message.split(":")[0][:60]
        if kind not in self.warned:
            self.warned.add(kind)
            log.warning(f"mockstore: not learning a body ({message}); the flow passes through untouched")
