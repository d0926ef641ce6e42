"""The addon inside mitmproxy's test master: options, hooks on test flows, and commands
(the ones a person runs from mitmweb's command bar, which mitmdump cannot reach)."""

from __future__ import annotations

import asyncio
import json

import pytest
from mitmproxy import exceptions
from mitmproxy.proxy.layers.http import HttpRequestHook
from mitmproxy.test import tflow

from mockstore.addon import MockStore


def user_flow(uid: int, body: dict | None = None, *, status: int = 200):
    f = tflow.tflow(resp=True)
    f.request.host, f.request.port, f.request.scheme = "api.test", 80, "http"
    f.request.path = f"/users/{uid}"
    f.response.status_code = status
    f.response.headers["content-type"] = "application/json"
    f.response.content = json.dumps(body or {"id": uid, "user_id": uid, "name": f"u{uid}"}).encode()
    return f


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "m.db")


async def context(db, **options):
    from mitmproxy.test import taddons

    addon = MockStore()
    tctx = taddons.context(addon)
    tctx.configure(addon, mock_db=db, mock_latency="none", **options)
    return tctx, addon


async def offer_request(tctx, addon, f) -> None:
    """The request hook as mitmproxy offers it: what the hook returns is awaited if it can be."""
    await tctx.master.addons.invoke_addon(addon, HttpRequestHook(f))


@pytest.mark.parametrize(
    "option,value,message",
    [
        ("mock_max_body", 0, "mock_max_body must be a positive number"),
        ("mock_upstream_timeout", "soon", "mock_upstream_timeout must be a positive number of seconds"),
        ("mock_worker", 15, "mock_worker must be 0-14"),
        ("mock_drift_warmup", 0, "mock_drift_warmup"),
        ("mock_spec", "/nonexistent/spec.yaml", "mock_spec: file not found"),
        ("mock_vb_storage", "cloud", "mock_vb_storage"),
    ],
)
def test_bad_options_name_the_option(db, option, value, message):
    async def main():
        tctx, addon = await context(db)
        with pytest.raises(exceptions.OptionsError, match=message):
            tctx.configure(addon, **{option: value})
        addon.done()

    run(main())


def test_hooks_mark_and_comment_what_mockstore_answered(db):
    async def main():
        tctx, addon = await context(db)
        for uid in range(1, 4):
            await tctx.cycle(addon, user_flow(uid))
        f = tflow.tflow()
        f.request.host, f.request.port, f.request.path = "api.test", 80, "/users/2"
        f.request.headers["X-Mock-Enabled"] = "true"
        await offer_request(tctx, addon, f)
        assert "X-Mock-Enabled" not in f.request.headers
        assert f.response.headers["X-Mockstore-Source"] == "recorded"
        assert f.metadata["mockstore"]["source"] == "recorded"
        assert f.marked and "mockstore: recorded" in f.comment
        assert addon.commands.source([f]) == ["recorded"]
        assert addon.commands.endpoints()[0].startswith("GET api.test/users/{id}  n=3")
        addon.done()

    run(main())


def test_volatile_headers_take_the_cheap_path_and_are_recorded_as_they_came(db):
    """An exchange that differs from one learned before only in its volatile headers (the
    date, a request id) is learned again without the full path (and without a coroutine),
    and recorded with its own."""
    async def main():
        tctx, addon = await context(db)
        full = []
        learn = addon.state.learner.learn
        addon.state.learner.learn = lambda *a, **k: full.append(1) or learn(*a, **k)
        for n in range(4):
            f = user_flow(5)
            f.request.headers["X-Request-Id"] = f"req-{n}"
            f.response.headers["Date"] = f"Mon, 23 Nov 2026 10:00:0{n} GMT"
            if n == 3:
                f.response.headers["ETag"] = '"v2"'  # not volatile: a different exchange
            if n in (1, 2):  # learned again: neither hook makes a coroutine for mitmproxy to await
                assert addon.answering.request(f) is None and addon.learning.response(f) is None
            else:
                await tctx.cycle(addon, f)
        assert len(full) == 2
        for _ in range(2):  # as the last one, headers and all
            f = user_flow(5)
            f.request.headers["X-Request-Id"] = "req-3"
            f.response.headers["Date"] = "Mon, 23 Nov 2026 10:00:03 GMT"
            f.response.headers["ETag"] = '"v2"'
            assert addon.answering.request(f) is None and addon.learning.response(f) is None
        assert len(addon.state.learner._queued) == 2  # counted in one go, later ...
        assert " n=6 " in addon.commands.endpoints()[0]  # ... and before anything reads the model
        addon.commands.flush()
        rows = addon.state.store.reader().execute("select req_headers, resp_headers from exchanges order by id").fetchall()
        assert [(dict(json.loads(q))["X-Request-Id"], dict(json.loads(r))["Date"][-12:-4]) for q, r in rows] == [
            (f"req-{n}", f"10:00:0{n}") for n in (0, 1, 2, 3, 3, 3)
        ]
        f = tflow.tflow()
        f.request.host, f.request.port, f.request.path = "api.test", 80, "/users/5"
        f.request.headers["x-mock-enabled"] = "1"  # any case
        await offer_request(tctx, addon, f)
        assert f.response.headers["X-Mockstore-Source"] == "recorded" and "x-mock-enabled" not in f.request.headers
        assert f.response.headers["Date"] == "Mon, 23 Nov 2026 10:00:00 GMT"  # the first recording
        addon.done()

    run(main())


def test_sequences_rewind(db):
    async def main():
        tctx, addon = await context(db)
        for n in (1, 2):
            await tctx.cycle(addon, user_flow(7, {"id": 7, "version": n}))
        tctx.configure(addon, mock_mode="mock")

        async def ask():
            f = tflow.tflow()
            f.request.host, f.request.port, f.request.path = "api.test", 80, "/users/7"
            await offer_request(tctx, addon, f)
            return json.loads(f.response.content)["version"]

        assert [await ask() for _ in range(3)] == [1, 2, 2]
        addon.commands.rewind()
        assert await ask() == 1
        addon.state.store.flush()  # and every other worker on the store is told
        from mockstore.sessions import read_rewinds
        assert read_rewinds(addon.state.store.reader()) == 1
        addon.commands.mode("learn")
        assert tctx.options.mock_mode == "learn"
        addon.done()

    run(main())


def test_drift_commands(db):
    async def main():
        tctx, addon = await context(db, mock_drift_warmup=2)
        for uid in range(1, 4):
            await tctx.cycle(addon, user_flow(uid))
        drifting = user_flow(9, {"id": 9, "userId": 9, "name": "u9"})
        await tctx.cycle(addon, drifting)
        assert drifting.metadata["mockstore"]["drift"].startswith("response drift")
        assert "source" not in drifting.metadata["mockstore"], "a real response stays real"
        assert addon.commands.drift_alerts()[0].startswith("#new "), "numbered by the store as it writes it"
        addon.commands.flush()
        (line,) = addon.commands.drift_alerts()
        alert_id = int(line.split()[0].lstrip("#"))
        assert "user_id" in line
        assert "accepted" in addon.commands.resolve(alert_id)
        assert addon.commands.drift_alerts() == []
        again = user_flow(10, {"id": 10, "userId": 10, "name": "u10"})
        await tctx.cycle(addon, again)
        assert "drift" not in again.metadata.get("mockstore", {})
        with pytest.raises(exceptions.CommandError):
            addon.commands.resolve(12345)
        addon.done()

    run(main())


def test_chaos_commands(db):
    async def main():
        tctx, addon = await context(db, mock_mode="mock")
        await tctx.cycle(addon, user_flow(1))
        assert "added" in addon.commands.chaos_add("{endpoint: 'GET /users/{id}', effect: error, status: 503}")
        f = tflow.tflow()
        f.request.host, f.request.port, f.request.path = "api.test", 80, "/users/1"
        await offer_request(tctx, addon, f)
        assert f.response.status_code == 503
        with pytest.raises(exceptions.CommandError, match="probability"):
            addon.commands.chaos_add("{endpoint: 'GET /x', probability: 1.5, effect: reset}")
        addon.commands.chaos_clear()
        g = tflow.tflow()
        g.request.host, g.request.port, g.request.path = "api.test", 80, "/users/1"
        await offer_request(tctx, addon, g)
        assert g.response.status_code == 200
        addon.done()

    run(main())


def test_snapshot_commands(db, tmp_path):
    entities = tmp_path / "e.yaml"
    entities.write_text("resources:\n  notes:\n    fields: {id: integer, text: {type: string, required: true}}\n")

    async def main():
        tctx, addon = await context(db, mock_entities=str(entities), mock_mode="mock")

        async def call(method, path, body=None):
            f = tflow.tflow()
            f.request.host, f.request.port, f.request.method, f.request.path = "api.test", 80, method, path
            f.request.headers["content-type"] = "application/json"
            f.request.content = json.dumps(body).encode() if body is not None else b""
            await offer_request(tctx, addon, f)
            assert f.response.headers["X-Mockstore-Source"] == "state"
            return f.response

        assert (await call("POST", "/notes", {"text": "a"})).status_code == 201
        assert "created" in addon.commands.snapshot("create", "one")
        assert (await call("POST", "/notes", {"text": "b"})).status_code == 201
        assert "restored" in addon.commands.snapshot("restore", "one")
        listed = json.loads((await call("GET", "/notes")).content)
        items = listed if isinstance(listed, list) else next(v for v in listed.values() if isinstance(v, list))
        assert [n["text"] for n in items] == ["a"]
        assert "reset" in addon.commands.reset()
        addon.done()

    run(main())


def test_a_lasting_loop_failure_is_logged_once_until_it_works_again(monkeypatch, caplog):
    """A store the stub watcher cannot read fails every poll: one traceback, not one a poll;
    once it works again, a new failure is logged again."""
    from mockstore import stubwatch
    from mockstore.addon.state import State
    from mockstore.addon.timers import Timers

    monkeypatch.setattr(stubwatch, "POLL_INTERVAL", 0.01)
    outcomes = iter(["fail"] * 5 + ["ok"] * 2 + ["fail"] * 3)

    class Watch:
        index = None

        def poll(self):
            if next(outcomes, "ok") == "fail":
                raise OSError("unable to open database file")
            return False

    state = State()
    state.stubs = Watch()
    timers = Timers(state, lambda address: None)

    async def main():
        task = asyncio.get_running_loop().create_task(timers._watch_stubs())
        await asyncio.sleep(0.3)
        task.cancel()

    with caplog.at_level("ERROR", logger="mockstore"):
        run(main())
    said = [r for r in caplog.records if "reading the stubs failed" in r.getMessage()]
    assert len(said) == 2, [r.getMessage() for r in said]
