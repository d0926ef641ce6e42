"""Contract drift through the real addon: a real backend whose contract changes between runs
(tests/backend.py --variant), a real mitmdump with addons/mockstore.py in learn mode, a real
client, and the alerts read back with the real `mockstore drift` command line."""

from __future__ import annotations

import json
import subprocess
from urllib.parse import urlsplit

from click.testing import CliRunner
from conftest import MOCKSTORE

from mockstore.cli import cli

WARMUP = 5


def drift_cli(db, *args: str):
    """`mockstore drift ...`, in this process (the same click command; a second a start saved)."""
    return CliRunner().invoke(cli, ["drift", *args, "--db", str(db)])


def alerts(db) -> list[dict]:
    out = drift_cli(db, "--json")
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def get_users(proxy, ids) -> None:
    with proxy.client() as c:
        for i in ids:
            r = c.get(f"/users/{i}")
            assert r.status_code == 200
            assert "x-mockstore-source" not in r.headers, "learn mode forwards"


def switch_backend(api, backend, url: str, variant: str):
    """The same API, same port, another contract: the proxy in front of it keeps running."""
    api.stop()
    new, _ = backend(variant, port=urlsplit(url).port)
    return new


def test_drift_alerts_resolve_and_stay_quiet(backend, proxy):
    api, url = backend("base")
    p = proxy(url, mock_drift_warmup=WARMUP)
    # the base contract, over 12 users: `nickname` is present for every third user only
    get_users(p, range(1, 13))
    get_users(p, [4, 5, 6])  # an optional field absent (4, 5) or present (6): no drift

    api = switch_backend(api, backend, url, "renamed")  # user_id -> userId
    get_users(p, range(1, 101))  # the same drift, 100 times
    api = switch_backend(api, backend, url, "retyped")  # created_at: string -> integer
    get_users(p, [1, 2, 3])
    api = switch_backend(api, backend, url, "added")  # a new field, extra
    get_users(p, [7, 8])
    out = p.stop()

    found = alerts(p.db)
    by_severity = {a["summary"].split(":")[0]: a for a in found}
    assert set(by_severity) == {"1 critical, 1 low", "1 high", "1 low"}, found
    assert all(a["endpoint"].endswith("/users/{id}") and a["kind"] == "response" and a["status"] == 200 for a in found)

    renamed = by_severity["1 critical, 1 low"]
    assert renamed["count"] == 100, "the same drift repeated is one alert with a growing count"
    assert "user_id missing" in renamed["summary"] and "userId new" in renamed["summary"]
    paths = {(f["path"], f["severity"]) for f in renamed["findings"]}
    assert paths == {("user_id", "critical"), ("userId", "low")}
    assert renamed["score"] == 55 and not renamed["resolved"]
    assert renamed["last_seen"] >= renamed["first_seen"]

    retyped = by_severity["1 high"]
    assert retyped["findings"] == [{"path": "created_at", "kind": "type", "severity": "high",
                                    "expected": "string", "actual": "integer"}]
    assert retyped["count"] == 3
    added = by_severity["1 low"]
    assert [(f["path"], f["kind"]) for f in added["findings"]] == [("extra", "new")] and added["count"] == 2

    # one warning per drifting flow in the proxy's log, naming the drift
    warnings = [line for line in out.splitlines() if "mockstore drift:" in line]
    assert len(warnings) == 100 + 3 + 2, out[-3000:]
    assert any("user_id missing, userId new" in w and f"alert {renamed['id']}" in w for w in warnings)
    assert any("seen 100x" in w for w in warnings)

    # the human table and --unresolved
    table = drift_cli(p.db)
    assert table.exit_code == 0 and "user_id missing, userId new" in table.stdout

    # resolve the rename while the proxy is stopped: the new shape becomes the contract
    done = subprocess.run([MOCKSTORE, "drift", "resolve", str(renamed["id"]), "--db", str(p.db)],
                          capture_output=True, text=True, timeout=60)  # the installed command itself
    assert done.returncode == 0 and "accepted" in done.stdout, done.stderr
    missing = drift_cli(p.db, "resolve", "9999")
    assert missing.exit_code != 0 and "no drift alert with id 9999" in missing.stderr
    open_ = json.loads(drift_cli(p.db, "--json", "--unresolved").stdout)
    assert {a["id"] for a in open_} == {retyped["id"], added["id"]}

    api = switch_backend(api, backend, url, "renamed")
    p2 = proxy(url, db=p.db, mock_drift_warmup=WARMUP)
    get_users(p2, [1, 2, 3, 1])  # the shape just accepted: no new alert
    out2 = p2.stop()
    assert "mockstore drift:" not in out2, out2[-3000:]
    after = {a["id"]: a for a in alerts(p.db)}
    assert len(after) == 3
    assert after[renamed["id"]]["count"] == 100 and after[renamed["id"]]["resolution"] == "accepted"


def test_request_drift_and_unseen_status(backend, proxy):
    """A request body that no longer fits the learned request schema, and a status this
    endpoint never answered, are drift too."""
    api, url = backend("base")
    p = proxy(url, mock_drift_warmup=WARMUP)
    with p.client() as c:
        for i in range(WARMUP + 1):
            assert c.post("/items", json={"name": f"n{i}", "qty": i}).status_code == 201
            assert c.get(f"/users/{i + 1}").status_code == 200
        assert c.post("/items", json={"name": "x", "qty": "many"}).status_code == 201  # forwarded all the same
        assert c.get("/users/1001").status_code == 404
    out = p.stop()

    found = alerts(p.db)
    request = [a for a in found if a["kind"] == "request"]
    assert len(request) == 1 and request[0]["endpoint"].startswith("POST ") and request[0]["endpoint"].endswith("/items")
    assert request[0]["findings"] == [{"path": "qty", "kind": "type", "severity": "high",
                                      "expected": "integer", "actual": "string"}]
    unseen = [a for a in found if a["endpoint"].endswith("/users/{id}")]
    assert len(unseen) == 1 and unseen[0]["status"] == 404
    assert [(f["kind"], f["severity"], f["actual"]) for f in unseen[0]["findings"]] == [("status", "high", 404)]
    assert "status 404 never seen" in unseen[0]["summary"]
    assert sum("mockstore drift:" in line for line in out.splitlines()) >= 2
