"""Drift with the real model and learner (mockstore.model, mockstore.learn), as the addon runs it."""

from __future__ import annotations

import pytest

from mockstore.drift import DriftWatch
from mockstore.exchange import Exchange, Request, Response
from mockstore.learn import Learner
from mockstore.model import Model
from mockstore.schemas import SchemaModel
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
    watch.on_accept = lambda a: ep.responses.setdefault(a.status, SchemaModel()).add(a.sample)
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
    watch.store.flush()
    watch.resolve(alert.id)
    assert learner.learn(exchange(300, user(300, "renamed"))).alerts == []


def test_new_status_through_the_learner(setup):
    learner, watch, ep = setup
    (alert,) = learner.learn(exchange(5, {"error": "boom"}, status=500)).alerts
    assert alert.findings[0]["kind"] == "status"


# --- statuses: the API's behaviour or a changed contract ---------------------------------


def test_an_endpoint_gone_410_is_one_alert_counted_every_time(setup):
    learner, watch, ep = setup
    seen = [learner.learn(exchange(uid, {"error": "gone"}, status=410)).alerts for uid in range(20, 25)]
    assert all(len(a) == 1 for a in seen), "every response that drifts says so (the addon marks its flow)"
    alert = seen[0][0]
    assert all(a[0] is alert for a in seen) and watch.alerts() == [alert]
    assert alert.count == 5 and alert.findings[0]["kind"] == "status" and alert.findings[0]["actual"] == 410
    assert alert.summary == "1 high: status 410 never seen"
    assert 410 not in ep.responses, "a drifting body stays out of the baseline"
    watch.store.flush()
    assert watch.store.reader().execute("select id, count from drift_alerts").fetchall() == [(alert.id, 5)]
    # a 404 learned in between does not make the next 410 another alert
    assert learner.learn(exchange(1001, {"error": "no such user"}, status=404)).alerts == []
    assert learner.learn(exchange(26, {"error": "gone"}, status=410)).alerts == [alert] and alert.count == 6
    # accepted: 410 is part of the contract now
    watch.resolve(alert.id)
    assert learner.learn(exchange(27, {"error": "gone"}, status=410)).alerts == []


@pytest.mark.parametrize("status", [404, 400, 401, 403, 409, 422, 429])
def test_a_client_error_of_a_learned_endpoint_is_behaviour_and_learned(setup, status):
    learner, watch, ep = setup
    body = {"error": "no such user", "id": 1001}
    assert learner.learn(exchange(1001, body, status=status)).alerts == []
    schema = ep.response_schema(status)
    assert schema is not None and set(schema["properties"]) == {"error", "id"}, "learned: mock mode can answer it"
    for uid in range(1002, 1010):
        assert learner.learn(exchange(uid, {"error": "no such user", "id": uid}, status=status)).alerts == []
    assert ep.response_samples(status) == 9
    # once learned, its body's shape is watched like any other
    (alert,) = learner.learn(exchange(1, {"message": "no such user"}, status=status)).alerts
    assert {f["path"] for f in alert.findings} == {"error", "id", "message"}
    assert watch.alerts() == [alert]


def test_an_html_404_page_is_behaviour_too(setup):
    learner, watch, ep = setup
    req = Request("GET", "api.example.com", "/users/1001", scheme="https", port=443)
    page = Response(404, [("content-type", "text/html")], b"<h1>Not Found</h1>")
    assert learner.learn(Exchange(req, page, started=2.0)).alerts == []
    assert learner.learn(Exchange(req, page, started=3.0)).alerts == []
    assert learner.learn(exchange(8)).alerts == []


def test_server_errors_stay_drift_and_repeat_on_one_alert(setup):
    learner, watch, ep = setup
    for uid in range(3):
        (alert,) = learner.learn(exchange(uid, {"error": "overloaded"}, status=503)).alerts
    assert alert.count == 3 and len(watch.alerts()) == 1


def test_a_new_field_repeated_is_one_alert_counted_each_time(setup):
    learner, watch, ep = setup
    seen = [learner.learn(exchange(uid, user(uid, "added"))).alerts for uid in (40, 41, 40)]
    assert [len(a) for a in seen] == [1, 1, 1]
    (alert,) = watch.alerts()
    assert alert.count == 3 and [f["path"] for f in alert.findings] == ["extra"]


def test_a_changed_content_type_repeated_is_one_alert_counted_each_time(setup):
    learner, watch, ep = setup
    req = Request("GET", "api.example.com", "/users/1", scheme="https", port=443)
    page = Response(200, [("content-type", "text/html")], b"<h1>maintenance</h1>")
    seen = [learner.learn(Exchange(req, page, started=2.0 + i)).alerts for i in range(3)]
    assert [len(a) for a in seen] == [1, 1, 1]
    (alert,) = watch.alerts()
    assert alert.count == 3 and alert.findings[0]["actual"] == "text/html"
