"""Chaos rules and faults: validation, persistence, seeded decisions, flow mutations."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from conftest import cli_group
from click.testing import CliRunner
from mitmproxy.test import tflow, tutils

from mockstore.chaos import Chaos, compile_filter
from mockstore.chaosrules import ChaosRuleError, ChaosRules, validate, validate_options
from mockstore.cli.chaos import register
from mockstore.store import Store


def flow(method="GET", path="/users/1", host="api.example.com"):
    f = tflow.tflow(req=tutils.treq(method=method.encode(), path=path.encode(), host=host))
    return f


def make(store=None, *rules, seed=0):
    r = ChaosRules(store, seed=seed, filter_compiler=compile_filter)
    for rule in rules:
        r.add(rule)
    return r


# --- validation ------------------------------------------------------------------------


@pytest.mark.parametrize("rule, field, words", [
    ({"id": "boom", "effect": "explode"}, "effect", "unknown: 'explode'"),
    ({"id": "flaky", "effect": "error", "probability": 1.5}, "probability", "between 0 and 1"),
    ({"id": "odd", "effect": "reset", "filter": "~q ~~ &"}, "filter", "not a valid mitmproxy filter"),
    ({"id": "nofx"}, "effect", "is required"),
    ({"id": "typo", "effect": "latency", "msec": 5}, "msec", "not known for effect 'latency'"),
    ({"id": "two", "effect": "latency", "ms": 5, "learned": "p99 x 3"}, "ms", "exactly one"),
    ({"id": "stat", "effect": "latency", "learned": "p99 times three"}, "learned", "p99 x 3"),
    ({"id": "s", "effect": "error", "status": 999}, "status", "100-599"),
    ({"id": "m", "effect": "reset", "method": "FETCH"}, "method", "not an HTTP method"),
    ({"id": "e", "effect": "reset", "endpoint": "users"}, "endpoint", "GET /users/{id}"),
    ({"id": "sb", "effect": "slow_body"}, "bytes_per_second", "required"),
    ({"id": "u", "effect": "latency", "min_ms": 50, "max_ms": 10}, "max_ms", ">= min_ms"),
])
def test_bad_rules_name_the_rule_and_the_field(rule, field, words):
    with pytest.raises(ChaosRuleError) as e:
        make(None, rule)
    msg = str(e.value)
    assert f"chaos rule {rule['id']!r}" in msg
    assert f"field {field!r}" in msg
    assert words in msg


def test_bad_rule_in_a_file_names_its_position(tmp_path):
    path = tmp_path / "chaos.yaml"
    path.write_text("rules:\n  - effect: reset\n  - effect: error\n    probability: 1.5\n")
    with pytest.raises(ChaosRuleError, match=r"chaos rule #2: field 'probability'"):
        ChaosRules(None).load_file(path)
    path.write_text("rules: [effect: [\n")
    with pytest.raises(ChaosRuleError, match="not valid YAML"):
        ChaosRules(None).load_file(path)
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ChaosRuleError, match="not UTF-8"):
        ChaosRules(None).load_file(path)
    with pytest.raises(ChaosRuleError, match="cannot read"):
        ChaosRules(None).load_file(tmp_path / "missing.yaml")


def test_a_bad_filter_is_caught_even_without_a_compiler_once_chaos_is_built():
    rules = ChaosRules(None)
    Chaos(rules)
    with pytest.raises(ChaosRuleError, match="field 'filter'"):
        rules.add({"id": "x", "effect": "reset", "filter": "~zz"})


def test_good_rules_and_defaults():
    r = validate({"endpoint": "get /users/{id}", "effect": "error", "probability": "30%"})
    assert (r.method, r.template, r.probability, r.params["status"]) == ("GET", "/users/{id}", 0.3, 500)
    rules = make(None, {"effect": "reset"}, {"effect": "timeout"})
    assert [x.id for x in rules.list()] == ["1", "2"]
    with pytest.raises(ChaosRuleError, match="already used"):
        rules.add({"id": "1", "effect": "reset"})


def test_validate_options(tmp_path):
    class Opts:
        mock_chaos = str(tmp_path / "nope.yaml")
        mock_chaos_timeout = 10
    with pytest.raises(ValueError, match="no such rules file"):
        validate_options(Opts())
    Opts.mock_chaos = None
    validate_options(Opts())


# --- decisions ---------------------------------------------------------------------------


def test_thirty_percent_errors_on_one_endpoint_only():
    chaos = Chaos(make(None, {"id": "flaky", "endpoint": "GET /users/{id}", "effect": "error",
                              "status": 503, "probability": 0.3}, seed=7))
    hits = sum(chaos.decide(flow(path=f"/users/{i}"), "GET", "/users/{id}") is not None for i in range(1000))
    assert 250 <= hits <= 350
    others = [chaos.decide(flow(path=f"/orders/{i}"), "GET", "/orders/{id}") for i in range(1000)]
    posts = [chaos.decide(flow("POST", "/users/1"), "POST", "/users/{id}") for _ in range(100)]
    assert others.count(None) == 1000 and posts.count(None) == 100
    rule = chaos.rules.get("flaky")
    assert (rule.applied, rule.skipped) == (hits, 1000 - hits)


def test_the_same_seed_gives_the_same_faults():
    def run(seed, noise):
        chaos = Chaos(make(None, {"id": "a", "template": "/a", "effect": "reset", "probability": 0.5},
                           {"id": "b", "template": "/b", "effect": "reset", "probability": 0.5}, seed=seed))
        out = []
        for i in range(200):
            if noise and i % 3 == 0:  # traffic to another rule's endpoint does not shift this one
                chaos.decide(flow(path="/b"), "GET", "/b")
            out.append(chaos.decide(flow(path="/a"), "GET", "/a") is not None)
        return out

    assert run(1, False) == run(1, True)
    assert run(1, False) != run(2, False)


def test_uniform_and_learned_latency():
    rules = make(None, {"id": "u", "template": "/u", "effect": "latency", "min_ms": 100, "max_ms": 200},
                 {"id": "l", "template": "/l", "effect": "latency", "learned": "p99 x 3"})
    chaos = Chaos(rules)
    delays = [chaos.decide(flow(path="/u"), "GET", "/u").delay_s for _ in range(200)]
    assert all(0.1 <= d <= 0.2 for d in delays) and len(set(delays)) > 100
    asked = []
    fault = chaos.decide(flow(path="/l"), "GET", "/l", lambda stat: asked.append(stat) or 40.0)
    assert asked == ["p99"] and fault.delay_s == pytest.approx(0.12)
    assert chaos.decide(flow(path="/l"), "GET", "/l", lambda stat: None) is None  # nothing learned yet
    assert rules.get("l").skipped == 1


def test_filter_rules_and_unknown_endpoints():
    chaos = Chaos(make(None, {"id": "f", "filter": "~d api.example.com & ~m POST", "effect": "reset"},
                       {"id": "g", "template": "/files/*", "effect": "reset"}))
    assert chaos.decide(flow("POST", "/x"), "POST", None).rule_id == "f"
    assert chaos.decide(flow("POST", "/x", host="other.org"), "POST", None) is None
    assert chaos.decide(flow("GET", "/x"), "GET", None) is None
    assert chaos.decide(flow("GET", "/files/a/b.txt"), "GET", None).rule_id == "g"


def test_disabled_means_no_chaos_and_persists(tmp_path):
    path = tmp_path / "m.db"
    store = Store(path)
    rules = make(store, {"id": "r", "effect": "reset"})
    chaos = Chaos(rules)
    rules.enabled = False
    assert chaos.decide(flow(), "GET", "/users/{id}") is None
    store.close()
    store = Store(path)
    rules = ChaosRules(store)
    assert rules.enabled is False and [r.id for r in rules.list()] == ["r"]
    store.close()


def test_rules_and_counters_persist(tmp_path):
    path = tmp_path / "m.db"
    store = Store(path)
    rules = make(store, {"id": "half", "effect": "reset", "probability": 0.5})
    chaos = Chaos(rules)
    for _ in range(100):
        chaos.decide(flow(), "GET", "/users/{id}")
    rules.flush_counters()
    store.close()
    store = Store(path)
    (rule,) = ChaosRules(store).list()
    assert rule.applied + rule.skipped == 100 and 30 < rule.applied < 70
    assert rule.spec() == {"id": "half", "probability": 0.5, "effect": "reset"}
    store.close()


def test_two_processes_see_each_others_counts(tmp_path):
    """Two proxies on one store (workers): each one's counts, once stored, are in the other's
    rules too, and its own not stored yet stay counted."""
    path = tmp_path / "m.db"
    a_store, b_store = Store(path), Store(path)
    a = make(a_store, {"id": "down", "effect": "error", "status": 503})
    assert a_store.flush()
    b = ChaosRules(b_store)
    for _ in range(5):
        Chaos(a).decide(flow(), "GET", "/users/{id}")
    for _ in range(3):
        Chaos(b).decide(flow(), "GET", "/users/{id}")
    a.flush_counters()
    assert a_store.flush()
    Chaos(b).decide(flow(), "GET", "/users/{id}")  # one more of b's, not stored
    b.apply_counts(b.read_counts(b_store.reader()))
    assert b.get("down").applied == 5 + 4
    b.flush_counters()
    assert b_store.flush()
    a.apply_counts(a.read_counts(a_store.reader()))
    assert a.get("down").applied == 9
    a_store.close(); b_store.close()


def test_rules_file_reloads_on_change_and_keeps_cli_rules(tmp_path, store):
    path = tmp_path / "chaos.yaml"
    path.write_text("- {id: slow, template: /a, effect: latency, ms: 10}\n")
    rules = make(store, {"id": "mine", "template": "/b", "effect": "reset"})
    rules.load_file(path)
    rules.reload_interval = 0
    assert [r.id for r in rules.list()] == ["mine", "slow"]
    path.write_text("rules:\n  - {id: slower, template: /a, effect: latency, ms: 20}\n")
    os.utime(path, (1, 1))  # a different mtime, whatever the clock's resolution
    chaos = Chaos(rules)
    fault = chaos.decide(flow(path="/a"), "GET", "/a")
    assert fault.rule_id == "slower" and fault.delay_s == pytest.approx(0.02)
    path.write_text("rules:\n  - {id: broken, effect: nope}\n")
    os.utime(path, (2, 2))
    assert rules.reload_if_changed() is False  # logged; the previous rules stay
    assert [r.id for r in rules.list()] == ["mine", "slower"]
    store.flush()
    ids = {r[0] for r in store.reader().execute("select id from chaos_rules").fetchall()}
    assert ids == {"mine", "slower"}


# --- applying faults to flows --------------------------------------------------------------


def test_error_fault_answers_with_a_marked_response():
    chaos = Chaos(make(None, {"id": "e", "effect": "error", "status": 503}))
    f = flow()
    fault = chaos.decide(f, "GET", "/users/{id}")
    asyncio.run(chaos.apply_request(f, fault))
    assert f.response.status_code == 503
    assert f.response.headers["X-Mockstore-Source"] == "chaos"
    assert json.loads(f.response.content)["chaos"] == "e"
    assert f.metadata["mockstore"]["source"] == "chaos"
    assert f.metadata["mockstore"]["chaos"]["rule"] == "e"
    assert "chaos" in f.comment and f.marked


def test_error_body_defaults_to_one_the_endpoint_really_returned():
    asked = []

    def sample(endpoint, status):
        asked.append((endpoint, status))
        return 503, [("Content-Type", "application/problem+json"), ("Content-Length", "99")], b'{"title":"down"}'

    chaos = Chaos(make(None, {"id": "e", "effect": "error", "status": 503}), error_sample=sample)
    f = flow()
    asyncio.run(chaos.apply_request(f, chaos.decide(f, "GET", "/users/{id}")))
    assert asked == [("GET api.example.com/users/{id}", 503)]
    assert f.response.content == b'{"title":"down"}'
    assert f.response.headers["content-type"] == "application/problem+json"
    assert f.response.headers["content-length"] == str(len(b'{"title":"down"}'))
    # an explicit body wins over the sample
    chaos = Chaos(make(None, {"id": "e", "effect": "error", "status": 500, "body": {"x": 1}}), error_sample=sample)
    f = flow()
    asyncio.run(chaos.apply_request(f, chaos.decide(f, "GET", "/users/{id}")))
    assert json.loads(f.response.content) == {"x": 1}


def test_reset_kills_the_flow():
    chaos = Chaos(make(None, {"id": "r", "effect": "reset"}))
    f = flow()
    asyncio.run(chaos.apply_request(f, chaos.decide(f, "GET", "/users/{id}")))
    assert f.error and f.error.msg == f.error.KILLED_MESSAGE
    assert f.metadata["mockstore"]["source"] == "chaos"


def test_timeout_holds_then_gives_nothing():
    chaos = Chaos(make(None, {"id": "t", "effect": "timeout", "seconds": 600}), max_timeout=0.05)
    f = flow()
    fault = chaos.decide(f, "GET", "/users/{id}")
    assert fault.timeout_s == 0.05  # bounded by the option
    asyncio.run(chaos.apply_request(f, fault))
    assert f.response is None and f.error is not None


def test_latency_does_not_block_other_flows():
    chaos = Chaos(make(None, {"id": "slow", "template": "/slow", "effect": "latency", "ms": 300}))
    done = []

    async def one(path):
        f = flow(path=path)
        fault = chaos.decide(f, "GET", path)
        if fault:
            await chaos.apply_request(f, fault)
        await asyncio.sleep(0.01)
        done.append(path)

    async def main():
        await asyncio.gather(one("/slow"), one("/fast"))

    asyncio.run(main())
    assert done == ["/fast", "/slow"]


def test_apply_response_marks_and_cannot_throttle_without_a_proxy(caplog):
    chaos = Chaos(make(None, {"id": "sb", "effect": "slow_body", "bytes_per_second": 100}))
    f = tflow.tflow(resp=True)
    fault = chaos.decide(f, "GET", "/path")
    chaos.apply_response(f, fault)
    assert f.response.headers["X-Mockstore-Chaos"] == "slow body 100 B/s; rule=sb"
    assert f.metadata["mockstore"]["chaos"]["effect"] == "slow_body"
    assert "slow body is not possible" in caplog.text


# --- the command line ------------------------------------------------------------------------


@pytest.fixture
def cli():
    return cli_group(register)


def test_cli_round_trip(tmp_path, cli):
    db = str(tmp_path / "m.db")
    run = CliRunner().invoke
    out = run(cli, ["chaos", "add", "--db", db, "--endpoint", "GET /users/{id}", "--effect", "error",
                    "--status", "503", "-p", "0.3"])
    assert out.exit_code == 0, out.output
    assert "added chaos rule 1: error 503 on GET /users/{id}, p=0.3" in out.output
    out = run(cli, ["chaos", "add", "--db", db, "--id", "slow", "--filter", "~m POST", "--effect", "latency",
                    "--learned", "p99 x 3"])
    assert out.exit_code == 0, out.output

    out = run(cli, ["chaos", "list", "--db", db, "--json"])
    data = json.loads(out.output)
    assert data["enabled"] is True
    assert [(r["id"], r["effect"], r["applied"]) for r in data["rules"]] == [("1", "error", 0), ("slow", "latency", 0)]

    assert run(cli, ["chaos", "disable", "--db", db]).exit_code == 0
    assert "DISABLED" in run(cli, ["chaos", "list", "--db", db]).output
    assert run(cli, ["chaos", "enable", "--db", db]).exit_code == 0
    out = run(cli, ["chaos", "rm", "--db", db, "1"])
    assert out.exit_code == 0
    out = run(cli, ["chaos", "list", "--db", db])
    assert "slow" in out.output and "error 503" not in out.output and "applied 0, skipped 0" in out.output
    out = run(cli, ["chaos", "clear", "--db", db])
    assert "removed 1 chaos rule(s)" in out.output


def test_cli_rejects_bad_rules_clearly(tmp_path, cli):
    db = str(tmp_path / "m.db")
    run = CliRunner().invoke
    out = run(cli, ["chaos", "add", "--db", db, "--id", "p", "--effect", "error", "-p", "1.5"])
    assert out.exit_code == 1
    assert "chaos rule 'p': field 'probability' must be a number between 0 and 1" in out.output
    out = run(cli, ["chaos", "add", "--db", db, "--id", "f", "--effect", "reset", "--filter", "~nope"])
    assert out.exit_code == 1 and "field 'filter'" in out.output
    out = run(cli, ["chaos", "add", "--db", db, "--effect", "explode"])
    assert out.exit_code == 2 and "explode" in out.output
    out = run(cli, ["chaos", "rm", "--db", db, "42"])
    assert out.exit_code == 1 and "no chaos rule with id '42'" in out.output
    out = run(cli, ["chaos", "list", "--db", str(tmp_path / "none.db")])
    assert out.exit_code == 1 and "no store at" in out.output
    assert "Example" in run(cli, ["chaos", "add", "--help"]).output
