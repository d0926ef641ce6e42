"""`mockstore serve --workers N`: N proxy processes on one port, sharing one store.

mitmproxy runs on one event loop in one process, so one proxy uses one core. Each worker
here is a whole `mockstore serve` (a lean master) that listens on the same port with
SO_REUSEPORT; the kernel spreads connections over them. They share the SQLite store
(WAL, busy_timeout): each records with its own slot in the exchange ids (`mock_worker`), so
ids never collide, and each has its own writer thread, whose batches wait for the others'.

The parent does not proxy anything: it checks the port and the store once, starts the
workers, says when all of them listen, and stops them all when told to or when one dies.
This module does not import mitmproxy: the workers do, in `mockstore.serve`.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

from .store import StoreError, probe, readonly_for

MAX_WORKERS = 16  # the slots of IdClock
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


class WorkersError(Exception):
    """The workers cannot start; the message says why and what to do."""


class Ready:
    """An addon for a worker: tells the parent, through a pipe, once the proxy listens."""

    def __init__(self, fd: int):
        self.fd = fd

    def running(self):
        if self.fd >= 0:
            os.write(self.fd, b".")
            os.close(self.fd)
            self.fd = -1


def check_port(host: str, port: int) -> None:
    """Fail early, with a reason, if something already listens there: with SO_REUSEPORT the
    workers would otherwise join another group of workers of ours on the same port."""
    if port == 0:
        raise WorkersError("--workers needs a fixed --listen-port: workers cannot share port 0")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host or "", port))
        except OSError as e:
            raise WorkersError(f"cannot listen on {host or '*'}:{port}: {e.strerror}") from None


def run(settings: dict, workers: int, *, out=None) -> int:
    """Serve with `workers` processes until SIGINT/SIGTERM; the exit code of the group."""
    if not 1 <= workers <= MAX_WORKERS:
        raise WorkersError(f"--workers must be 1-{MAX_WORKERS}, not {workers}")
    out = out or sys.stderr
    check_port(settings.get("listen_host", ""), int(settings.get("listen_port", 8080)))
    db = settings.get("mock_db")
    if db:
        try:
            # the reason, once, before any worker starts (the first migrates the store alone)
            probe(db, readonly=readonly_for(settings.get("mock_mode", "learn")))
        except StoreError as e:
            raise WorkersError(str(e)) from None

    read_fd, write_fd = os.pipe()
    procs: list[subprocess.Popen] = []
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    old = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        # The first worker alone, then the rest: the first creates the CA in confdir (N at
        # once would each write their own) and finds any problem with the options once.
        code, ready = None, [0]
        for group in ([0], range(1, workers)):
            for k in group:
                child = {**settings, "mock_worker": k}
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "mockstore.workers", json.dumps(child), str(write_fd)],
                    pass_fds=(write_fd,),
                ))
            code = _wait_ready(read_fd, procs, ready, lambda: stopping)
            if code is not None:
                break
        os.close(write_fd)
        write_fd = -1
        if code is None:
            host, port = settings.get("listen_host") or "*", settings.get("listen_port")
            print(f"mockstore: {workers} workers listening on {host}:{port}", file=out, flush=True)
            while not stopping:
                code = next((p.returncode for p in procs if p.poll() is not None), None)
                if code is not None:
                    print(f"mockstore: a worker exited ({code}); stopping the others", file=out, flush=True)
                    break
                time.sleep(0.2)
        _stop(procs)
        return 0 if code is None or stopping else (code or 1)
    finally:
        _stop(procs)
        for fd in (read_fd, write_fd):
            if fd >= 0:
                os.close(fd)
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _wait_ready(fd: int, procs: list[subprocess.Popen], ready: list[int], stopping) -> int | None:
    """None once every worker started so far listens (`ready[0]` counts them); else the
    exit code of the first that died."""
    deadline = time.monotonic() + START_TIMEOUT
    while ready[0] < len(procs):
        if stopping():
            return 0
        for p in procs:
            if p.poll() is not None:
                return p.returncode or 1
        if time.monotonic() > deadline:
            print(f"mockstore: workers not listening after {START_TIMEOUT:.0f}s", file=sys.stderr)
            return 1
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            ready[0] += len(os.read(fd, 64))
    return None


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)  # the workers flush their stores on the way out
    deadline = time.monotonic() + STOP_TIMEOUT
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _worker(argv: list[str]) -> None:
    from .serve import run as serve

    settings, fd = json.loads(argv[0]), int(argv[1])
    try:
        serve(settings, [Ready(fd)], shared_port=True)
    except Exception as e:  # an OptionsError, a port taken: one line, the parent stops the rest
        print(f"mockstore worker {settings.get('mock_worker')}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    _worker(sys.argv[1:])
