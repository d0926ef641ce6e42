"""Helpers for scripts/bench: the two reference points that are not mockstore itself.

As a mitmdump script (`mitmdump -s scripts/bench_lean.py`): the trivial short-circuit addon,
M0, the most any mitmproxy addon can do in mitmdump's default chain.

As a program, the lean master of `mockstore serve` without mockstore's addon:

    python scripts/bench_lean.py PORT UPSTREAM CONFDIR [--trivial]

bare pass-through (P0 of `serve`), or with only the trivial addon (M0 of the lean master).
"""

from __future__ import annotations

import sys

from mitmproxy import http


class Trivial:
    def request(self, flow: http.HTTPFlow) -> None:
        flow.response = http.Response.make(200, b'{"ok":true}', {"content-type": "application/json"})


addons = [Trivial()]


def main(argv: list[str]) -> None:
    from mockstore.serve import run

    port, upstream, confdir = int(argv[0]), argv[1], argv[2]
    settings = {
        "mode": [f"reverse:{upstream}"], "listen_host": "127.0.0.1", "listen_port": port,
        "confdir": confdir, "connection_strategy": "lazy",
    }
    run(settings, [Trivial()] if "--trivial" in argv else [], with_mockstore=False)


if __name__ == "__main__":
    main(sys.argv[1:])
