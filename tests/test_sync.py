"""Several processes learning into one store add up to one process that saw it all
(mockstore.sync), and a store opened after a kill counts every stored row (mockstore.rebuild)."""

from __future__ import annotations

import json
import random
import sqlite3

import pytest

from mockstore import rebuild
from mockstore.exchange import Exchange, Request, Response
from mockstore.learn import Learner
from mockstore.model import Model
from mockstore.store import Store

HOST = "api.test"


def exchange(path: str, body: dict, *, status: int = 200, ms: float = 5.0, query=()) -> Exchange:
    return Exchange(
        Request("GET", HOST, path, list(query), scheme="http", port=80),
        Response(status, [("content-type", "application/json")], json.dumps(body).encode()),
        started=1_700_000_000.0, duration_ms=ms,
    )


def traffic(seed: int, names: list[str]) -> list[Exchange]:
    rng = random.Random(seed)
    out = []
    for i in range(40):
        uid = rng.randint(1, 30)
        out.append(exchange(f"/users/{uid}", {"id": uid, "name": f"u{uid}"}, ms=rng.uniform(1, 80), query=[("page", str(i % 3))]))
        if i % 4 == 0:
            out.append(exchange(f"/users/{uid}", {"error": "gone"}, status=404, ms=2.0))
    for name in names:  # slugs: each side alone has too few to fold, both together have enough
        out.append(exchange(f"/things/{name}", {"name": name, f"only_{seed}": True}))
    return out


class Proc:
    """One proxy process's learning, without the proxy: a store, a model, a learner."""

    def __init__(self, path, slot: int):
        self.store = Store(path)
        self.model = Model.load(self.store.db, slot=slot)
        self.learner = Learner(self.model, self.store)

    def learn(self, exchanges) -> None:
        for ex in exchanges:
            self.learner.learn(ex)

    def persist(self) -> None:
        self.store.submit(self.model.persist())
        assert self.store.flush()
        self.model.apply_synced()

    def close(self):
        self.store.close()


def summary(model: Model) -> dict:
    out = {}
    for ep_id, ep in model.endpoints.items():
        s = ep.stats
        out[ep_id] = {
            "count": s.count, "statuses": dict(s.statuses), "latency": dict(s.latency),
            "types": dict(s.content_types), "query": {k: v["count"] for k, v in s.query.items()},
            "schemas": {k: (m.to_schema(), m.samples) for k, m in ep.schema_models().items()},
        }
    return out


def test_two_processes_add_up_to_one_that_saw_it_all(tmp_path):
    a_traffic = traffic(1, ["alpha", "beta", "gamma"])
    b_traffic = traffic(2, ["delta", "epsilon", "zeta"])

    one = Proc(tmp_path / "one.db", 0)
    one.learn(a_traffic + b_traffic)
    one.persist()
    expected = summary(one.model)
    assert f"GET {HOST}/things/{{slug}}" in expected  # six slugs fold, three would not
    one.close()

    path = tmp_path / "shared.db"
    a, b = Proc(path, 1), Proc(path, 2)
    # interleaved: each persists part of its traffic while the other learns
    a.learn(a_traffic[:20]); a.persist()
    b.learn(b_traffic[:30]); b.persist()
    a.learn(a_traffic[20:]); a.persist()
    b.learn(b_traffic[30:]); b.persist()
    a.persist(); b.persist(); a.persist()  # each sees the other's last write

    assert summary(Model.load(Store(path).db)) == expected  # the store
    assert summary(a.model) == expected  # and each process's own model, kept current
    assert summary(b.model) == expected
    rows = sqlite3.connect(path).execute("select count(*) from exchanges").fetchone()[0]
    assert rows == len(a_traffic) + len(b_traffic)
    a.close(); b.close()


def test_a_fold_in_one_process_moves_what_the_other_counted(tmp_path):
    path = tmp_path / "shared.db"
    a, b = Proc(path, 1), Proc(path, 2)
    b.learn([exchange("/things/alpha", {"name": "alpha"})])
    b.persist()
    a.persist()  # a knows /things/alpha as b counted it
    a.learn([exchange(f"/things/{n}", {"name": n}) for n in ("beta", "gamma", "delta", "epsilon", "zeta")])
    a.persist()  # six rare literals: a folds them, b's row among them
    b.learn([exchange("/things/alpha", {"name": "alpha"})])
    b.persist(); a.persist(); b.persist()
    for model in (a.model, b.model, Model.load(Store(path).db)):
        counts = {ep_id: ep.count for ep_id, ep in model.endpoints.items()}
        assert counts == {f"GET {HOST}/things/{{slug}}": 7}, counts
    a.close(); b.close()


def test_a_process_that_never_timed_an_endpoint_takes_the_stores_ema(tmp_path):
    """The EMA is not a count and does not add up; a process with none of its own (worker 0
    serving the admin API, while worker 1 took the traffic) shows the store's."""
    path = tmp_path / "shared.db"
    a, b = Proc(path, 1), Proc(path, 2)
    b.learn([exchange("/users/1", {"id": 1}, ms=40.0), exchange("/users/2", {"id": 2}, ms=20.0)])
    b.persist()
    a.persist()
    (ep,) = a.model.endpoints.values()
    assert ep.stats.count == 2 and ep.stats.ema_ms == b.model.endpoints[ep.id].stats.ema_ms is not None
    a.learn([exchange("/users/3", {"id": 3}, ms=1000.0)])  # its own, from there on
    assert ep.stats.ema_ms > b.model.endpoints[ep.id].stats.ema_ms
    a.close(); b.close()


def test_drift_checks_add_up_across_processes(tmp_path):
    """The responses the drift watch checked and saw drift are counts of the endpoint's: each
    process's add up in the store and in every process (the admin API of a pool shows all)."""
    path = tmp_path / "shared.db"
    a, b = Proc(path, 1), Proc(path, 2)
    for proc, checked, drifted in ((a, 3, 1), (b, 4, 2)):
        proc.learn([exchange("/users/1", {"id": 1})])
        (ep,) = proc.model.endpoints.values()
        ep.stats.drift_checked += checked  # as DriftWatch.check_response counts
        ep.stats.drift_drifted += drifted
        proc.persist()
    a.persist()
    for model in (a.model, b.model, Model.load(Store(path).db)):
        (ep,) = model.endpoints.values()
        assert (ep.stats.drift_checked, ep.stats.drift_drifted) == (7, 3)
    a.close(); b.close()


def test_opening_after_a_kill_counts_every_stored_row(tmp_path):
    path = tmp_path / "s.db"
    p = Proc(path, 0)
    p.learn(traffic(1, []))
    p.persist()
    late = [exchange(f"/orders/{i}", {"id": i}) for i in range(1, 8)]
    p.learn(late)
    assert p.store.flush()  # the rows are stored; the model's write never happens (a kill)
    p.store._thread = type("Dead", (), {"is_alive": lambda self: False})()
    p.store.db.conn.close()

    store = Store(path)
    stored = store.db.execute("select count(*) from exchanges").fetchone()[0]
    model = Model.load(store.db)
    assert f"GET {HOST}/orders/{{id}}" not in model.endpoints
    assert rebuild.catch_up(store, model, 0) == len(late)
    assert model.endpoints[f"GET {HOST}/orders/{{id}}"].count == len(late)
    assert sum(ep.count for ep in model.endpoints.values()) == stored
    store.submit(model.persist())
    store.flush()
    model = Model.load(store.db)
    assert rebuild.catch_up(store, model, 0) == 0  # counted once, not again
    assert sum(ep.count for ep in model.endpoints.values()) == stored
    store.close()


def test_rebuild_learns_the_model_again_from_the_rows(tmp_path):
    path = tmp_path / "s.db"
    p = Proc(path, 0)
    p.learn(traffic(3, ["alpha", "beta"]))
    p.persist()
    expected = summary(p.model)
    p.store.submit(lambda db: db.execute("update endpoints set stats = 'garbage', count = 0"))
    p.close()
    store = Store(path)
    assert rebuild.rebuild(store)[0] == len(traffic(3, ["alpha", "beta"]))
    got = summary(Model.load(store.db))
    store.close()
    assert {k: v["count"] for k, v in got.items()} == {k: v["count"] for k, v in expected.items()}
    assert got == expected


@pytest.mark.parametrize("path", ["/caf\udce9/1", "/ok/\udcff\udcfe"])
def test_an_endpoint_with_raw_bytes_in_its_path_is_persisted(tmp_path, path):
    p = Proc(tmp_path / "s.db", 0)
    p.learn([exchange(path, {"a": 1}), exchange("/plain", {"b": 2})])
    p.persist()
    model = Model.load(Store(tmp_path / "s.db").db)
    assert sorted(ep.count for ep in model.endpoints.values()) == [1, 1]
    assert model.find_endpoint("GET", HOST, path)[0].count == 1
    p.close()


def test_the_rebuild_command(tmp_path):
    from click.testing import CliRunner

    from mockstore.cli import cli

    path = tmp_path / "s.db"
    p = Proc(path, 0)
    p.learn(traffic(4, []))
    p.persist()
    n = len(p.model.endpoints)
    p.close()
    result = CliRunner().invoke(cli, ["rebuild", "--db", str(path)])
    assert result.exit_code == 0, result.output
    assert f"learned {len(traffic(4, []))} recorded exchanges again: {n} endpoints" in result.output
