"""`mockstore serve --workers N`: N proxy processes on one port, sharing one store.

mitmproxy runs on one event loop in one process, so one proxy uses one core. Each worker
here is a whole `mockstore serve` (a lean master) that listens on the same port with
SO_REUSEPORT; the kernel spreads connections over them. They share the SQLite store
(WAL, busy_timeout): each records with its own slot in the exchange ids (`mock_worker`), so
ids never collide, and each has its own writer thread, whose batches wait for the others'.

The parent does not proxy anything: it checks the port and the store once, starts the
workers, says when every one of them listens, starts again any that dies, and stops them all
when told to. With SO_REUSEPORT the kernel hashes each new connection to one listening
socket and never moves it: a client only ever sees an error from the worker its connection
was on. So the pool is ready only once each worker has said it listens (not when the port
first answers: that is the first worker alone), a worker that dies takes only its own
connections with it (the others' sockets stay in the group), and its replacement joins the
group once it listens. A worker also stops if the parent goes away, so that no orphan keeps
a socket in the group that nobody will ever stop.

This module does not import mitmproxy: the workers do, in `mockstore.serve`.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from .options import MAX_WORKER
from .store import StoreError, probe, readonly_for

MAX_WORKERS = MAX_WORKER + 1  # the proxies' slots of IdClock (mockstore.options)
START_TIMEOUT = 60.0  # a worker not listening by then is stopped: a failed start
STOP_TIMEOUT = 15.0
BACKOFF = (0.5, 8.0)  # a dead worker starts again after the first, doubling up to the second
STEADY = 10.0  # a worker that listened this long died of something new: back-off from the start
START_FAILURES = 3  # a slot whose worker dies before listening this many times in a row ends the pool


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


@dataclass
class Worker:
    """One slot of the pool and the process that fills it now."""

    slot: int
    proc: subprocess.Popen | None = None
    ready_fd: int = -1  # the read end of the pipe its Ready writes to, until it does
    started: float = 0.0
    listening_since: float | None = None
    failures: int = 0  # deaths before listening, in a row
    delay: float = 0.0  # the back-off before its next start
    due: float | None = None  # when it starts again, after a death

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None


def describe(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Pool:
    """The parent's side: starts, watches, restarts and stops the workers."""

    def __init__(self, settings: dict, size: int, out):
        self.settings, self.out = settings, out
        self.workers = [Worker(k) for k in range(size)]
        self.stopping = False
        self.serving = False  # every worker has listened once: the pool said it is ready

    def say(self, text: str) -> None:
        print(f"mockstore: {text}", file=self.out, flush=True)

    # --- one worker ----------------------------------------------------------------------

    def start(self, w: Worker) -> None:
        read_fd, write_fd = os.pipe()
        child = {**self.settings, "mock_worker": w.slot}
        try:
            w.proc = subprocess.Popen(
                [sys.executable, "-m", "mockstore.workers", json.dumps(child), str(write_fd), str(os.getpid())],
                pass_fds=(write_fd,),
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)  # the worker's copy is the only one: EOF here if it dies first
        w.ready_fd, w.started, w.listening_since, w.due = read_fd, time.monotonic(), None, None

    def close_pipe(self, w: Worker) -> None:
        if w.ready_fd >= 0:
            os.close(w.ready_fd)
            w.ready_fd = -1

    def listened(self, w: Worker) -> None:
        self.close_pipe(w)
        w.listening_since, w.failures = time.monotonic(), 0
        if self.serving:
            self.say(f"worker {w.slot} listening again (pid {w.pid})")
        elif w.slot == 0:
            # The first worker alone, then the rest: the first creates the CA in confdir (N at
            # once would each write their own) and finds any problem with the options once.
            for other in self.workers[1:]:
                self.start(other)
        if not self.serving and all(o.listening_since is not None for o in self.workers):
            self.serving = True
            host, port = self.settings.get("listen_host") or "*", self.settings.get("listen_port")
            pids = ", ".join(str(o.pid) for o in self.workers)
            self.say(f"{len(self.workers)} workers listening on {host}:{port} (pids {pids})")

    def died(self, w: Worker) -> int | None:
        """A worker exited: schedule its next start; or, if it cannot start, the pool's exit code."""
        code, pid, now = w.proc.returncode, w.proc.pid, time.monotonic()
        self.close_pipe(w)
        w.proc = None
        if not self.serving:  # still starting: the options or the store are wrong, say so once
            self.say(f"worker {w.slot} exited while the pool was starting ({describe(code)}); stopping the others")
            return code if code > 0 else 1
        if w.listening_since is None:
            w.failures += 1
            if w.failures >= START_FAILURES:
                self.say(f"worker {w.slot} exited before listening {w.failures} times in a row "
                         f"({describe(code)}); stopping the others")
                return code if code > 0 else 1
        steady = w.listening_since is not None and now - w.listening_since >= STEADY
        w.delay = BACKOFF[0] if steady or not w.delay else min(BACKOFF[1], w.delay * 2)
        w.due = now + w.delay
        self.say(f"worker {w.slot} (pid {pid}) exited ({describe(code)}); starting it again in {w.delay:g} s")
        return None

    # --- the pool ----------------------------------------------------------------------

    def run(self) -> int:
        """Serve until SIGINT/SIGTERM (0) or until a worker cannot start (its exit code)."""
        try:
            self.start(self.workers[0])
            while not self.stopping:
                code = self.step()
                if code is not None:
                    return 0 if self.stopping else code
            return 0
        finally:
            self.stop()

    def step(self) -> int | None:
        """Wait (0.2 s at most) for a worker to listen; see to the dead, the late and the due."""
        now = time.monotonic()
        pipes = {w.ready_fd: w for w in self.workers if w.ready_fd >= 0}
        timeout = max(0.0, min([0.2, *(w.due - now for w in self.workers if w.due is not None)]))
        readable, _, _ = select.select(list(pipes), [], [], timeout)
        for fd in readable:
            w = pipes[fd]
            if os.read(fd, 64):
                self.listened(w)
            else:  # EOF: it exited before listening; poll() says how
                self.close_pipe(w)
        if self.stopping:  # a Ctrl-C reaches the workers too: their exits are no deaths
            return None
        now = time.monotonic()
        for w in self.workers:
            if w.proc is not None and w.proc.poll() is not None:
                code = self.died(w)
                if code is not None:
                    return code
            elif w.proc is not None and w.listening_since is None and now - w.started > START_TIMEOUT:
                self.say(f"worker {w.slot} (pid {w.pid}) not listening after {START_TIMEOUT:.0f} s; killing it")
                w.proc.kill()
                w.proc.wait()
            elif w.proc is None and w.due is not None and now >= w.due and not self.stopping:
                self.start(w)
        return None

    def stop(self) -> None:
        """Every worker closes its store and exits; say so of any that did not (exit 0)."""
        for w in self.workers:
            self.close_pipe(w)
        running = [w for w in self.workers if w.proc is not None]
        _stop([w.proc for w in running], self.say)
        for w in running:
            if w.proc.returncode != 0:
                self.say(f"worker {w.slot} (pid {w.pid}) stopped with {describe(w.proc.returncode)}")


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
    pool = Pool(settings, workers, out)

    def stop(*_):
        pool.stopping = True

    old = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return pool.run()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _stop(procs: list[subprocess.Popen], say) -> None:
    """SIGINT (each worker closes its store on the way out), then SIGKILL after STOP_TIMEOUT."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_TIMEOUT
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"worker pid {p.pid} did not stop in {STOP_TIMEOUT:.0f} s; killing it")
            p.kill()
            p.wait()


def _die_with(parent: int) -> None:
    """Linux: SIGTERM this process when the parent dies (killed, even): an orphan worker would
    keep its socket in the port's group, answering a share of the connections, unstoppable
    by whoever stops the pool."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return
    if os.getppid() != parent:  # the parent died before prctl
        sys.exit(1)


def _worker(argv: list[str]) -> None:
    from .serve import run as serve

    settings, fd, parent = json.loads(argv[0]), int(argv[1]), int(argv[2])
    _die_with(parent)
    try:
        serve(settings, [Ready(fd)], shared_port=True)
    except Exception as e:  # an OptionsError, a port taken: one line, the parent stops the rest
        print(f"mockstore worker {settings.get('mock_worker')}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    _worker(sys.argv[1:])
