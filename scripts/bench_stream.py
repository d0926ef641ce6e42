#!/usr/bin/env python3
"""What a connected dashboard costs the proxy per exchange, measured in one process: the
addon's publish on the response path (`AdminServer.publish_exchange`), the hub's queue and the batch's
JSON (`mockstore.admin.stream`), for a mocked answer whose endpoint is known and for a flow
whose endpoint is looked up. CPU time, so a busy machine disturbs it less than `scripts/bench`.

    python scripts/bench_stream.py            # ~10 s
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mitmproxy.test import tflow  # noqa: E402

from mockstore import flows  # noqa: E402
from mockstore.addon import MockStore  # noqa: E402
from mockstore.admin.stream import Hub, Subscriber  # noqa: E402
from mockstore.exchange import Exchange, Request, Response  # noqa: E402
from mockstore.learn import Learner  # noqa: E402
from mockstore.model import Model  # noqa: E402

N = 50_000


class Sent:
    def done(self) -> bool:
        return True


def main() -> None:
    model = Model()
    learner = Learner(model, None)
    for i in range(1, 101):
        learner.learn(Exchange(Request("GET", "api.test", f"/api/items/{i}", port=80),
                               Response(200, [("content-type", "application/json")], b'{"id": 1}'),
                               started=time.time(), duration_ms=1.0))
    addon = MockStore()
    addon.state.model = model
    hub = Hub()
    sent = []
    hub.subscribers.add(Subscriber(lambda text: sent.append(len(text)) or Sent()))

    class Admin:
        publish = hub.publish

    addon.adminserver.admin = Admin()
    eid = next(iter(model.endpoints))
    for label, meta in (("mocked (endpoint known)", {"source": "recorded", "endpoint": eid}),
                        ("real (endpoint looked up)", {})):
        f = tflow.tflow(resp=True)
        f.request.host, f.request.port, f.request.path = "api.test", 80, "/api/items/17"
        f.metadata[flows.META_KEY] = meta
        sub = next(iter(hub.subscribers))
        t0 = time.process_time()
        for i in range(N):
            addon.adminserver.publish_exchange(f)
            if i % 100 == 99:  # a batch every 100 exchanges (every 100 ms at 1,000 req/s)
                hub.flush(sub)
        hub.flush(sub)
        us = (time.process_time() - t0) / N * 1e6
        print(f"{label}: {us:.1f} us of CPU per exchange while a dashboard watches "
              f"({sum(sent) / len(sent):.0f} B a batch of 100)")
        sent.clear()


if __name__ == "__main__":
    main()
