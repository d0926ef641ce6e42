"""The admin API and dashboard of a proxy (`mockstore.admin`), served by worker 0 of a store's
pool, and what goes to the dashboards watching: this proxy's exchanges, drift and mode
changes, here or, from another worker, through the relay to worker 0's.

Not a child addon: `MockStore` calls it, so that its options are checked before the store
opens and it stops before the store closes."""

from __future__ import annotations

import time

from mitmproxy import ctx, exceptions, http

from .. import admin, changes, flows
from .state import State


class AdminServer:
    def __init__(self, state: State):
        self.state = state
        self.admin = None  # mockstore.admin.api.AdminServer, once it listens
        self.relay = None  # mockstore.admin.relay.RelayClient: another worker's dashboard watches
        self._bind: tuple[str, int] | None = None

    def configure(self, updated) -> None:
        o = ctx.options
        try:
            self._bind = admin.validate_options(o)
        except ValueError as e:
            raise exceptions.OptionsError(str(e)) from None
        if "mock_mode" in updated and self.admin is not None:
            self.admin.publish({"type": "mode", "mode": o.mock_mode, "time": time.time()})

    def start(self) -> None:
        """The admin API and dashboard: one per store's pool, by worker 0."""
        if self.admin is not None or self._bind is None or ctx.options.mock_worker != 0:
            return
        from ..admin import api

        host, port = self._bind
        o = ctx.options
        token = o.mock_admin_token or admin.store_token(self.state.store.reader())
        listen = o.listen_host if "listen_host" in o and o.listen_host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        port_ = o.listen_port if "listen_port" in o and o.listen_port else 8080
        server = api.AdminServer(
            lambda: self.state.controls(source="api"),
            lambda address: self.state.store.submit(lambda db: changes.put_setting(db, "stream", address, "stream")),
        )
        if server.start(host, port, token, f"http://{listen}:{port_}"):
            self.admin = server

    def relay_to(self, address: str) -> None:
        """Worker 0's dashboard watches (an address) or not (""): send our exchanges there."""
        from ..admin.relay import RelayClient

        if self.relay is not None:
            self.relay.close()
        self.relay = RelayClient(address) if address else None

    def stop(self) -> None:
        if self.relay is not None:
            self.relay.close()
            self.relay = None
        if self.admin is not None:
            self.admin.stop()
            self.admin = None

    def watched(self) -> bool:
        """Whether a dashboard watches: here, or worker 0's through the relay."""
        return self.relay is not None or (self.admin is not None and bool(self.admin.hub.subscribers))

    def publish(self, message: dict) -> None:
        """A message (a drift alert) to the dashboards watching."""
        if self.admin is not None and self.admin.hub.subscribers:
            self.admin.publish(message)
        elif self.relay is not None:
            self.relay.send(message)

    def publish_exchange(self, f: http.HTTPFlow) -> None:
        """The exchange, to the dashboards watching (`mockstore.admin.stream`), as a row of
        `stream.EXCHANGE_FIELDS`: its cost is paid on every flow while someone watches."""
        r, resp = f.request, f.response
        meta = f.metadata.get(flows.META_KEY) or {}
        ep = None
        model = self.state.model
        if model is not None:
            eid = meta.get("endpoint")  # an answer of ours knows its endpoint
            ep = model.endpoints.get(eid) if eid is not None else None
            if ep is None:
                ep, _ = model.find_endpoint(r.method, flows.authority(r), r.path.split("?", 1)[0])
        source = "chaos" if "chaos" in meta else meta.get("source") or ("forwarded" if meta.get("forwarded") else "real")
        start = r.timestamp_start
        row = (start, r.method, ep.host if ep is not None else flows.authority(r), r.path,
               ep.template if ep is not None else None, resp.status_code, source,
               round(((resp.timestamp_end or time.time()) - start) * 1000, 2), "drift" in meta)
        if self.admin is not None:
            self.admin.publish(row)
        else:
            self.relay.send(row)
