"""Drift with the real model and learner (mockstore.model, mockstore.learn), as the addon runs it."""

from __future__ import annotations

import pytest

from mockstore.drift import DriftWatch
from mockstore.exchange import Exchange, Request, Response
from mockstore.learn import Learner
from mockstore.model import Model
from mockstore.store import Store


def user(uid: int, variant: str = "base") -> dict:
    u = {"id": uid, "user_id": uid, "name": f"User {uid}", "created_at": "2024-01-01T10:00:00Z"}
    if uid % 3 == 0:
        u["nickname"] = f"nick{uid}"  # optional
    if variant == "renamed":
        u["userId"] = u.pop("user_id")
    elif variant == "retyped":
        u["created_at"] = 1700000000 + uid
    elif variant == "added":
        u["extra"] = "new"
    return u


def exchange(uid: int, value=None, status: int = 200) -> Exchange:
    req = Request("GET", "api.example.com", f"/users/{uid}", scheme="https", port=443)
    return Exchange(req, Response.make_json(status, value if value is not None else user(uid)), started=1.0)


@pytest.fixture
def setup(tmp_path):
    store = Store(tmp_path / "m.db")
    model = Model()
    watch = DriftWatch(store)
    learner = Learner(model, store, drift=watch)
    for uid in range(1, 8):
        assert learner.learn(exchange(uid)).alerts == []
    ep = model.learn_endpoint("GET", "api.example.com", "/users/1")
    watch.on_accept = lambda a: ep.responses[a.status].add(a.sample)
    yield learner, watch, ep
    store.close()


def test_contract_changes_through_the_learner(setup):
    learner, watch, ep = setup
    (alert,) = learner.learn(exchange(10, user(10, "renamed"))).alerts
    assert alert.endpoint == ep.id
    assert {(f["path"], f["severity"]) for f in alert.findings} == {("user_id", "critical"), ("userId", "low")}
    (alert,) = learner.learn(exchange(11, user(11, "retyped"))).alerts
    assert [f["severity"] for f in alert.findings] == ["high"]
    (alert,) = learner.learn(exchange(12, user(12, "added"))).alerts
    assert [f["severity"] for f in alert.findings] == ["low"]
    assert learner.learn(exchange(13)).alerts == []  # optional nickname absent: nothing


def test_repeats_are_one_alert_and_resolve_accepts(setup):
    learner, watch, ep = setup
    for uid in range(100, 200):
        learner.learn(exchange(uid, user(uid, "renamed")))
    (alert,) = watch.alerts()
    assert alert.count == 100
    watch.resolve(alert.id)
    assert learner.learn(exchange(300, user(300, "renamed"))).alerts == []


def test_new_status_through_the_learner(setup):
    learner, watch, ep = setup
    (alert,) = learner.learn(exchange(5, {"error": "boom"}, status=500)).alerts
    assert alert.findings[0]["kind"] == "status"
