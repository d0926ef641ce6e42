"""MockStore, the addon mitmproxy loads: mockstore's options in (`load`, `configure`), the
store's life (`running`, `done`), and its parts, each in a module of its own. The parts that
handle flows and commands are child addons (mitmproxy offers them events itself); the rest
are called from here, in the order they need: the admin API's options are checked before the
store opens, and it stops before the store closes."""

from __future__ import annotations

import gc
import logging

from mitmproxy import ctx, exceptions

from .. import admin, chaosrules, drift, options, stubwatch, vb
from ..store import Store, readonly_for
from .adminserver import AdminServer
from .answering import Answering
from .commands import Commands
from .learning import Learning
from .state import State
from .timers import Timers


class MockStore:
    def __init__(self):
        self.state = State()
        self.adminserver = AdminServer(self.state)
        self.timers = Timers(self.state, self.adminserver.relay_to)
        self.answering = Answering(self.state)  # the one `request` hook
        self.learning = Learning(self.state, self.answering, self.adminserver)  # the one `response` hook
        self.commands = Commands(self.state)
        # mitmproxy offers every event to each of these (mitmdump: a dispatch each), so only
        # the parts with hooks or commands are child addons
        self.addons = [self.answering, self.learning, self.commands]
        self._good_db: str | None = None  # the store of the last update that went through
        self._undoing = False  # mitmproxy is undoing an update that failed
        self._refused: dict[str, str] = {}  # option -> why its command-line text was refused

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
        o, state = ctx.options, self.state
        if self._refused:  # said once, at the first configure: mitmdump stops there
            refused, self._refused = self._refused, {}
            raise exceptions.OptionsError("; ".join(refused.values()))
        try:
            checked = {name: options.check(name, getattr(o, name)) for name in updated & options.OWN}
        except ValueError as e:
            raise exceptions.OptionsError(str(e)) from None
        if "mock_upstream_timeout" in checked:
            state.upstream_timeout = checked["mock_upstream_timeout"]
        if "mock_session_gap" in checked:
            state.sessions.gap = checked["mock_session_gap"]
        state.mode, state.max_body, state.chaos_on = o.mock_mode, o.mock_max_body, o.mock_chaos_enabled
        for module in (drift, chaosrules, stubwatch):
            try:
                module.validate_options(o)
            except ValueError as e:
                raise exceptions.OptionsError(str(e)) from None
        self.adminserver.configure(updated)
        if "connection_strategy" in o and o.connection_strategy != "lazy":
            # mitmproxy connects upstream as soon as a client connects ("eager"); a mock must
            # answer without a real API, so connect only when a request really goes upstream.
            # (Set once the values are known good: setting it configures again, and a value
            # refused then would be refused again on every undo, without end.)
            o.connection_strategy = "lazy"
        undoing, self._undoing = self._undoing, False
        reopened = "mock_db" in updated and o.mock_db != state.db_path
        if reopened and undoing and o.mock_db != self._good_db:
            return  # the failed update had opened nothing before it, nor does its undoing
        if reopened:
            state.open(o.mock_db, o.mock_worker)
        elif state.store is not None and state.store.readonly and "mock_mode" in updated:
            _check_mode(o.mock_mode, state.store)
        if state.store is None:
            return  # nothing to serve from or learn into: every update below needs the store
        try:
            state.configure_store(updated, reopened)
        except exceptions.OptionsError:
            if reopened:
                state.abandon()
            raise
        self._good_db = state.db_path

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """mitmproxy told it `running`: from then on it is told `done` as well."""
        return self.timers.started

    def running(self):
        self.timers.start()
        self.adminserver.start()
        # Everything alive now (mitmproxy, faker, jsonschema and the rest, the loaded model)
        # stays alive: move it out of the collector's sight. Otherwise each full collection,
        # and mitmproxy's flows make many, walks all of it: ~10% of a learned request's CPU.
        gc.collect()
        gc.freeze()

    def done(self):
        self.timers.stop()
        self.answering.failover.close()
        self.adminserver.stop()
        self.state.close()

    def abandon(self) -> None:
        """Stop before serving (options refused, the proxy not started): leave nothing
        behind, the store closed, and removed if this opened it new."""
        self.state.abandon()


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
