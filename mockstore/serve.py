"""`mockstore serve`: a lean mitmproxy master with only the addons a mock server needs.

mitmdump loads ~36 default addons and offers every event to each of them; most of a
short-circuited request's CPU goes there. This master loads Core, Proxyserver, NextLayer,
TlsConfig, ErrorCheck and KeepServing, plus mockstore's addon, and behaves the same for
everything mockstore does (the end-to-end tests run through both).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterable

from mitmproxy import master, options
from mitmproxy.addons import core, errorcheck, keepserving, next_layer, proxyserver, tlsconfig

from .addon import MockStore

# In mock mode with no real API there is nothing to forward to, yet mitmproxy needs a mode
# that accepts plain HTTP requests: a reverse proxy to a port nothing listens on.
NOWHERE = "reverse:http://127.0.0.1:9"


def lean_addons() -> list:
    return [
        core.Core(),
        proxyserver.Proxyserver(),
        next_layer.NextLayer(),
        tlsconfig.TlsConfig(),
        keepserving.KeepServing(),
        errorcheck.ErrorCheck(),
    ]


async def _run(settings: dict, extra_addons: Iterable) -> None:
    m = master.Master(options.Options(), with_termlog=True)
    m.addons.add(*lean_addons(), MockStore(), *extra_addons)
    m.options.update(**settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, m.shutdown)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not on this platform
            pass
    await m.run()


def run(settings: dict, extra_addons: Iterable = ()) -> None:
    """Run a lean master with these options (mitmproxy's and mockstore's) until stopped."""
    asyncio.run(_run(settings, list(extra_addons)))
