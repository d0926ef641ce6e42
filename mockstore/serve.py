"""`mockstore serve`: a lean mitmproxy master with only the addons a mock server needs.

mitmdump loads ~36 default addons and offers every event to each of them; most of a
short-circuited request's CPU goes there. This master loads Core, Proxyserver, NextLayer,
TlsConfig and ErrorCheck, plus mockstore's addon, and behaves the same for
everything mockstore does (the end-to-end tests run through both).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
import sys
from collections.abc import Iterable

from mitmproxy import addonmanager, exceptions, http, master, options
from mitmproxy.addons import core, errorcheck, next_layer, proxyserver, tlsconfig

from . import options as mockstore_options
from .addon import MockStore

# In mock mode with no real API there is nothing to forward to, yet mitmproxy needs a mode
# that accepts plain HTTP requests: a reverse proxy to a port nothing listens on.
NOWHERE = "reverse:http://127.0.0.1:9"


class HandlerIndex(addonmanager.AddonManager):
    """mitmproxy's AddonManager, offering an event only to the addons that handle it.

    mitmproxy's own walks the whole chain for every event (a generator, a context manager and
    a coroutine per addon, whether it has a handler or not), and each flow event comes twice
    (the event, then `update`): ~50 addon visits a request, a quarter of the lean master's
    CPU. This one keeps, per event name, the handlers of the chain, in chain order, found
    again whenever an addon is added or removed. Errors are logged per handler by mitmproxy's
    `safecall`, as it does per addon; AddonHalt stops the event, as it does there.
    """

    _handlers: dict

    @classmethod
    def adopt(cls, manager: addonmanager.AddonManager) -> bool:
        """Make the master's manager (already wired to the options) one of these; False, and
        mitmproxy's own left as it is, if this mitmproxy's manager is not the one known."""
        known = all(hasattr(addonmanager, n) for n in ("safecall", "traverse")) and all(
            callable(getattr(addonmanager.AddonManager, n, None)) for n in ("_iter_hooks", "trigger_event", "add", "remove", "clear")
        )
        if not known or type(manager) is not addonmanager.AddonManager:
            return False
        manager.__class__ = cls
        manager._handlers = {}
        return True

    def add(self, *addons):
        try:
            return super().add(*addons)
        finally:
            self._handlers = {}

    def remove(self, addon):
        try:
            return super().remove(addon)
        finally:
            self._handlers = {}

    def clear(self):
        try:
            return super().clear()
        finally:
            self._handlers = {}

    async def trigger_event(self, event) -> None:
        handlers = self._handlers.get(event.name)
        if handlers is None:
            handlers = [func for a in self.chain for _, func in self._iter_hooks(a, event)]
            self._handlers[event.name] = handlers
        args = event.args()
        for func in handlers:
            try:
                res = func(*args)
                if res is not None and inspect.isawaitable(res):
                    await res
            except exceptions.AddonHalt:
                return
            except Exception:
                # reported by mitmproxy's own `safecall`, as before; entering it only here
                # saves a context manager per handler per event (~1.5 us, a tenth of a
                # learned request's share)
                with addonmanager.safecall():
                    raise


def skip_type_checks() -> None:
    """mitmproxy type-checks every field of every request and response it builds, in
    `MessageData.__post_init__`, which it defines only `if __debug__` (unless Python runs with
    -O): a development check, and about a quarter of a short-circuited request's CPU. The
    lean master goes without it, as under `python -O` (measured with scripts/bench: the lean
    master with a trivial addon goes from ~2,200 to ~2,900 req/s). In this process only."""
    if "__post_init__" in vars(http.MessageData):
        http.MessageData.__post_init__ = _unchecked


def _unchecked(self) -> None:
    pass


def lean_addons() -> list:
    return [
        core.Core(),
        proxyserver.Proxyserver(),
        next_layer.NextLayer(),
        tlsconfig.TlsConfig(),
        errorcheck.ErrorCheck(),
    ]


async def _run(settings: dict, extra_addons: Iterable, with_mockstore: bool) -> None:
    # As mitmdump does, less its debug level: termlog shows what reaches the root logger, and
    # debug records on every flow cost time even when nobody shows them.
    logging.getLogger().setLevel(logging.DEBUG if settings.get("termlog_verbosity") == "debug" else logging.INFO)
    for noisy in ("tornado", "asyncio", "hpack", "quic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    m = master.Master(options.Options(), with_termlog=True)
    HandlerIndex.adopt(m.addons)
    mock = MockStore() if with_mockstore else None
    m.addons.add(*lean_addons(), *([mock] if mock else []), *extra_addons)
    loop = asyncio.get_running_loop()
    try:
        apply_settings(m.options, settings)
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, m.shutdown)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - not on this platform
                pass
        await m.run()
    finally:
        # mitmproxy tells addons `done` only if the proxy ran: an option refused or a port
        # taken ends it before, with the store open (and perhaps just created)
        if mock is not None and not mock.started:
            mock.abandon()
        loop.set_exception_handler(_quiet_when_cancelled)


def _quiet_when_cancelled(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """Once the proxy has stopped, `asyncio.run` cancels the connections still open (a client's
    keep-alive); Python 3.11's stream callback reports each as an error with a traceback
    ("Exception in callback ... CancelledError"), 3.12 does not."""
    if not isinstance(context.get("exception"), asyncio.CancelledError):
        loop.default_exception_handler(context)


def apply_settings(opts: options.Options, settings: dict) -> None:
    """Set options given typed (from the command line's own flags) or as text (`--set
    NAME=VALUE`, read the way mitmproxy reads its own `--set`, but with errors that name the
    option), all at once."""
    typed = {}
    for k, v in settings.items():
        if k not in opts:
            raise exceptions.OptionsError(f"--set {k}: no such option (mockstore's are listed in its README; "
                                          f"mitmproxy's: mitmdump --options)")
        typespec = opts._options[k].typespec
        if isinstance(v, str) and typespec is not str:
            try:
                v = mockstore_options.parse(k, typespec, v) if k.startswith("mock_") else opts._parse_setval(opts._options[k], [v])
            except (ValueError, exceptions.OptionsError) as e:
                message = str(e)
                raise exceptions.OptionsError(message if k in message else f"{k}: {message}") from None
        if k in mockstore_options.OWN:
            # checked before the update: a refused update is rolled back by configuring the
            # addon with the previous values, the default store (./mockstore.db) among them
            try:
                mockstore_options.check(k, v)
            except ValueError as e:
                raise exceptions.OptionsError(str(e)) from None
        typed[k] = v
    opts.update(**typed)


def share_port() -> None:
    """Let several processes listen on one TCP port: Linux's SO_REUSEPORT, the kernel spreading
    new connections over the listeners. mitmproxy binds with `asyncio.start_server(handler,
    host, port)` and has no option for it, so its TCP listen is wrapped, in this process only;
    UDP modes and port 0 keep mitmproxy's own listen (they cannot be shared)."""
    from mitmproxy.proxy import mode_servers

    cls = mode_servers.AsyncioServerInstance
    if getattr(cls.listen, "shares_port", False):
        return
    original = cls.listen

    async def listen(self, host: str, port: int):
        if self.mode.transport_protocol != "tcp" or port == 0:
            return await original(self, host, port)
        return [await asyncio.start_server(self.handle_stream, host or None, port, reuse_port=True)]

    listen.shares_port = True
    cls.listen = listen


def log_line_by_line(stream) -> None:
    """One write per line, as it happens. Several workers share one stdout: into a file or a
    pipe Python writes 8 KB chunks that end mid-line, and unbuffered (PYTHONUNBUFFERED) a
    printed line is two writes, its text and its newline; either way another worker's line
    could land inside one."""
    if hasattr(stream, "reconfigure"):
        stream.reconfigure(line_buffering=True, write_through=False)


def run(settings: dict, extra_addons: Iterable = (), *, with_mockstore: bool = True, shared_port: bool = False) -> None:
    """Run a lean master with these options (mitmproxy's and mockstore's) until stopped.

    `shared_port`: listen with SO_REUSEPORT, one of several workers (see mockstore.workers).
    `with_mockstore=False`: the bare lean master, for measuring what mockstore adds."""
    log_line_by_line(sys.stdout)
    if shared_port:
        share_port()
    skip_type_checks()
    asyncio.run(_run(settings, list(extra_addons), with_mockstore))
