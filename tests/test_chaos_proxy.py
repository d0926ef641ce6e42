"""Chaos through a real mitmdump, a real backend and a real client (httpx), on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).parent
MITMDUMP = Path(sys.executable).parent / "mitmdump"
BIG = bytes(range(256)) * 24  # 6,144 bytes

RULES = """
rules:
  - {id: slow, template: /slow, effect: latency, ms: 1000}
  - {id: reset, template: /reset, effect: reset}
  - {id: trickle, template: /big, effect: slow_body, bytes_per_second: 8192}
  - {id: down, template: "/users/*", effect: error, status: 503, probability: 0.3}
  - {id: hang, template: /hang, effect: timeout}
"""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def do_GET(self):
        body = BIG if self.path == "/big" else f'{{"path": "{self.path}"}}'.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream" if self.path == "/big" else "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("chaos") / "chaos.yaml"
    path.write_text(RULES)
    return path


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, rules_file):
    backend = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    rules = rules_file
    port = free_port()
    proc = subprocess.Popen(
        [str(MITMDUMP), "-q", "-s", str(HERE / "chaos_helpers.py"),
         "--listen-host", "127.0.0.1", "--listen-port", str(port),
         "--mode", f"reverse:http://127.0.0.1:{backend.server_port}",
         "--set", f"mock_chaos={rules}", "--set", "mock_chaos_timeout=20",
         "--set", f"confdir={tmp_path_factory.mktemp('conf')}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"mitmdump did not start: {proc.stdout.read().decode(errors='replace')}")
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    backend.shutdown()


def test_latency_delays_only_its_endpoint(proxy):
    finished = []

    def get(path):
        with httpx.Client(base_url=proxy, timeout=10, trust_env=False) as c:
            start = time.monotonic()
            r = c.get(path)
            finished.append((path, r.status_code, time.monotonic() - start))

    slow = threading.Thread(target=get, args=("/slow",))
    slow.start()
    time.sleep(0.1)  # the slow request is being held by now
    get("/fast")
    slow.join()
    assert [(p, s) for p, s, _ in finished] == [("/fast", 200), ("/slow", 200)]
    assert finished[1][2] >= 0.9  # the injected second, not less


def test_reset_is_seen_as_a_broken_connection(proxy):
    with httpx.Client(base_url=proxy, timeout=5, trust_env=False) as c:
        with pytest.raises(httpx.TransportError) as e:
            c.get("/reset")
        assert not isinstance(e.value, httpx.TimeoutException)
        assert c.get("/fast").status_code == 200


def test_slow_body_trickles_the_body(proxy):
    with httpx.Client(base_url=proxy, timeout=10, trust_env=False) as c:
        with c.stream("GET", "/big") as r:
            headers_at = time.monotonic()
            assert r.status_code == 200
            assert r.headers["X-Mockstore-Chaos"] == "slow body 8192 B/s; rule=trickle"
            chunks = []
            for chunk in r.iter_raw():
                chunks.append((time.monotonic(), len(chunk)))
                if len(chunks) == 1:  # meanwhile, other flows go on
                    with httpx.Client(base_url=proxy, timeout=10, trust_env=False) as other:
                        assert other.get("/fast").status_code == 200
                    fast_done = time.monotonic()
            body_took = chunks[-1][0] - headers_at
        assert fast_done < chunks[-1][0]
        assert sum(n for _, n in chunks) == len(BIG)
        assert len(chunks) > 3  # it came in pieces, not at once
        assert body_took >= 0.75 * len(BIG) / 8192
        # the connection is whole afterwards: the next response on it is right
        again = c.get("/fast")
        assert again.json() == {"path": "/fast"}
        full = c.get("/big").content
        assert full == BIG


def test_error_rule_rate_and_marking(proxy):
    with httpx.Client(base_url=proxy, timeout=10, trust_env=False) as c:
        statuses = [c.get(f"/users/{i}") for i in range(200)]
        others = [c.get(f"/orders/{i}").status_code for i in range(50)]
    errors = [r for r in statuses if r.status_code == 503]
    assert 0.2 * 200 <= len(errors) <= 0.4 * 200
    assert all(r.headers["X-Mockstore-Source"] == "chaos" for r in errors)
    assert all("X-Mockstore-Source" not in r.headers for r in statuses if r.status_code == 200)
    assert set(others) == {200}


def test_timeout_holds_until_the_client_gives_up(proxy):
    with httpx.Client(base_url=proxy, timeout=0.5, trust_env=False) as c:
        with pytest.raises(httpx.ReadTimeout):
            c.get("/hang")
    with httpx.Client(base_url=proxy, timeout=5, trust_env=False) as c:
        assert c.get("/fast").status_code == 200


def test_rules_file_is_reloaded_on_change(proxy, rules_file):
    with httpx.Client(base_url=proxy, timeout=5, trust_env=False) as c:
        assert c.get("/teapot").status_code == 200
        try:
            rules_file.write_text(RULES + "  - {id: tea, template: /teapot, effect: error, status: 418}\n")
            deadline = time.monotonic() + 10
            while c.get("/teapot").status_code != 418:
                assert time.monotonic() < deadline, "the edited rules file was not picked up"
                time.sleep(0.1)
            rules_file.write_text(RULES + "  - {id: tea, effect: nope}\n")  # a broken edit
            time.sleep(0.6)
            assert c.get("/teapot").status_code == 418  # the previous rules stay
        finally:
            rules_file.write_text(RULES)
        deadline = time.monotonic() + 10
        while c.get("/teapot").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
