"""The stub commands and hook inside mitmproxy's test master (what mitmweb's command bar
reaches, which mitmdump cannot): add, list, disable, rm, and the request hook's answer."""

from __future__ import annotations

import asyncio

import pytest
from mitmproxy import exceptions
from mitmproxy.proxy.layers.http import HttpRequestHook
from mitmproxy.test import taddons, tflow

from mockstore.addon import MockStore

STUB = "{name: items, routes: [{method: GET, path: '/items/{id}', defaultResponse: {body: 'item {{request.path.id}}'}}]}"


def flow(path: str):
    f = tflow.tflow()
    f.request.host, f.request.port, f.request.path = "api.test", 80, path
    return f


def test_commands_add_list_disable_and_remove(tmp_path):
    async def main():
        addon = MockStore()
        with taddons.context(addon) as tctx:
            tctx.configure(addon, mock_db=str(tmp_path / "m.db"), mock_latency="none")
            assert addon.state.stub_index is None  # no stubs: the one check per request says so

            async def ask(path):
                f = flow(path)
                await tctx.master.addons.invoke_addon(addon, HttpRequestHook(f))
                return f

            async def settle():
                addon.state.store.flush()
                if await asyncio.to_thread(addon.state.stubs.poll):
                    addon.state.stub_index = addon.state.stubs.index

            assert "1 stub mock(s) added" in addon.commands.stub_add(STUB)
            with pytest.raises(exceptions.CommandError, match="field 'name' is already used"):
                await settle()
                addon.commands.stub_add(STUB)
            with pytest.raises(exceptions.CommandError, match="field 'operator' is unknown"):
                addon.commands.stub_add("{name: x, routes: [{method: GET, path: /x, conditions: [{parameterName: a, "
                               "parameterSource: QUERY, operator: ABOUT, expectedValue: b}]}]}")
            assert addon.commands.stub_list()[0].startswith("items  ACTIVE")
            f = await ask("/items/9")  # learn mode: a stub answers all the same
            assert f.response.content == b"item 9" and f.response.headers["X-Mockstore-Source"] == "stub"
            assert f.marked and "items: GET /items/{id}, default" in f.comment
            addon.commands.stub_disable("items")
            await settle()
            assert addon.state.stub_index is None and (await ask("/items/9")).response is None
            addon.commands.stub_enable("items")
            await settle()
            assert (await ask("/items/9")).response is not None
            addon.commands.stub_rm("items")
            await settle()
            assert addon.commands.stub_list() == ["no stubs (mockstore stub add FILE, or mock_stubs=FILE)"]
            with pytest.raises(exceptions.CommandError, match="no stub mock 'items'"):
                addon.commands.stub_rm("items")
            with pytest.raises(exceptions.OptionsError, match="mock_stubs: no such stubs file"):
                tctx.configure(addon, mock_stubs=str(tmp_path / "missing.yaml"))
            addon.done()

    asyncio.run(main())
