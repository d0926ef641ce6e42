"""Contract drift through the real addon: a real backend whose contract changes between runs
(tests/backend.py --variant), a real mitmdump with addons/mockstore.py in learn mode, a real
client, and the alerts read back with the real `mockstore drift` command line."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
import time
from urllib.parse import urlsplit

import httpx
from click.testing import CliRunner
from conftest import MOCKSTORE
from mitmproxy import io
from test_workers import served  # noqa: F401  (a fixture: `mockstore serve --workers N`)

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


def test_request_drift_and_error_statuses(backend, proxy):
    """A request body that no longer fits the learned request schema is drift; a 404 of a
    learned endpoint is how the API behaves: no alert, and its body is learned for mock mode."""
    api, url = backend("base")
    p = proxy(url, mock_drift_warmup=WARMUP)
    with p.client() as c:
        for i in range(WARMUP + 1):
            assert c.post("/items", json={"name": f"n{i}", "qty": i}).status_code == 201
            assert c.get(f"/users/{i + 1}").status_code == 200
        assert c.post("/items", json={"name": "x", "qty": "many"}).status_code == 201  # forwarded all the same
        assert c.get("/users/1001").status_code == 404
        assert c.get("/users/1002").status_code == 404
    out = p.stop()

    found = alerts(p.db)
    request = [a for a in found if a["kind"] == "request"]
    assert len(request) == 1 and request[0]["endpoint"].startswith("POST ") and request[0]["endpoint"].endswith("/items")
    assert request[0]["findings"] == [{"path": "qty", "kind": "type", "severity": "high",
                                      "expected": "integer", "actual": "string"}]
    assert not [a for a in found if a["endpoint"].endswith("/users/{id}")], found
    assert not [line for line in out.splitlines() if "mockstore drift:" in line and "/users/" in line]
    with sqlite3.connect(p.db) as conn:
        (schema,) = conn.execute("select schema from schemas where endpoint like '%/users/{id}' "
                                 "and kind = 'response' and status = 404").fetchone()
    assert set(json.loads(schema)["properties"]) == {"error", "id"}

    mock = proxy(url, mode="mock", db=p.db)
    with mock.client() as c:
        r = c.get("/users/2000")  # never recorded: answered from what the 404s taught
        assert r.headers.get("x-mockstore-source") in ("adapted", "synthesized"), r.headers
    mock.stop()


def test_an_api_gone_410_is_one_alert_and_every_flow_is_marked(backend, proxy, tmp_path):
    api, url = backend("base")
    flows_file = tmp_path / "flows.mitm"
    p = proxy(url, mock_drift_warmup=WARMUP, save_stream_file=str(flows_file))
    get_users(p, range(1, 8))
    api = switch_backend(api, backend, url, "gone")
    with p.client() as c:
        for i in range(20, 25):
            assert c.get(f"/users/{i}").status_code == 410
    out = p.stop()

    (alert,) = alerts(p.db)
    assert alert["status"] == 410 and alert["count"] == 5, alert
    assert alert["summary"] == "1 high: status 410 never seen"
    assert sum("mockstore drift:" in line for line in out.splitlines()) == 5, out[-3000:]
    with open(flows_file, "rb") as f:
        flows = [fl for fl in io.FlowReader(f).stream()]
    gone = [fl for fl in flows if fl.response.status_code == 410]
    assert len(gone) == 5 and all(fl.marked and "mockstore drift" in fl.comment for fl in gone)
    assert not any(fl.marked for fl in flows if fl.response.status_code == 200)


def learned_by_one(served, url: str, db, paths: list[str]) -> str:
    """The contract a pool starts from: one `serve` learns these paths into `db` and stops;
    its output."""
    learning = served("serve", url, db, "learn", workers=1)
    with httpx.Client(base_url=learning.url, timeout=20) as c:
        for path in paths:
            assert c.get(path).status_code == 200
    return learning.stop()


def test_two_workers_count_one_drift_together(served, backend, tmp_path):
    """`mockstore serve --workers 2`: two processes, each with its own watch, see the same two
    drifts; the store holds one alert per drift, numbered once, counting every sighting."""
    api, url = backend("base")
    db = tmp_path / "shared.db"
    out = learned_by_one(served, url, db, [p for i in range(1, 9) for p in (f"/users/{i}", f"/users?page={i}")])
    with sqlite3.connect(db) as conn:
        since = conn.execute("select max(id), count(*) from exchanges").fetchone()
    assert since[1] == 16, f"the learning proxy stored {since[1]} of its 16 exchanges:\n{out[-3000:]}"
    since = since[0]

    api = switch_backend(api, backend, url, "renamed")  # user_id -> userId, in both endpoints
    proxy = served("serve", url, db, "learn", workers=2)

    def client(k: int) -> None:
        for i in range(10):  # a new connection per request: the kernel spreads them over both workers
            path = f"/users/{k * 10 + i + 1}" if k < 3 else f"/users?page={k * 10 + i}"
            assert httpx.get(proxy.url + path, headers={"connection": "close"}, timeout=20).status_code == 200

    threads = [threading.Thread(target=client, args=(k,)) for k in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out = proxy.stop()

    slots = {r[0] % 16 for r in sqlite3.connect(db).execute("select id from exchanges where id > ?", [since])}
    assert slots == {0, 1}, "both workers saw the drift"
    found = {a["endpoint"].split("/", 1)[1]: a for a in alerts(db)}
    assert set(found) == {"users/{id}", "users"}, found
    assert found["users/{id}"]["count"] == 30 and found["users"]["count"] == 20
    assert sorted(a["id"] for a in found.values()) == [1, 2]
    assert sum("mockstore drift:" in line for line in out.splitlines()) == 50, out[-3000:]


def test_a_drift_resolved_by_the_cli_stays_resolved_in_every_worker(served, backend, tmp_path):
    """`mockstore drift resolve` on the store of a running `serve --workers 2`: within a second
    both workers take the accepted shape as the contract; the same responses after it raise
    no alert in either, and the alert stays resolved."""
    api, url = backend("base")
    db = tmp_path / "shared.db"
    learned_by_one(served, url, db, [f"/users/{i}" for i in range(1, 9)])

    api = switch_backend(api, backend, url, "renamed")  # user_id -> userId
    proxy = served("serve", url, db, "learn", workers=2)

    def drifting(start: int) -> int:
        """20 requests, each on its own connection (both workers take some); the highest id."""
        for i in range(start, start + 20):
            assert httpx.get(f"{proxy.url}/users/{i}", headers={"connection": "close"}, timeout=20).status_code == 200
        with sqlite3.connect(db) as conn:
            return conn.execute("select max(id) from exchanges").fetchone()[0]

    before = drifting(100)
    deadline = time.monotonic() + 10
    while not (found := [a for a in alerts(db) if not a["resolved"]]):
        assert time.monotonic() < deadline, "the drift alert was not stored"
        time.sleep(0.1)
    (alert,) = found
    done = drift_cli(db, "resolve", str(alert["id"]))
    assert done.exit_code == 0 and "accepted" in done.stdout, done.output
    time.sleep(3)  # it takes about a second; the rest is a margin for a loaded machine
    said = len(proxy.output())
    drifting(200)
    out = proxy.stop()

    with sqlite3.connect(db) as conn:
        slots = {r[0] % 16 for r in conn.execute("select id from exchanges where id > ?", [before])}
    assert slots == {0, 1}, "both workers answered after the resolve"
    assert "mockstore drift:" not in out[said:], out[said:][-3000:]
    (after,) = alerts(db)
    # resolved, and counting the 20 sightings made before it (some stored only after it)
    assert after["resolved"] and after["resolution"] == "accepted" and after["count"] == 20, after
