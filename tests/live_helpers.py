"""Helpers for the tests of a running proxy changed from outside (the CLI, the admin API, the
dashboard): a proxy process whose output a test can wait for, and polling with a deadline."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from conftest import ADDON, MITMDUMP, MOCKSTORE, ROOT, free_port, wait_port

DEADLINE = 5.0  # seconds: a change must show well within this (it should take about one)


def eventually(check, what: str, deadline: float = DEADLINE):
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"not within {deadline}s: {what}")
        time.sleep(0.1)


def statuses(url: str, path: str, n: int = 16, **kw) -> set[int]:
    """n requests, each on its own connection (so with workers, each may meet another one)."""
    seen = set()
    for _ in range(n):
        with httpx.Client(base_url=url, timeout=10, trust_env=False) as c:
            seen.add(c.get(path, **kw).status_code)
    return seen


class Served:
    """`mitmdump -s addons/mockstore.py` or `mockstore serve --workers N`; output in a file."""

    def __init__(self, runner: str, db: Path, confdir: Path, log: Path, *, upstream: str = "",
                 workers: int = 2, options: dict | None = None, admin: str | None = "off",
                 env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db, self.log = db, log
        options = dict(options or {})
        if admin is not None:
            options["mock_admin"] = admin
        if runner == "mitmdump":
            args = [MITMDUMP, "-s", ADDON, "--listen-host", "127.0.0.1", "--listen-port", str(self.port),
                    "--mode", f"reverse:{upstream or 'http://127.0.0.1:9'}",
                    "--set", f"mock_db={db}", "--set", f"confdir={confdir}", "--set", "mock_latency=none"]
            ready = None
        else:
            args = [MOCKSTORE, "serve", "--listen-host", "127.0.0.1", "--listen-port", str(self.port),
                    "--db", str(db), "--confdir", str(confdir), "--latency", "none", "--workers", str(workers)]
            args += ["--upstream", upstream] if upstream else []
            ready = "workers listening" if workers > 1 else None
        for k, v in options.items():
            args += ["--set", f"{k}={v}"]
        self._f = open(log, "w")
        self.proc = subprocess.Popen(args, stdout=self._f, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        wait_port(self.port, self.proc, timeout=30)
        if ready:
            self.wait_for(ready)

    def wait_for(self, text: str, deadline: float = 30.0) -> str:
        end = time.monotonic() + deadline
        while text not in self.output():
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < end, f"no {text!r} in:\n{self.output()}"
            time.sleep(0.05)
        return self.output()

    def admin_url(self) -> tuple[str, str]:
        """(base URL, token) from the line the proxy prints at start."""
        found = []

        def look():
            found[:] = re.findall(r"(http://[\w.:\[\]-]+)/\?token=([\w-]+)", self.output())
            return found
        eventually(look, "the admin URL printed", deadline=30)
        return found[0]

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._f.close()
        return self.output()


@pytest.fixture
def served(tmp_path, confdir):
    """start(runner, **kw) -> Served, on one store; each stopped after the test, its output shown."""
    started = []

    def start(runner: str, **kw) -> Served:
        s = Served(runner, tmp_path / "m.db", confdir, tmp_path / f"{runner}-{len(started)}.log", **kw)
        started.append(s)
        return s

    yield start
    for s in started:
        print(s.stop()[-4000:])
