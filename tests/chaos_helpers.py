"""A minimal mitmdump script around mockstore.chaos, so chaos is tested through a real proxy
and a real client even without the full mockstore addon:

    mitmdump -s tests/chaos_helpers.py --set mock_chaos=rules.yaml --mode reverse:http://...
"""

from __future__ import annotations

from mitmproxy import ctx, http

from mockstore.chaos import Chaos
from mockstore.chaosrules import OPTIONS, ChaosRules


class ChaosOnly:
    def __init__(self):
        self.rules = ChaosRules(None)
        self.chaos = Chaos(self.rules)
        self.faults = {}

    def load(self, loader):
        for name, typespec, default, help in OPTIONS:
            loader.add_option(name, typespec, default, help)

    def configure(self, updated):
        if "mock_chaos" in updated and ctx.options.mock_chaos:
            self.rules.load_file(ctx.options.mock_chaos)
            self.rules.reload_interval = 0.2
        self.chaos.max_timeout = ctx.options.mock_chaos_timeout

    async def request(self, flow: http.HTTPFlow):
        fault = self.chaos.decide(flow, flow.request.method, None)
        if fault:
            self.faults[flow.id] = fault
            await self.chaos.apply_request(flow, fault)

    def response(self, flow: http.HTTPFlow):
        fault = self.faults.pop(flow.id, None)
        if fault:
            self.chaos.apply_response(flow, fault)

    def error(self, flow: http.HTTPFlow):
        self.faults.pop(flow.id, None)


addons = [ChaosOnly()]
