"""Scenarios run by the real CLI (`mockstore scenario run`) against a real mitmdump on the
same store: switching a mock, setting its delay, waiting, and checking real requests sent
through the proxy; results recorded, listed and written as JUnit XML."""

from __future__ import annotations

import json
import subprocess
from xml.etree import ElementTree as ET

import pytest
import yaml
from conftest import MOCKSTORE
from live_helpers import eventually

STUBS = {"mocks": [{
    "name": "items", "status": "INACTIVE", "routes": [{
        "method": "GET", "path": "/api/items/{id}",
        "defaultResponse": {"body": {"kind": "default"}, "headers": {"Content-Type": "application/json"}},
        "conditions": [{"parameterName": "tier", "parameterSource": "QUERY", "operator": "EQUALS",
                        "expectedValue": "gold", "response": {"kind": "gold", "id": "{{request.path.id}}"},
                        "priority": 10}]}]}]}

SLOW_ITEMS = """
name: slow-items
description: the items mock, slowed down, answers gold
actions:
  - {type: START_MOCK, mock: items}
  - {type: SET_DELAY, mock: items, responseDelay: 300}
  - {type: WAIT, ms: 500}
  - {type: HTTP_REQUEST, method: GET, url: "http://api.example/api/items/1?tier=gold",
     timeout: 2000, expect: {status: 200, json: {"$.kind": gold, "$.id": "1"}, headers: {X-Mockstore-Source: stub}}}
  - {type: STOP_MOCK, mock: items}
  - {type: HTTP_REQUEST, method: GET, url: "http://api.example/api/items/1?tier=gold",
     expect: {status: 404, headers: {X-Mockstore-Source: not-found}}}
"""

WRONG = """
name: wrong-tier
actions:
  - {type: START_MOCK, mock: items}
  - {type: SET_DELAY, mock: items, responseDelay: 0}
  - {type: HTTP_REQUEST, url: "http://api.example/api/items/2", expect: {status: 200, json: {"$.kind": default}}}
  - {type: HTTP_REQUEST, url: "http://api.example/api/items/2?tier=gold", expect: {json: {"$.kind": silver}}}
  - {type: STOP_MOCK, mock: items}
"""

NOTHING_RIGHT = """
name: nothing-right
actions:
  - {type: START_MOCK, mock: no-such-mock}
  - {type: HTTP_REQUEST, url: "http://api.example/api/items/2", timeout: 2000, expect: {status: 418}}
"""


@pytest.fixture
def setup(proxy, tmp_path):
    """A proxy in regular (forward) mode, mock mode, with the items stub (INACTIVE), and the
    scenarios added to its store by the CLI."""
    (tmp_path / "stubs.yaml").write_text(yaml.safe_dump(STUBS))
    p = proxy(None, mode="mock", mock_stubs=str(tmp_path / "stubs.yaml"))
    stubs_stored(p)
    for name, text in (("slow", SLOW_ITEMS), ("wrong", WRONG), ("nothing", NOTHING_RIGHT)):
        (tmp_path / f"{name}.yaml").write_text(text)
        cli("scenario", "add", str(tmp_path / f"{name}.yaml"), "--db", str(p.db))
    return p, tmp_path


def stubs_stored(p) -> None:
    """mitmdump loads its -s script after it listens: wait for the stubs file to be in the store."""
    eventually(lambda: "items" in cli("stub", "list", "--db", str(p.db), check=False).stdout,
               "the stubs file saved into the store",
               deadline=30)


def cli(*args, check=True) -> subprocess.CompletedProcess:
    out = subprocess.run([MOCKSTORE, *args], capture_output=True, text=True, timeout=60)
    if check and out.returncode:
        raise AssertionError(f"{args} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out


def test_a_scenario_that_switches_delays_waits_and_checks_succeeds(setup):
    p, tmp = setup
    out = cli("scenario", "run", "slow-items", "--db", str(p.db), "--proxy", p.url, "--junit", str(tmp / "ok.xml"))
    assert "SUCCESS: scenario slow-items" in out.stdout, out.stdout
    results = json.loads(cli("scenario", "results", "slow-items", "--db", str(p.db), "--json").stdout)
    assert len(results) == 1 and results[0]["status"] == "SUCCESS" and results[0]["executedAt"]
    actions = results[0]["actions"]
    assert [a["status"] for a in actions] == ["PASSED"] * 6
    assert actions[3]["durationMs"] >= 300  # the delay set by SET_DELAY applied
    assert actions[3]["actual"]["status"] == 200 and actions[3]["expected"]["json"] == {"$.kind": "gold", "$.id": "1"}
    assert actions[5]["actual"]["status"] == 404  # stopped: no longer the stub, nothing learned either
    suite = ET.parse(tmp / "ok.xml").getroot().find("testsuite")
    assert suite.get("name") == "slow-items" and suite.get("tests") == "6" and suite.get("failures") == "0"
    listed = cli("scenario", "list", "--db", str(p.db)).stdout
    assert "slow-items" in listed and "COMPLETED" in listed


def test_a_failing_expectation_is_partial_and_names_the_action(setup):
    p, tmp = setup
    out = cli("scenario", "run", "wrong-tier", "--db", str(p.db), "--proxy", p.url, "--junit", str(tmp / "bad.xml"), check=False)
    assert out.returncode == 1
    assert "PARTIAL: scenario wrong-tier" in out.stdout
    assert "action #4 HTTP_REQUEST GET http://api.example/api/items/2?tier=gold" in out.stdout
    assert "expected $.kind = 'silver', got 'gold'" in out.stdout
    result = json.loads(cli("scenario", "results", "wrong-tier", "--db", str(p.db), "--json").stdout)[0]
    assert result["status"] == "PARTIAL" and result["error"].startswith("action #4")
    assert [a["status"] for a in result["actions"]] == ["PASSED", "PASSED", "PASSED", "FAILED", "PASSED"]
    assert result["actions"][3]["actual"]["status"] == 200
    suite = ET.parse(tmp / "bad.xml").getroot().find("testsuite")
    assert suite.get("failures") == "1"
    failed = [c for c in suite.findall("testcase") if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ["#4 HTTP_REQUEST GET http://api.example/api/items/2?tier=gold"]
    assert "silver" in failed[0].find("failure").get("message")
    assert "FAILED" in cli("scenario", "list", "--db", str(p.db)).stdout


def test_nothing_passing_is_failed(setup):
    p, _ = setup
    out = cli("scenario", "run", "nothing-right", "--db", str(p.db), "--proxy", p.url, check=False)
    assert out.returncode == 1 and "FAILED: scenario nothing-right" in out.stdout
    assert "action #1 START_MOCK no-such-mock: no mock 'no-such-mock'" in out.stdout


def test_a_bad_scenario_file_is_refused_naming_the_action(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nactions:\n  - {type: WAIT, ms: 10}\n  - {type: HTTP_REQUEST, url: /x, expect: {statuss: 200}}\n")
    out = cli("scenario", "add", str(path), "--db", str(tmp_path / "m.db"), check=False)
    assert out.returncode != 0 and "action #2 (HTTP_REQUEST): field 'expect'" in out.stderr


def test_relative_urls_go_to_a_reverse_proxy_and_direct_ones_skip_it(proxy, backend, tmp_path):
    _, api = backend()
    (tmp_path / "stubs.yaml").write_text(yaml.safe_dump(STUBS))
    p = proxy(api, mode="learn", mock_stubs=str(tmp_path / "stubs.yaml"))
    stubs_stored(p)
    (tmp_path / "s.yaml").write_text(f"""
name: both-ways
actions:
  - {{type: START_MOCK, mock: items}}
  - {{type: HTTP_REQUEST, url: "/api/items/5?tier=gold", expect: {{json: {{"$.id": "5"}}}}}}
  - {{type: HTTP_REQUEST, url: "{api}/users/5", via: direct, expect: {{status: 200, json: {{"$.id": 5}}}}}}
  - {{type: HTTP_REQUEST, method: POST, url: "/echo", headers: {{X-A: b}}, body: {{"n": 1}},
     expect: {{json: {{"$.method": POST}}, body: '"query"'}}}}
  - {{type: STOP_MOCK, mock: items}}
""")
    cli("scenario", "add", str(tmp_path / "s.yaml"), "--db", str(p.db))
    out = cli("scenario", "run", "both-ways", "--db", str(p.db), "--proxy", p.url)
    assert "SUCCESS" in out.stdout, out.stdout
    shown = yaml.safe_load(cli("scenario", "show", "both-ways", "--db", str(p.db)).stdout)
    assert shown["status"] == "COMPLETED" and len(shown["actions"]) == 5
