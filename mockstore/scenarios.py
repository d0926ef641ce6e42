"""Scenarios: ordered actions on the stubs and real requests with expectations, run against
a proxy on the same store, each run kept as a test result (and JUnit XML for CI).

A run changes mocks through the store (`mockstore.stubs.update`), which a running proxy picks
up within a second; before the next request after such a change the runner waits
SETTLE seconds, the longest that takes. Every action runs, failed or not (a STOP_MOCK at the
end still stops its mock); the run is SUCCESS when all passed, PARTIAL when some failed but
a request's expectations held, FAILED otherwise. All SQL on `scenarios` and
`scenario_results` is here.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import yaml

from . import stubs
from .store import register_tables
from .stubwatch import POLL_INTERVAL

STATUSES = ("DRAFT", "READY", "RUNNING", "COMPLETED", "FAILED")
ACTIONS = {
    "START_MOCK": {"mock"},
    "STOP_MOCK": {"mock"},
    "SET_DELAY": {"mock", "responseDelay"},
    "WAIT": {"ms"},
    "HTTP_REQUEST": {"method", "url", "headers", "body", "via", "timeout", "expect"},
}
EXPECTATIONS = {"status", "headers", "json", "body"}
SETTLE = 2 * POLL_INTERVAL + 0.15  # seconds: a stub change reaches a running proxy within this


class ScenarioError(ValueError):
    """A scenario (or its file) is not valid, or unknown; the message names the action and field."""


@dataclass
class Scenario:
    name: str
    actions: list[dict]
    description: str | None = None
    status: str = "READY"
    id: str = ""
    created_at: str = ""
    updated_at: str = ""

    def spec(self) -> dict:
        d: dict[str, Any] = {"name": self.name}
        if self.description:
            d["description"] = self.description
        d["status"] = self.status
        d["actions"] = self.actions
        return d


@dataclass
class ActionResult:
    index: int  # from 1
    type: str
    label: str
    passed: bool
    expected: Any = None
    actual: Any = None
    error: str | None = None
    duration_ms: float = 0.0

    def to_dict(self) -> dict:
        return {"index": self.index, "type": self.type, "label": self.label,
                "status": "PASSED" if self.passed else "FAILED", "expected": self.expected,
                "actual": self.actual, "error": self.error, "durationMs": round(self.duration_ms, 1)}


@dataclass
class Result:
    scenario: str
    status: str  # SUCCESS | FAILED | PARTIAL
    duration_ms: float
    actions: list[ActionResult] = field(default_factory=list)
    error: str | None = None
    executed_at: str = ""
    id: str = ""

    def to_dict(self) -> dict:
        return {"id": self.id, "scenario": self.scenario, "status": self.status,
                "durationMs": round(self.duration_ms, 1), "error": self.error, "executedAt": self.executed_at,
                "actions": [a.to_dict() for a in self.actions]}


# --- validation ------------------------------------------------------------------------------

def load_file(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ScenarioError(f"{path}: cannot read the scenario file: {e.strerror or e}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ScenarioError(f"{path}: not valid YAML or JSON: {e}") from None
    try:
        return parse(doc)
    except ScenarioError as e:
        raise ScenarioError(f"{path}: {e}") from None


def parse(doc: Any) -> Scenario:
    if not isinstance(doc, dict):
        raise ScenarioError("a scenario is a mapping with 'name' and 'actions'")
    name = doc.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ScenarioError("field 'name' is required (a non-empty string)")
    label = f"scenario {name!r}"
    unknown = set(doc) - {"name", "description", "status", "actions"}
    if unknown:
        raise ScenarioError(f"{label}: field {sorted(unknown)[0]!r} is not known (a scenario has: name, description, status, actions)")
    status = str(doc.get("status", "READY")).upper()
    if status not in ("DRAFT", "READY"):
        raise ScenarioError(f"{label}: field 'status' must be DRAFT or READY, got {doc.get('status')!r}")
    actions = doc.get("actions")
    if not isinstance(actions, list) or not actions:
        raise ScenarioError(f"{label}: field 'actions' must be a non-empty list")
    for i, a in enumerate(actions, 1):
        _validate_action(a, f"{label}: action #{i}")
    desc = doc.get("description")
    return Scenario(name=name.strip(), actions=actions, description=str(desc) if desc is not None else None, status=status)


def _validate_action(a: Any, where: str) -> None:
    if not isinstance(a, dict):
        raise ScenarioError(f"{where}: must be a mapping with a 'type'")
    kind = a.get("type")
    if kind not in ACTIONS:
        raise ScenarioError(f"{where}: field 'type' is unknown: {kind!r}; expected one of {', '.join(ACTIONS)}")
    where = f"{where} ({kind})"
    for k in a:
        if k != "type" and k not in ACTIONS[kind]:
            raise ScenarioError(f"{where}: field {k!r} is not known (it takes: {', '.join(sorted(ACTIONS[kind]))})")

    def number(key: str, required: bool = True) -> None:
        v = a.get(key)
        if v is None and not required:
            return
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ScenarioError(f"{where}: field {key!r} must be a number of milliseconds >= 0, got {v!r}")

    if kind in ("START_MOCK", "STOP_MOCK", "SET_DELAY") and not isinstance(a.get("mock"), str):
        raise ScenarioError(f"{where}: field 'mock' is required (a mock's name)")
    if kind == "SET_DELAY":
        number("responseDelay")
    if kind == "WAIT":
        number("ms")
    if kind == "HTTP_REQUEST":
        if not isinstance(a.get("url"), str) or not a["url"]:
            raise ScenarioError(f"{where}: field 'url' is required")
        if str(a.get("method", "GET")).upper() not in stubs.METHODS:
            raise ScenarioError(f"{where}: field 'method' must be an HTTP method, got {a.get('method')!r}")
        if a.get("via", "proxy") not in ("proxy", "direct"):
            raise ScenarioError(f"{where}: field 'via' must be proxy or direct, got {a.get('via')!r}")
        if not isinstance(a.get("headers", {}), dict):
            raise ScenarioError(f"{where}: field 'headers' must be a mapping")
        number("timeout", required=False)
        expect = a.get("expect", {})
        if not isinstance(expect, dict) or set(expect) - EXPECTATIONS:
            raise ScenarioError(f"{where}: field 'expect' must be a mapping of {', '.join(sorted(EXPECTATIONS))}")
        if "json" in expect:
            if not isinstance(expect["json"], dict):
                raise ScenarioError(f"{where}: field 'expect.json' must map JSON paths ('$.kind') to values")
            for p in expect["json"]:
                try:
                    stubs.json_path(str(p))
                except ValueError as e:
                    raise ScenarioError(f"{where}: field 'expect.json' {e}") from None


# --- the tables ------------------------------------------------------------------------------

@register_tables
def _migrate(db) -> None:
    db.execute(
        """create table if not exists scenarios (
            id text primary key, name text not null, description text, status text not null,
            actions text not null,                          -- JSON list, as written
            created_at text, updated_at text
        )"""
    )
    db.execute("create unique index if not exists scenarios_name on scenarios (name)")
    db.execute(
        """create table if not exists scenario_results (
            id text primary key, scenario_id text not null references scenarios (id) on delete cascade,
            status text not null, duration_ms real, actions text, error text, executed_at text
        )"""
    )
    db.execute("create index if not exists scenario_results_scenario on scenario_results (scenario_id, executed_at)")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def save(db, scenario: Scenario, *, replace: bool = False) -> Scenario:
    now = _now()
    with db.conn:
        row = db.execute("select id, created_at from scenarios where name = ?", [scenario.name]).fetchone()
        if row and not replace:
            raise ScenarioError(f"scenario {scenario.name!r}: field 'name' is already used; add it with --replace")
        scenario.id, scenario.created_at = (row[0], row[1]) if row else (str(uuid.uuid4()), now)
        scenario.updated_at = now
        db.execute("insert or replace into scenarios (id, name, description, status, actions, created_at, updated_at) "
                   "values (?, ?, ?, ?, ?, ?, ?)",
                   [scenario.id, scenario.name, scenario.description, scenario.status, json.dumps(scenario.actions),
                    scenario.created_at, now])
    return scenario


def get(db, name: str) -> Scenario:
    row = db.execute("select id, name, description, status, actions, created_at, updated_at from scenarios "
                     "where name = ? or id = ?", [name, name]).fetchone()
    if row is None:
        names = [r[0] for r in db.execute("select name from scenarios order by name")]
        raise ScenarioError(f"no scenario {name!r}; stored: {', '.join(names) or 'none'}")
    sid, name, desc, status, actions, created, updated = row
    return Scenario(name=name, actions=json.loads(actions), description=desc, status=status, id=sid,
                    created_at=created, updated_at=updated)


def all_scenarios(db) -> list[Scenario]:
    return [get(db, r[0]) for r in db.execute("select id from scenarios order by name").fetchall()]


def _set_status(db, scenario: Scenario, status: str) -> None:
    with db.conn:
        db.execute("update scenarios set status = ?, updated_at = ? where id = ?", [status, _now(), scenario.id])
    scenario.status = status


def results(db, name: str, limit: int = 20) -> list[Result]:
    scenario = get(db, name)
    out = []
    for rid, status, duration, actions, error, executed in db.execute(
        "select id, status, duration_ms, actions, error, executed_at from scenario_results where scenario_id = ? "
        "order by executed_at desc limit ?", [scenario.id, limit]
    ):
        acts = [ActionResult(index=a["index"], type=a["type"], label=a["label"], passed=a["status"] == "PASSED",
                             expected=a["expected"], actual=a["actual"], error=a["error"], duration_ms=a["durationMs"])
                for a in json.loads(actions or "[]")]
        out.append(Result(scenario.name, status, duration, acts, error, executed, rid))
    return out


# --- running ---------------------------------------------------------------------------------

def run(db, name: str, *, proxy: str | None = None, verify: bool = True) -> Result:
    """Run a stored scenario; record and return its result. `proxy` is the proxy's URL: a
    request with a relative URL goes to it as to the API (a reverse proxy); an absolute URL
    `via: proxy` goes through it as an HTTP proxy; `via: direct` goes straight to the URL."""
    import httpx

    scenario = get(db, name)
    _set_status(db, scenario, "RUNNING")
    started = time.monotonic()
    executed_at = _now()
    out: list[ActionResult] = []
    changed, changed_at = False, 0.0  # a stub change the proxy may not have seen yet
    clients: dict[bool, httpx.Client] = {}
    try:
        for i, a in enumerate(scenario.actions, 1):
            kind = a["type"]
            t0 = time.monotonic()
            r = ActionResult(i, kind, _label(a), True)
            try:
                if kind in ("START_MOCK", "STOP_MOCK", "SET_DELAY"):
                    if kind == "SET_DELAY":
                        stubs.update(db, a["mock"], response_delay=int(a["responseDelay"]))
                    else:
                        stubs.update(db, a["mock"], status="ACTIVE" if kind == "START_MOCK" else "INACTIVE")
                    changed, changed_at = True, time.monotonic()
                elif kind == "WAIT":
                    time.sleep(a["ms"] / 1000)
                else:
                    if changed:
                        wait = SETTLE - (time.monotonic() - changed_at)
                        if wait > 0:
                            time.sleep(wait)
                        changed = False
                    _request(a, r, proxy, clients, verify, httpx)
            except (stubs.StubError, ScenarioError) as e:
                r.passed, r.error = False, str(e)
            r.duration_ms = (time.monotonic() - t0) * 1000
            out.append(r)
    finally:
        for c in clients.values():
            c.close()
    failed = [r for r in out if not r.passed]
    requests_ok = any(r.passed for r in out if r.type == "HTTP_REQUEST")
    status = "SUCCESS" if not failed else ("PARTIAL" if requests_ok else "FAILED")
    error = None if not failed else f"action #{failed[0].index} {failed[0].label}: {failed[0].error}"
    result = Result(scenario.name, status, (time.monotonic() - started) * 1000, out, error, executed_at, str(uuid.uuid4()))
    with db.conn:
        db.execute("insert into scenario_results (id, scenario_id, status, duration_ms, actions, error, executed_at) "
                   "values (?, ?, ?, ?, ?, ?, ?)",
                   [result.id, scenario.id, status, result.duration_ms,
                    json.dumps([a.to_dict() for a in out], default=str), error, executed_at])
    _set_status(db, scenario, "COMPLETED" if status == "SUCCESS" else "FAILED")
    return result


def _label(a: dict) -> str:
    kind = a["type"]
    if kind == "HTTP_REQUEST":
        return f"HTTP_REQUEST {str(a.get('method', 'GET')).upper()} {a['url']}"
    if kind == "WAIT":
        return f"WAIT {a['ms']} ms"
    if kind == "SET_DELAY":
        return f"SET_DELAY {a['mock']} {a['responseDelay']} ms"
    return f"{kind} {a['mock']}"


def _request(a: dict, r: ActionResult, proxy: str | None, clients: dict, verify: bool, httpx) -> None:
    url, via = a["url"], a.get("via", "proxy")
    relative = url.startswith("/")
    if relative or via == "proxy":
        if not proxy:
            raise ScenarioError("this request goes through the proxy: give the proxy's URL (--proxy)")
        if relative:
            url = proxy.rstrip("/") + url
    forward = via == "proxy" and not relative
    client = clients.get(forward)
    if client is None:
        client = clients[forward] = httpx.Client(proxy=proxy if forward else None, trust_env=False, verify=verify)
    timeout = (a.get("timeout") or 10000) / 1000
    body = a.get("body")
    kw: dict[str, Any] = {"headers": {str(k): str(v) for k, v in (a.get("headers") or {}).items()}, "timeout": timeout}
    if isinstance(body, (dict, list)):
        kw["json"] = body
    elif body is not None:
        kw["content"] = str(body).encode()
    expect = a.get("expect") or {}
    r.expected = expect
    try:
        resp = client.request(str(a.get("method", "GET")).upper(), url, **kw)
    except httpx.TimeoutException:
        raise ScenarioError(f"no answer within {timeout * 1000:.0f} ms") from None
    except httpx.HTTPError as e:
        raise ScenarioError(f"request failed: {e}") from None
    r.actual = {"status": resp.status_code, "headers": dict(resp.headers), "body": resp.text[:2000]}
    problems = []
    if "status" in expect and resp.status_code != int(expect["status"]):
        problems.append(f"expected status {expect['status']}, got {resp.status_code}")
    for k, v in (expect.get("headers") or {}).items():
        if resp.headers.get(str(k)) != str(v):
            problems.append(f"expected header {k}: {v}, got {resp.headers.get(str(k))!r}")
    if "json" in expect:
        from .stubmatch import _MISSING, _follow, as_text

        try:
            data = resp.json()
        except ValueError:
            data = _MISSING
            problems.append("expected a JSON body, got none")
        if data is not _MISSING:
            for p, want in expect["json"].items():
                got = _follow(data, stubs.json_path(str(p)))
                if got is _MISSING or (got != want and as_text(got) != as_text(want)):
                    problems.append(f"expected {p} = {want!r}, got {'nothing' if got is _MISSING else repr(got)}")
    if "body" in expect and str(expect["body"]) not in resp.text:
        problems.append(f"expected the body to contain {expect['body']!r}")
    if problems:
        raise ScenarioError("; ".join(problems))


def junit(result: Result) -> str:
    """The result as JUnit XML: one test suite, one test case per action."""
    failures = sum(1 for a in result.actions if not a.passed)
    suite = ET.Element("testsuite", name=result.scenario, tests=str(len(result.actions)), failures=str(failures),
                       errors="0", time=f"{result.duration_ms / 1000:.3f}", timestamp=result.executed_at)
    for a in result.actions:
        case = ET.SubElement(suite, "testcase", classname=f"mockstore.scenario.{result.scenario}",
                             name=f"#{a.index} {a.label}", time=f"{a.duration_ms / 1000:.3f}")
        if not a.passed:
            failure = ET.SubElement(case, "failure", message=a.error or "failed", type=a.type)
            failure.text = json.dumps({"expected": a.expected, "actual": a.actual}, default=str, indent=2)
    suites = ET.Element("testsuites", name="mockstore scenarios", tests=suite.get("tests"), failures=str(failures))
    suites.append(suite)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
