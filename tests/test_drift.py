"""The drift watchdog, against a real SQLite store and genson-learned baselines."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

import pytest
from conftest import cli_group
from click.testing import CliRunner
from genson import SchemaBuilder

from mockstore import drift as drift_mod
from mockstore.cli.drift import register
from mockstore.drift import DriftError, DriftWatch, compare, validate_options
from mockstore.stats import EndpointStats
from mockstore.store import Store


@dataclass
class FakeEndpoint:
    """The lead's Endpoint, as the contract describes it, learning with genson."""

    id: str = "GET api.example.com/users/{id}"
    host: str = "api.example.com"
    method: str = "GET"
    template: str = "/users/{id}"
    count: int = 0
    statuses: dict = field(default_factory=Counter)
    content_types: dict = field(default_factory=Counter)
    _resp: dict = field(default_factory=dict)
    _resp_n: Counter = field(default_factory=Counter)
    _req: SchemaBuilder | None = None
    _req_n: int = 0
    stats: EndpointStats = field(default_factory=EndpointStats)  # the drift watch counts into it

    def learn(self, status: int, value, content_type: str = "application/json") -> None:
        self.count += 1
        self.statuses[status] += 1
        self.content_types[content_type] += 1
        if value is not None:
            self._resp.setdefault(status, SchemaBuilder()).add_object(value)
            self._resp_n[status] += 1

    def learn_request(self, value) -> None:
        if self._req is None:
            self._req = SchemaBuilder()
        self._req.add_object(value)
        self._req_n += 1

    def response_schema(self, status):
        b = self._resp.get(status)
        return b.to_schema() if b else None

    def response_samples(self, status):
        return self._resp_n[status]

    def request_schema(self):
        return self._req.to_schema() if self._req else None

    def request_samples(self):
        return self._req_n


def user(i: int, **over):
    u = {"id": i, "user_id": 100 + i, "name": f"user {i}", "created": "2024-01-01",
         "nickname": None if i % 2 else "nick"}
    if i % 3 == 0:
        u["bio"] = "optional"
    u.update(over)
    return u


@pytest.fixture
def learned():
    ep = FakeEndpoint()
    for i in range(6):
        ep.learn(200, user(i))
    return ep


def observe(watch, ep, status, value, ct="application/json"):
    """What the lead's addon does: check first, learn only when there was no drift."""
    alert = watch.check_response(ep, status, ct, value)
    if alert is None:
        ep.learn(status, value, ct)
    return alert


def test_renamed_field_is_one_critical_alert_naming_both_paths(store, learned):
    watch = DriftWatch(store)
    v = user(7)
    v["userId"] = v.pop("user_id")
    alert = observe(watch, learned, 200, v)
    assert alert is not None
    kinds = {(f["path"], f["kind"], f["severity"]) for f in alert.findings}
    assert kinds == {("user_id", "missing", "critical"), ("userId", "new", "low")}
    assert alert.summary == "1 critical, 1 low: user_id missing, userId new"
    assert alert.score >= 50
    assert watch.alerts() == [alert]


def test_type_change_is_high(store, learned):
    alert = observe(DriftWatch(store), learned, 200, user(8, created=1704067200))
    assert [(f["path"], f["severity"], f["expected"], f["actual"]) for f in alert.findings] == [
        ("created", "high", "string", "integer")
    ]
    assert alert.summary == "1 high: created type string->integer"


def test_value_becoming_null_where_never_null_is_high(store, learned):
    alert = observe(DriftWatch(store), learned, 200, user(8, name=None))
    assert alert.findings[0]["severity"] == "high"
    assert alert.findings[0]["actual"] == "null"


def test_object_to_array_is_high(store, learned):
    alert = observe(DriftWatch(store), learned, 200, [user(1)])
    assert alert.findings[0]["path"] == "$"
    assert (alert.findings[0]["expected"], alert.findings[0]["actual"]) == ("object", "array")


def test_added_field_is_low(store, learned):
    alert = observe(DriftWatch(store), learned, 200, user(8, avatar="x.png"))
    assert [(f["path"], f["kind"], f["severity"]) for f in alert.findings] == [("avatar", "new", "low")]
    assert alert.score < 50


def test_optional_and_sometimes_null_fields_are_not_flagged(store, learned):
    watch = DriftWatch(store)
    v = user(1)  # bio absent (it was optional), nickname null (it was sometimes null)
    v.pop("bio", None)
    assert observe(watch, learned, 200, v) is None
    v = user(2)
    v.pop("nickname")  # sometimes null: absent is fine too
    assert observe(watch, learned, 200, v) is None
    assert observe(watch, learned, 200, user(3, nickname="x", bio="y")) is None
    assert watch.alerts() == []


def test_nested_and_array_paths(store):
    ep = FakeEndpoint(id="GET h/orders")
    for i in range(5):
        ep.learn(200, {"items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": i}], "meta": {"total": i}})
    watch = DriftWatch(store)
    alert = observe(watch, ep, 200, {"items": [{"sku": "a", "qty": "1"}, {"qty": 2}], "meta": {"total": 1}})
    found = {(f["path"], f["kind"]) for f in alert.findings}
    assert found == {("items[].qty", "type"), ("items[].sku", "missing")}
    assert observe(watch, ep, 200, {"items": [], "meta": {"total": 0}}) is None


def test_the_same_drift_100_times_is_one_alert_with_count_100(store, learned):
    watch = DriftWatch(store)
    alerts = {id(observe(watch, learned, 200, user(i, created=i))) for i in range(100)}
    assert len(alerts) == 1
    (alert,) = watch.alerts()
    assert alert.count == 100
    assert alert.last_seen >= alert.first_seen
    # a different drift is a different alert
    other = observe(watch, learned, 200, user(1, avatar="a"))
    assert other is not alert and len(watch.alerts()) == 2
    store.flush()  # the store numbers them as it writes them
    assert None not in (alert.id, other.id) and other.id != alert.id
    assert watch.get(alert.id).count == 100


def test_resolve_accepts_the_new_shape(store, learned):
    watch = DriftWatch(store)
    watch.on_accept = lambda a: learned.learn(a.status, a.sample)
    v = user(7)
    v["userId"] = v.pop("user_id")
    alert = observe(watch, learned, 200, v)
    store.flush()  # numbered by the store
    resolved = watch.resolve(alert.id)
    assert resolved.resolved and resolved.resolution == "accepted" and resolved.merged
    assert watch.alerts(unresolved=True) == []
    again = user(9)
    again["userId"] = again.pop("user_id")
    assert observe(watch, learned, 200, again) is None


def test_resolve_keep_old_reopens_on_the_same_drift(store, learned):
    watch = DriftWatch(store)
    alert = observe(watch, learned, 200, user(1, created=5))
    store.flush()
    watch.resolve(alert.id, accept=False)
    assert watch.get(alert.id).resolution == "kept"
    again = observe(watch, learned, 200, user(2, created=6))
    assert again.id == alert.id and not again.resolved and again.count == 2


def test_resolve_unknown_alert_is_a_clear_error(store):
    with pytest.raises(DriftError, match="no drift alert with id 42"):
        DriftWatch(store).resolve(42)


def test_warmup_holds_back_alerts(store):
    ep = FakeEndpoint()
    watch = DriftWatch(store, warmup=5)
    for i in range(4):
        ep.learn(200, user(i))
    assert observe(watch, ep, 200, user(5, created=1)) is None  # 4 samples: still learning
    assert observe(watch, ep, 200, user(6, created=2)) is None  # ... and it learned that
    assert observe(watch, ep, 200, user(7, name=1)) is not None
    with pytest.raises(ValueError):
        DriftWatch(store, warmup=0)


def test_unseen_status_and_changed_content_type_are_high(store, learned):
    watch = DriftWatch(store)
    alert = observe(watch, learned, 503, None, ct="text/html")
    assert {(f["kind"], f["severity"]) for f in alert.findings} == {("status", "high"), ("content_type", "high")}
    assert "status 503 never seen" in alert.summary
    alert = observe(watch, learned, 200, None, ct="text/xml; charset=utf-8")
    assert [f["actual"] for f in alert.findings] == ["text/xml"]


def test_request_drift(store):
    ep = FakeEndpoint(id="POST h/users", method="POST", template="/users")
    for i in range(5):
        ep.learn_request({"name": f"n{i}", "age": i})
    watch = DriftWatch(store)
    assert watch.check_request(ep, "application/json", {"name": "x", "age": 3}) is None
    alert = watch.check_request(ep, "application/json", {"name": "x", "age": "3"})
    assert alert.kind == "request" and alert.status == 0
    assert alert.findings[0]["path"] == "age"
    assert watch.check_request(ep, "application/json", None) is None


def test_alerts_persist_and_keep_counting(tmp_path, learned):
    path = tmp_path / "m.db"
    store = Store(path)
    watch = DriftWatch(store)
    for i in range(3):
        observe(watch, learned, 200, user(i, created=i))
    store.close()

    store = Store(path)
    watch = DriftWatch(store)
    (alert,) = watch.alerts()
    assert alert.count == 3 and alert.findings[0]["path"] == "created"
    assert observe(watch, learned, 200, user(4, created=4)).count == 4
    new = observe(watch, learned, 200, user(4, avatar=1))
    store.flush()
    assert new.id == alert.id + 1
    store.close()
    row = Store(path).reader().execute("select count, summary from drift_alerts where id = ?", [alert.id]).fetchone()
    assert row == (4, "1 high: created type string->integer")


def test_accepted_from_elsewhere_is_merged_when_a_callback_exists(tmp_path, learned):
    path = tmp_path / "m.db"
    store = Store(path)
    alert = observe(DriftWatch(store), learned, 200, user(1, avatar="a"))
    store.flush()
    DriftWatch(store).resolve(alert.id)  # as the CLI does: no on_accept
    store.flush()
    watch = DriftWatch(store)
    assert watch.get(alert.id).merged is False
    merged = []
    watch.on_accept = merged.append
    assert watch.apply_pending() == 1
    assert merged[0].sample["avatar"] == "a"
    assert watch.apply_pending() == 0
    store.close()


def test_deepdiff_runs_only_for_new_shapes(store, learned, monkeypatch):
    calls = []
    real = drift_mod.DeepDiff
    monkeypatch.setattr(drift_mod, "DeepDiff", lambda *a, **k: calls.append(1) or real(*a, **k))
    watch = DriftWatch(store)
    for i in range(50):
        observe(watch, learned, 200, user(i * 2))  # nickname non-null, bio sometimes: few shapes
    for i in range(50):
        observe(watch, learned, 200, user(1, created=i))  # the same drift over and over
    assert len(calls) <= 3


def test_stats(store, learned):
    watch = DriftWatch(store)
    for i in range(3):
        observe(watch, learned, 200, user(i * 2))
    observe(watch, learned, 200, user(1, created=1))
    s = watch.stats(learned)
    assert (s["alerts"], s["open"], s["checked"], s["drifted"]) == (1, 1, 4, 1)
    assert s["share"] == pytest.approx(0.25) and s["last_drift"] is not None
    assert watch.stats(FakeEndpoint(id="GET nowhere/x"))["alerts"] == 0


@pytest.mark.parametrize("value", [
    "just a string", 12, [], [[[[]]]], {"a": float("nan")}, {"deep": json.loads("[" * 500 + "]" * 500)},
])
def test_odd_bodies_never_crash(store, learned, value):
    watch = DriftWatch(store)
    alert = watch.check_response(learned, 200, "application/json", value)
    assert alert is None or alert.findings  # an alert, or nothing, never an exception
    assert watch.check_response(None, 200, "application/json", value) is None


def test_huge_sample_is_stored_as_its_shape(store):
    ep = FakeEndpoint(id="GET h/big")
    for i in range(5):
        ep.learn(200, {"rows": ["a"]})
    big = {"rows": ["x" * 1000] * 200, "extra": 1}
    alert = observe(DriftWatch(store), ep, 200, big)
    assert alert.sample == {"rows": [""], "extra": 0}
    assert compare(ep.response_schema(200), alert.sample) == compare(ep.response_schema(200), big)


def test_validate_options():
    class Opts:
        mock_drift_warmup = 0
    with pytest.raises(ValueError, match="mock_drift_warmup"):
        validate_options(Opts())
    Opts.mock_drift_warmup = 5
    validate_options(Opts())
    assert {o[0] for o in drift_mod.OPTIONS} == {"mock_drift", "mock_drift_warmup"}


# --- the command line ------------------------------------------------------------------


@pytest.fixture
def cli():
    return cli_group(register)


def test_cli_lists_and_resolves(tmp_path, learned, cli):
    path = tmp_path / "m.db"
    store = Store(path)
    watch = DriftWatch(store)
    v = user(1)
    v["userId"] = v.pop("user_id")
    a1 = observe(watch, learned, 200, v)
    a2 = observe(watch, learned, 200, user(2, avatar="x"))
    store.close()
    runner = CliRunner()

    out = runner.invoke(cli, ["drift", "--db", str(path)])
    assert out.exit_code == 0, out.output
    assert "1 critical, 1 low: user_id missing, userId new" in out.output
    assert "GET api.example.com/users/{id} -> 200" in out.output

    out = runner.invoke(cli, ["drift", "resolve", str(a2.id), "--db", str(path)])
    assert out.exit_code == 0 and "accepted" in out.output

    out = runner.invoke(cli, ["drift", "--db", str(path), "--json", "--unresolved"])
    data = json.loads(out.output)
    assert [d["id"] for d in data] == [a1.id]
    assert data[0]["findings"][0]["path"] == "user_id"

    out = runner.invoke(cli, ["drift", "resolve", str(a1.id), "--keep-old", "--db", str(path)])
    assert "old shape stays" in out.output
    out = runner.invoke(cli, ["drift", "--db", str(path), "--unresolved"])
    assert "no drift left unresolved" in out.output


def test_cli_errors_are_clear(tmp_path, cli):
    runner = CliRunner()
    out = runner.invoke(cli, ["drift", "--db", str(tmp_path / "none.db")])
    assert out.exit_code == 1 and "no store at" in out.output
    Store(tmp_path / "m.db").close()
    out = runner.invoke(cli, ["drift", "resolve", "9", "--db", str(tmp_path / "m.db")])
    assert out.exit_code == 1 and "no drift alert with id 9" in out.output
    out = runner.invoke(cli, ["drift", "--help"])
    assert "Example" in out.output


# --- several processes on one store (`mockstore serve --workers N`, the command line) --------


def sightings(watch, ep, drifts: list[tuple[str, int]]) -> None:
    """Each (drift, times): the same drift seen that many times by this watch."""
    for name, times in drifts:
        for i in range(times):
            value = user(i, created=i) if name == "retyped" else user(i, **{name: "x"})
            assert observe(watch, ep, 200, value) is not None


def table(watch) -> dict[str, tuple[int, int]]:
    return {a.summary: (a.id, a.count) for a in watch.alerts()}


def test_two_workers_add_up_to_one_process_having_seen_it_all(tmp_path, learned):
    one = Store(tmp_path / "one.db")
    alone = DriftWatch(one)
    sightings(alone, learned, [("retyped", 7), ("avatar", 1), ("badge", 2)])
    one.close()
    expected = table(DriftWatch(Store(tmp_path / "one.db")))

    path = tmp_path / "shared.db"
    a, b = Store(path), Store(path)  # two processes' stores: each its own writer
    wa, wb = DriftWatch(a), DriftWatch(b)
    sightings(wa, learned, [("retyped", 3), ("avatar", 1)])  # the same drift in both, one each of its own
    sightings(wb, learned, [("retyped", 4), ("badge", 2)])
    for _ in range(2):  # each writes what it saw, then reads back what the other wrote
        for w in (wa, wb):
            w.sync()
            w.store.flush()
    assert table(wa) == table(wb)
    assert {s: n for s, (_, n) in table(wa).items()} == {s: n for s, (_, n) in expected.items()}
    assert sorted(i for i, _ in table(wa).values()) == [1, 2, 3], "numbered by SQLite, none overwritten"
    rows = a.reader().execute("select summary, count from drift_alerts").fetchall()
    assert dict(rows) == {s: n for s, (_, n) in expected.items()}

    # a resolution made by one worker is seen by the other; the drift seen again there reopens it
    retyped = next(al for al in wa.alerts() if al.summary.startswith("1 high"))
    wb.resolve(retyped.id, accept=False)
    b.flush()
    wa.sync()
    a.flush()
    assert wa.get(retyped.id).resolution == "kept"
    sightings(wa, learned, [("retyped", 1)])
    assert not wa.get(retyped.id).resolved
    for w in (wa, wb):
        w.sync()
        w.store.flush()
    assert not wb.get(retyped.id).resolved and wb.get(retyped.id).count == 8
    a.close()
    b.close()


def test_an_alert_accepted_elsewhere_joins_each_workers_baseline_once(tmp_path, learned):
    path = tmp_path / "shared.db"
    a = Store(path)
    wa = DriftWatch(a)
    merged = []
    wa.on_accept = merged.append
    sightings(wa, learned, [("avatar", 2)])
    a.flush()
    (alert,) = wa.alerts()
    cli = Store(path)  # `mockstore drift resolve` while the proxy runs
    DriftWatch(cli).resolve(alert.id)
    cli.close()
    wa.sync()  # reads the acceptance in, on the writer thread...
    a.flush()
    assert merged == []
    wa.sync()  # ... and takes it into the baseline where the model lives, once
    wa.sync()
    a.flush()
    assert [m.id for m in merged] == [alert.id]
    assert a.reader().execute("select merged from drift_alerts").fetchone() == (1,)
    a.close()


def test_an_old_alerts_table_is_rebuilt_with_its_rows(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # the table as it was before ids came from SQLite
        conn.execute("create table meta (key text primary key, value text)")
        conn.execute("insert into meta values ('schema_version', '1')")
        conn.execute("""create table drift_alerts (id integer primary key, key text unique,
            endpoint text, kind text, status integer, score integer, summary text, findings text,
            sample text, first_seen real, last_seen real, count integer, resolved integer default 0,
            resolution text, merged integer default 0)""")
        conn.execute("insert into drift_alerts values (7, 'k', 'GET h/x', 'response', 200, 30, 's', '[]', "
                     "'null', 1.0, 2.0, 5, 0, null, 0)")
    store = Store(path)
    (alert,) = DriftWatch(store).alerts()
    assert (alert.id, alert.count, alert.summary) == (7, 5, "s")
    sql = store.reader().execute("select sql from sqlite_master where name = 'drift_alerts'").fetchone()[0]
    assert "autoincrement" in sql
    store.close()


def test_a_body_with_every_field_renamed_names_each_field(store):
    ep = FakeEndpoint(id="GET h/error")
    for i in range(5):
        ep.learn(200, {"error": "boom", "id": i})
    alert = observe(DriftWatch(store), ep, 200, {"message": "boom"})
    assert {(f["path"], f["kind"]) for f in alert.findings} == {("error", "missing"), ("id", "missing"), ("message", "new")}
