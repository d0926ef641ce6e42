"""Shared fixtures: real processes on 127.0.0.1 (a backend, mitmdump or `mockstore serve`),
and mitmproxy's test helpers wrapped once (they are not a public API)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MITMDUMP = str(BIN / "mitmdump")
MOCKSTORE = str(BIN / "mockstore")
ADDON = str(ROOT / "addons" / "mockstore.py")

# Tests wait for lines a mitmdump they started prints: each line as it is written, not when
# an 8 KB buffer fills (mitmproxy's log does not flush; a file or a pipe is block-buffered).
os.environ["PYTHONUNBUFFERED"] = "1"


def _worker_ports():
    """Ports for this test process alone: a block of 500 below the kernel's ephemeral range
    (32768 and up), so no outgoing connection can hold one, and held with a lock file, so no
    other pytest worker, of this session or another one on the machine, is given the same
    block. A port the kernel handed out with bind(0) was free only at that instant: another
    worker could take it before our server bound it, and the test then talked to that
    worker's server."""
    import tempfile

    from mockstore import slots

    for block in range(25):  # numbered slots held by one process each, as a store's are
        held = slots.claim(os.path.join(tempfile.gettempdir(), "mockstore-test-ports"), block)
        if held is None:
            continue
        _held.append(held)  # for as long as this process runs
        start = 20000 + block * 500
        while True:
            yield from range(start, start + 500)
    raise RuntimeError("25 test processes hold every block of ports")


_held: list = []
_ports = _worker_ports()


def free_port() -> int:
    """A port nothing listens on now and no other test process will be given."""
    for port in _ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise RuntimeError(f"process exited with {proc.returncode}:\n{out}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout}s")


class Proc:
    """A child process we own; stopped politely (SIGINT, so the proxy flushes), then firmly."""

    def __init__(self, args: list[str], port: int, env: dict | None = None):
        self.args, self.port = args, port
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="backslashreplace",
            env={**os.environ, **(env or {})}, cwd=ROOT,
        )
        wait_port(port, self.proc)
        self.output = ""

    def stop(self, sig=signal.SIGINT) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout and not self.output:
            self.output = self.proc.stdout.read()
        return self.output

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


@pytest.fixture
def procs():
    """Start processes; every one is stopped at the end of the test."""
    started: list[Proc] = []

    def start(args: list[str], port: int, env: dict | None = None) -> Proc:
        p = Proc(args, port, env)
        started.append(p)
        return p

    yield start
    for p in started:
        out = p.stop()
        print(f"--- output of {' '.join(p.args[:3])} ---\n{out[-5000:]}")  # shown when a test fails


@pytest.fixture
def backend(procs):
    """start_backend(variant="base", tls=None) -> (proc, base_url)"""

    def start(variant: str = "base", tls: str | None = None, port: int | None = None):
        port = port or free_port()
        args = [sys.executable, str(ROOT / "tests" / "backend.py"), str(port), "--variant", variant]
        if tls:
            args += ["--tls", tls]
        p = procs(args, port)
        return p, f"{'https' if tls else 'http'}://127.0.0.1:{port}"

    return start


@pytest.fixture
def store(tmp_path):
    """A real store in a fresh SQLite file."""
    from mockstore.store import Store

    s = Store(tmp_path / "m.db")
    yield s
    s.close()


@pytest.fixture(scope="session")
def confdir(tmp_path_factory) -> Path:
    """A mitmproxy confdir for the test session; the CA is generated on first start."""
    return tmp_path_factory.mktemp("certs")


@pytest.fixture
def proxy(procs, confdir, tmp_path):
    """start_proxy(upstream=None, mode="learn", db=None, runner="mitmdump", **options) -> Proxy

    Without the admin API (its default port, 8089, is one for the whole machine) unless a test
    passes mock_admin."""

    def start(upstream: str | None = None, mode: str = "learn", db: Path | None = None,
              runner: str = "mitmdump", **options) -> "Proxy":
        port = free_port()
        db = db or tmp_path / "mockstore.db"
        options = {"mock_admin": "off", **options}
        settings = {"mock_db": str(db), "mock_mode": mode, "mock_latency": "none", "confdir": str(confdir), **options}
        if runner == "mitmdump":
            args = [MITMDUMP, "-s", ADDON, "--listen-host", "127.0.0.1", "--listen-port", str(port)]
            args += ["--mode", f"reverse:{upstream}"] if upstream else []
            for k, v in settings.items():
                args += ["--set", f"{k}={v}"]
        else:
            args = [MOCKSTORE, "serve", "--listen-port", str(port), "--db", str(db), "--mode", mode,
                    "--latency", "none", "--confdir", str(confdir)]
            args += ["--upstream", upstream] if upstream else []
            for k, v in options.items():
                args += ["--set", f"{k}={v}"]
        p = procs(args, port)
        return Proxy(p, port, db)

    return start


class Proxy:
    def __init__(self, proc: Proc, port: int, db: Path):
        self.proc, self.port, self.db = proc, port, db
        self.url = f"http://127.0.0.1:{port}"

    def client(self, **kw) -> httpx.Client:
        """A client of the proxy as a reverse proxy (requests go to the proxy's own address)."""
        return httpx.Client(base_url=self.url, timeout=20, **kw)

    def stop(self) -> str:
        return self.proc.stop()


@pytest.fixture
def tctx():
    """mitmproxy's test context with the mockstore addon loaded."""
    from mitmproxy.test import taddons

    from mockstore.addon import MockStore

    addon = MockStore()
    with taddons.context(addon) as ctx:
        yield ctx, addon
        addon.done()


@contextmanager
def no_proxy_env():
    """Without the machine's proxy variables: clients here talk to 127.0.0.1 directly."""
    old = {k: os.environ.pop(k) for k in list(os.environ) if k.lower() in ("http_proxy", "https_proxy", "all_proxy")}
    try:
        yield
    finally:
        os.environ.update(old)


def cli_group(*registers):
    """A click group with only these command modules' commands, for CliRunner."""
    import click

    @click.group()
    def group():
        pass

    for register in registers:
        register(group)
    return group
