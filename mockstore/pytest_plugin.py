"""mockstore's pytest plugin: a mock of your API around each test.

Installed with mockstore (a `pytest11` entry point), so its fixtures are there without a
conftest import. It needs httpx (`pip install httpx`, or mockstore's `test` extra), imported
only when a fixture is used.

    def test_gold_items(mockstore_proxy):
        mockstore_proxy.stub("GET /api/items/{id}", body={"kind": "gold"})
        assert mockstore_proxy.client.get("/api/items/1").json() == {"kind": "gold"}
        assert mockstore_proxy.requests[-1]["path"] == "/api/items/1"

Fixtures:
    mockstore_settings  (session) what the proxy starts with: mode, db, upstream, stubs,
                        entities, spec, snapshot, seed; from `--mockstore-*` options or
                        `mockstore_*` ini values; override the fixture to set them in code
    mockstore_server    (session) the running proxy (mitmdump with mockstore's addon)
    mockstore_proxy     (test) a handle: .url, .client (an httpx.Client pointed at it),
                        .stub(...), .requests (what it answered), .reset(), .command(...);
                        reset after each test (inline stubs gone, journal emptied, the
                        virtual backend back to its seeded state)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

SETTINGS = {
    # name: (help, default)
    "mode": ("mockstore mode: mock | replay | learn | failover", "mock"),
    "db": ("the store (default: a new one in a temporary folder)", None),
    "upstream": ("the real API, for learn/failover (default: none)", None),
    "stubs": ("a stubs file or folder to load", None),
    "entities": ("an entity file (the virtual backend)", None),
    "spec": ("an OpenAPI document (the virtual backend)", None),
    "snapshot": ("a virtual backend snapshot to restore at start", None),
    "seed": ("seed for synthesis and chaos", "0"),
}
NOWHERE = "http://127.0.0.1:9"  # the upstream when there is no real API (as `mockstore serve`)
_SCRIPT = '''\
from mockstore.addon import MockStore
from mockstore.testproxy import Control

_mockstore = MockStore()
addons = [Control(_mockstore), _mockstore]
'''


def pytest_addoption(parser):
    group = parser.getgroup("mockstore", "mockstore's mock proxy (mockstore_proxy fixture)")
    for name, (help, default) in SETTINGS.items():
        group.addoption(f"--mockstore-{name}", dest=f"mockstore_{name}", default=None, help=help)
        parser.addini(f"mockstore_{name}", help, default=default)


@pytest.fixture(scope="session")
def mockstore_settings(pytestconfig) -> dict[str, Any]:
    """What the session's proxy starts with; override this fixture to choose in code."""
    out = {}
    for name in SETTINGS:
        value = pytestconfig.getoption(f"mockstore_{name}") or pytestconfig.getini(f"mockstore_{name}")
        if value:
            out[name] = value
    return out


class Server:
    """A mitmdump process with mockstore's addon and the plugin's control path."""

    def __init__(self, settings: dict[str, Any], workdir: Path):
        self.settings = dict(settings)
        self.db = Path(settings.get("db") or workdir / "mockstore.db").resolve()
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        script = workdir / "mockstore_pytest_addon.py"
        script.write_text(_SCRIPT)
        mitmdump = Path(sys.executable).parent / "mitmdump"
        args = [str(mitmdump) if mitmdump.exists() else (shutil.which("mitmdump") or "mitmdump"),
                "-q", "-s", str(script), "--listen-host", "127.0.0.1", "--listen-port", str(self.port),
                "--mode", f"reverse:{settings.get('upstream') or NOWHERE}",
                "--set", f"confdir={workdir / 'certs'}", "--set", f"mock_db={self.db}",
                "--set", f"mock_mode={settings.get('mode', 'mock')}", "--set", "mock_latency=none",
                "--set", f"mock_seed={settings.get('seed', 0)}"]
        for name, option in (("stubs", "mock_stubs"), ("entities", "mock_entities"), ("spec", "mock_spec")):
            if settings.get(name):
                args += ["--set", f"{option}={Path(settings[name]).resolve()}"]
        self.log = open(workdir / "mitmdump.log", "w+")
        env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self._wait()
        if settings.get("snapshot"):
            self.command("mockstore.snapshot", "restore", settings["snapshot"])

    def _wait(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"the mockstore proxy did not start:\n{self.log.read()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the mockstore proxy is not listening on {self.port} after {timeout} s")

    def control(self, action: str, payload: Any = None, method: str = "POST") -> Any:
        import httpx

        r = httpx.request(method, f"{self.url}/__mockstore__/{action}", json=payload, timeout=30, trust_env=False)
        if r.status_code != 200:
            raise RuntimeError(f"mockstore proxy: {action}: {r.json().get('error', r.text)}")
        return r.json()

    def command(self, name: str, *args: str) -> Any:
        return self.control(f"command/{name}", list(args)).get("result")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # as Ctrl-C: the proxy writes what it learned
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class MockstoreProxy:
    """The test's handle on the proxy."""

    def __init__(self, server: Server):
        import httpx

        self.server = server
        self.url = server.url
        self.db = server.db
        self.client = httpx.Client(base_url=server.url, timeout=30, trust_env=False)
        self._added: list[str] = []

    def stub(self, route: str | dict | None = None, body: Any = "", *, status: int = 200,
             headers: dict | None = None, conditions: list[dict] | None = None, delay: int = 0,
             name: str | None = None) -> str:
        """Add a stub for this test: `stub("GET /users/{id}", body={...}, status=200,
        headers={...}, conditions=[{parameterName: ..., ...}], delay=ms)`, or a whole mock
        as written in a stubs file (`stub({"name": ..., "routes": [...]})`). Answered from
        the next request on; removed when the test ends. Returns the mock's name."""
        from mockstore import stubs
        from mockstore.store import connect, migrate

        if isinstance(route, dict):
            raw = route
        else:
            if not route:
                raise ValueError("stub() needs 'METHOD /path' or a mock mapping")
            method, _, path = route.strip().partition(" ")
            hs = dict(headers or {})
            if isinstance(body, (dict, list)) and not any(k.lower() == "content-type" for k in hs):
                hs["Content-Type"] = "application/json"
            raw = {"name": name or f"test-{len(self._added) + 1}-{method.lower()}{path.strip()}",
                   "responseDelay": delay,
                   "routes": [{"method": method, "path": path.strip(), "statusCode": status,
                               "defaultResponse": {"body": body, "headers": hs},
                               "conditions": conditions or []}]}
        mocks = stubs.parse(raw, "stub()")
        db = connect(self.db)
        try:
            migrate(db)
            stubs.save(db, mocks)
        finally:
            db.conn.close()
        self._added += [m.name for m in mocks]
        self.server.control("sync")
        return mocks[0].name

    @property
    def requests(self) -> list[dict]:
        """What the proxy answered since the last reset, oldest first: method, path, url,
        query, headers, body (text), status, source (stub, recorded, real, ...), stub."""
        return self.server.control("requests", method="GET")

    def command(self, name: str, *args: str) -> Any:
        """Run a mitmproxy command in the proxy: `command("mockstore.snapshot", "restore", "seeded")`."""
        return self.server.command(name, *args)

    def reset(self) -> None:
        """Remove the stubs this test added, empty the journal, and put the virtual backend
        (if any) back in its seeded state, or in the session's snapshot."""
        from mockstore import stubs
        from mockstore.store import connect

        if self._added:
            db = connect(self.db)
            try:
                for name in self._added:
                    try:
                        stubs.remove(db, name)
                    except stubs.StubError:
                        pass  # the test removed it itself
            finally:
                db.conn.close()
            self._added = []
            self.server.control("sync")
        self.server.control("reset")
        if self.server.settings.get("snapshot"):
            self.server.command("mockstore.snapshot", "restore", self.server.settings["snapshot"])
        elif self.server.settings.get("entities") or self.server.settings.get("spec"):
            self.server.command("mockstore.reset")

    def close(self) -> None:
        self.client.close()


@pytest.fixture(scope="session")
def mockstore_server(mockstore_settings, tmp_path_factory):
    server = Server(mockstore_settings, tmp_path_factory.mktemp("mockstore"))
    yield server
    server.stop()


@pytest.fixture
def mockstore_proxy(mockstore_server):
    handle = MockstoreProxy(mockstore_server)
    try:
        yield handle
    finally:
        handle.reset()
        handle.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

