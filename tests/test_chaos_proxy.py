"""Chaos through the real addon (mitmdump -s addons/mockstore.py), a real backend process
(tests/backend.py) and a real client (httpx), on 127.0.0.1: rules from a YAML file
(`mock_chaos=FILE`), from the command line (`mockstore chaos add --db`), on proxied and on
mocked traffic."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import httpx
import pytest
from click.testing import CliRunner
from conftest import ADDON, MITMDUMP, MOCKSTORE, ROOT, Proc, free_port

from mockstore.cli import cli

BIG = 6000  # /big?size=BIG: a JSON body of a little over 6,000 bytes

RULES = """
rules:
  - {id: slow, template: /ok/slow, effect: latency, ms: 1000}
  - {id: reset, template: /ok/reset, effect: reset}
  - {id: trickle, template: /big, effect: slow_body, bytes_per_second: 8192}
  - {id: down, template: "/users/*", effect: error, status: 503, probability: 0.3}
  - {id: hang, template: /ok/hang, effect: timeout}
"""


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("chaos") / "chaos.yaml"
    path.write_text(RULES)
    return path


@pytest.fixture(scope="module")
def chaos_proxy(tmp_path_factory, rules_file, confdir):
    """One backend and one mitmdump with the mockstore addon in learn mode, for the module."""
    tmp = tmp_path_factory.mktemp("chaos-proxy")
    api_port, port = free_port(), free_port()
    api = Proc([sys.executable, str(ROOT / "tests" / "backend.py"), str(api_port)], api_port)
    p = Proc([MITMDUMP, "-q", "-s", ADDON, "--listen-host", "127.0.0.1", "--listen-port", str(port),
              "--mode", f"reverse:http://127.0.0.1:{api_port}",
              "--set", f"mock_db={tmp / 'mockstore.db'}", "--set", f"confdir={confdir}",
              "--set", f"mock_chaos={rules_file}", "--set", "mock_chaos_timeout=20",
              "--set", "mock_seed=7"], port)
    yield f"http://127.0.0.1:{port}", f"http://127.0.0.1:{api_port}"
    out = p.stop()
    api.stop()
    print(f"--- mitmdump ---\n{out[-5000:]}")


def client(base: str, timeout: float = 10) -> httpx.Client:
    return httpx.Client(base_url=base, timeout=timeout, trust_env=False)


def test_latency_delays_only_its_endpoint(chaos_proxy):
    proxy, _ = chaos_proxy
    finished = []

    def get(path):
        with client(proxy) as c:
            start = time.monotonic()
            r = c.get(path)
            finished.append((path, r.status_code, time.monotonic() - start, r.headers.get("x-mockstore-chaos")))

    slow = threading.Thread(target=get, args=("/ok/slow",))
    slow.start()
    time.sleep(0.1)  # the slow request is being held by now
    get("/ok/fast")
    slow.join()
    assert [(p, s) for p, s, _, _ in finished] == [("/ok/fast", 200), ("/ok/slow", 200)]
    assert finished[1][2] >= 0.9  # the injected second, not less
    assert finished[1][3] == "latency 1000 ms; rule=slow" and finished[0][3] is None


def test_reset_is_seen_as_a_broken_connection(chaos_proxy):
    proxy, _ = chaos_proxy
    with client(proxy, 5) as c:
        with pytest.raises(httpx.TransportError) as e:
            c.get("/ok/reset")
        assert not isinstance(e.value, httpx.TimeoutException)
        assert c.get("/ok/fast").status_code == 200


def test_slow_body_trickles_the_body(chaos_proxy):
    proxy, api = chaos_proxy
    with client(api) as real:
        expected = real.get("/big", params={"size": BIG}).content
    with client(proxy) as c:
        with c.stream("GET", "/big", params={"size": BIG}) as r:
            headers_at = time.monotonic()
            assert r.status_code == 200
            assert r.headers["X-Mockstore-Chaos"] == "slow body 8192 B/s; rule=trickle"
            chunks = []
            for chunk in r.iter_raw():
                chunks.append((time.monotonic(), chunk))
                if len(chunks) == 1:  # meanwhile, other flows go on
                    with client(proxy) as other:
                        assert other.get("/ok/fast").status_code == 200
                    fast_done = time.monotonic()
            body_took = chunks[-1][0] - headers_at
        assert fast_done < chunks[-1][0]
        assert b"".join(c for _, c in chunks) == expected
        assert len(chunks) > 3  # it came in pieces, not at once
        assert body_took >= 0.75 * len(expected) / 8192
        # the connection is whole afterwards: the next responses on it are right
        assert c.get("/ok/fast").json() == {"path": "/ok/fast"}
        assert c.get("/big", params={"size": BIG}).content == expected


def test_error_rule_rate_and_marking(chaos_proxy):
    proxy, _ = chaos_proxy
    with client(proxy) as c:
        users = [c.get(f"/users/{i % 500}") for i in range(1000)]
        others = [c.get(f"/articles/post-{i}").status_code for i in range(100)]
        others += [c.get("/users").status_code for _ in range(20)]  # a glob on /users/* only
    errors = [r for r in users if r.status_code == 503]
    assert 0.25 * 1000 <= len(errors) <= 0.35 * 1000
    assert all(r.headers["X-Mockstore-Source"] == "chaos" for r in errors)
    assert all(r.headers["X-Mockstore-Chaos"] == "error 503; rule=down" for r in errors)
    assert all("X-Mockstore-Source" not in r.headers for r in users if r.status_code != 503)
    assert {r.status_code for r in users} == {200, 503}
    assert set(others) == {200}


def test_timeout_holds_until_the_client_gives_up(chaos_proxy):
    proxy, _ = chaos_proxy
    with client(proxy, 0.5) as c:
        with pytest.raises(httpx.ReadTimeout):
            c.get("/ok/hang")
    with client(proxy, 5) as c:
        assert c.get("/ok/fast").status_code == 200


def test_rules_file_is_reloaded_on_change(chaos_proxy, rules_file):
    proxy, _ = chaos_proxy
    with client(proxy, 5) as c:
        assert c.get("/ok/teapot").status_code == 200
        try:
            rules_file.write_text(RULES + "  - {id: tea, template: /ok/teapot, effect: error, status: 418}\n")
            deadline = time.monotonic() + 10
            while c.get("/ok/teapot").status_code != 418:
                assert time.monotonic() < deadline, "the edited rules file was not picked up"
                time.sleep(0.1)
            rules_file.write_text(RULES + "  - {id: tea, effect: nope}\n")  # a broken edit
            time.sleep(1.2)  # the addon looks at the file at most once a second
            assert c.get("/ok/teapot").status_code == 418  # the previous rules stay
        finally:
            rules_file.write_text(RULES)
        deadline = time.monotonic() + 10
        while c.get("/ok/teapot").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)


@pytest.mark.parametrize("rule, message", [
    ("{id: flaky, template: /x, effect: error, probability: 1.5}",
     "chaos rule 'flaky': field 'probability' must be a number between 0 and 1, got 1.5"),
    ("{id: odd, template: /x, effect: explode}", "chaos rule 'odd': field 'effect' is unknown: 'explode'"),
    ("{id: picky, filter: '~q ~~ (', effect: reset}",
     "chaos rule 'picky': field 'filter' is not a valid mitmproxy filter expression"),
])
def test_bad_rules_file_stops_the_proxy_with_a_reason(tmp_path, confdir, rule, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"rules:\n  - {rule}\n")
    port = free_port()
    out = subprocess.run(
        [MITMDUMP, "-s", ADDON, "--listen-host", "127.0.0.1", "--listen-port", str(port),
         "--set", f"mock_db={tmp_path / 'm.db'}", "--set", f"confdir={confdir}", "--set", f"mock_chaos={bad}"],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode != 0
    assert message in out.stdout + out.stderr


def chaos_cli(db, *args: str):
    return CliRunner().invoke(cli, ["chaos", *args, "--db", str(db)])


def test_cli_rules_on_mocked_traffic(backend, proxy):
    """Rules added with `mockstore chaos add` apply to mocked answers as they do to real ones;
    an error rule without a body answers with an error body this endpoint really returned."""
    api, url = backend()
    p = proxy(url)
    with p.client() as c:
        for i in range(1, 8):
            c.get(f"/users/{i}")
        lost = c.get("/users/1001")  # a real 404 of GET /users/{id}
        assert lost.status_code == 404
        c.get("/articles/a-slug")
    p.stop()
    api.kill()

    db = p.db
    added = subprocess.run(  # the installed command, once; the rest in-process
        [MOCKSTORE, "chaos", "add", "--db", str(db), "--id", "gone", "--endpoint", "GET /users/{id}",
         "--effect", "error", "--status", "404", "-p", "0.5"], capture_output=True, text=True, timeout=60)
    assert added.returncode == 0 and "added chaos rule gone" in added.stdout, added.stderr
    out = chaos_cli(db, "add", "--id", "lag", "--template", "/articles/*", "--effect", "latency", "--ms", "400")
    assert out.exit_code == 0, out.output
    bad = chaos_cli(db, "add", "--id", "oops", "--filter", "~q ~~ (", "--effect", "reset")
    assert bad.exit_code != 0 and "chaos rule 'oops': field 'filter'" in bad.output

    mock = proxy(url, mode="mock", db=db, mock_seed=3)
    statuses = []
    with mock.client() as c:
        for i in range(1, 8):
            r = c.get(f"/users/{i}")
            statuses.append(r.status_code)
            if r.status_code == 404:
                assert r.headers["x-mockstore-source"] == "chaos"
                assert r.json() == lost.json(), "the error body this endpoint really returned"
            else:
                assert r.headers["x-mockstore-source"] == "recorded"
        start = time.monotonic()
        r = c.get("/articles/a-slug")
        took = time.monotonic() - start
        assert r.status_code == 200 and r.headers["x-mockstore-source"] == "recorded"
        assert r.headers["x-mockstore-chaos"] == "latency 400 ms; rule=lag" and took >= 0.35
    assert set(statuses) == {200, 404}, "p=0.5 over 7 requests, seeded: both outcomes"
    mock.stop()

    listed = json.loads(chaos_cli(db, "list", "--json").stdout)
    counters = {r["id"]: (r["applied"], r["skipped"]) for r in listed["rules"]}
    assert counters["gone"] == (statuses.count(404), statuses.count(200))
    assert counters["lag"] == (1, 0)

    # the persisted switch turns all chaos off at once; the rules stay
    assert chaos_cli(db, "disable").exit_code == 0
    calm = proxy(url, mode="mock", db=db, mock_seed=3)
    with calm.client() as c:
        got = [c.get(f"/users/{i}") for i in range(1, 8)]
        assert {r.headers["x-mockstore-source"] for r in got} == {"recorded"}
        assert "x-mockstore-chaos" not in c.get("/articles/a-slug").headers
    calm.stop()
    assert "chaos is DISABLED; 2 rule(s)" in chaos_cli(db, "list").output


def test_injected_latency_is_not_learned_as_the_apis(backend, proxy, tmp_path):
    """A delay chaos adds before forwarding is ours: the learned latency stays the real API's,
    or 'p99 x 3' rules would feed on their own delays."""
    _, url = backend()
    db = tmp_path / "chaos.db"  # `chaos add` creates the store
    assert chaos_cli(db, "add", "--id", "lag", "--template", "/ok/*", "--effect", "latency", "--ms", "300").exit_code == 0
    p = proxy(url, db=db)
    with p.client() as c:
        for _ in range(3):
            start = time.monotonic()
            r = c.get("/ok/x")
            assert r.status_code == 200 and r.headers["x-mockstore-chaos"] == "latency 300 ms; rule=lag"
            assert time.monotonic() - start >= 0.28
    p.stop()
    out = CliRunner().invoke(cli, ["endpoints", "--json", "--db", str(p.db)])
    assert out.exit_code == 0, out.output
    ok = [e for e in json.loads(out.stdout) if e["template"].startswith("/ok")]
    assert len(ok) == 1 and ok[0]["count"] == 3
    assert ok[0]["p95_ms"] < 300, ok  # the real API's few ms; learned with the rule's delay, >= 300


def test_learned_latency_rule(backend, proxy, tmp_path):
    """'median x 3': no basis before anything is learned (the rule stays quiet), then a delay
    scaled from what the proxy learned of this endpoint."""
    _, url = backend()
    db = tmp_path / "chaos.db"
    out = chaos_cli(db, "add", "--id", "med", "--template", "/echo", "--effect", "latency", "--learned", "median x 3")
    assert out.exit_code == 0, out.output
    p = proxy(url, db=db)
    with p.client() as c:
        marks = [c.get("/echo").headers.get("x-mockstore-chaos") for _ in range(4)]
    assert marks[0] is None, "nothing learned yet: no delay to scale"
    assert all(m is not None and m.startswith("latency ") and m.endswith(" ms; rule=med") for m in marks[1:]), marks
