"""mockstore's addon for mitmproxy, split the way mitmproxy's own addons are: one module per
concern, the hooks thin, options parsed once by the pure functions of `mockstore.options`.

- `mockstore.py`: MockStore, the addon mitmproxy loads: options, the store's life, the parts
- `state.py`: the open store and what serves from it, shared by the parts
- `answering.py`: the request hook (chaos, stubs, virtual backend, recorded, synthesized)
- `failover.py`: forwarding with a deadline and a circuit breaker, and standing in for it
- `learning.py`: the response hook (learning, drift, the failover 5xx, publishing)
- `timers.py`: persist, catch up, changes from other processes, stubs, rewind
- `adminserver.py`: the admin API and dashboard, or the relay to worker 0's
- `commands.py`: the `mockstore.*` commands

It lives in the package (not only in addons/) so that `mockstore serve` loads the very same
object into its lean master; `addons/mockstore.py` is the script for `mitmdump -s`.
"""

from .mockstore import MockStore

__all__ = ["MockStore"]
