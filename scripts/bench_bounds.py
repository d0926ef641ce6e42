"""Bounded growth: a real `mockstore serve` (learn mode) in front of a real backend, fed what
used to grow without end; its memory and per-request time, window by window.

    python scripts/bench_bounds.py [names|bodies|all] [--requests N]

`names`: N requests (default 600), each with 1,000 query parameter names never seen before;
then how busy the idle proxy stays (it persisted every name's statistics every second), the
size of the statistics in the store, and how long `mockstore export-openapi` takes.
`bodies`: 1,500 distinct responses of 370 KB, learned and recorded.

Each window of requests reports the median and slowest request (client side), the proxy's
RSS and its CPU time. The proxy runs whatever `mockstore` Python imports (set PYTHONPATH to
an export of another commit to compare). Figures belong in docs/BENCHMARK.md.
"""

from __future__ import annotations

import http.client
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BIG = 370_000
WINDOW = 100


class Backend(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/big/"):
            n = self.path.rsplit("/", 1)[1]
            fill = (n * (BIG // max(1, len(n)) + 1))[: BIG - 40]
            body = f'{{"id": "{n}", "data": "{fill}"}}'.encode()
        else:
            body = b'{"results": [], "total": 0}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Proxy:
    def __init__(self, upstream: str, db: Path, confdir: Path):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mockstore", "serve", "--upstream", upstream, "--listen-port", str(self.port),
             "--db", str(db), "--confdir", str(confdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=db.parent,  # -m imports from the cwd first
        )
        wait_port(self.port)
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)

    def get(self, path: str) -> float:
        t = time.perf_counter()
        self.conn.request("GET", path)
        r = self.conn.getresponse()
        r.read()
        if r.status != 200:
            raise RuntimeError(f"{path[:60]}: {r.status}")
        return (time.perf_counter() - t) * 1000

    def stop(self) -> None:
        self.conn.close()
        self.proc.send_signal(2)
        self.proc.wait(timeout=120)


def run(proxy: Proxy, paths, label: str) -> None:
    pid = proxy.proc.pid
    print(f"\n{label}\n{'requests':>10} {'median ms':>10} {'max ms':>8} {'RSS MB':>8} {'CPU s':>7}")
    times: list[float] = []
    for i, path in enumerate(paths, 1):
        times.append(proxy.get(path))
        if i % WINDOW == 0:
            print(f"{i:>10} {statistics.median(times):>10.1f} {max(times):>8.1f} {rss_mb(pid):>8.0f} {cpu_s(pid):>7.1f}")
            times = []


def names(upstream: str, tmp: Path, requests: int) -> None:
    db = tmp / "names.db"
    proxy = Proxy(upstream, db, tmp / "certs")
    paths = ("/search?" + "&".join(f"f{i}_{j}={j}" for j in range(1000)) for i in range(requests))
    run(proxy, paths, f"{requests} requests, 1,000 new query names each")
    pid = proxy.proc.pid
    time.sleep(1.5)  # the last persist
    c0, t0 = cpu_s(pid), time.perf_counter()
    time.sleep(5)
    print(f"idle afterwards: {(cpu_s(pid) - c0) / (time.perf_counter() - t0):.2f} CPU-s/s, RSS {rss_mb(pid):.0f} MB")
    proxy.stop()
    with sqlite3.connect(db) as conn:
        size = conn.execute("select sum(length(stats)) from endpoints").fetchone()[0] or 0
    print(f"statistics in the store: {size / 1e6:.2f} MB")
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "mockstore", "export-openapi", "--db", str(db), "-o", str(tmp / "api.json")],
                         capture_output=True, text=True, cwd=tmp)
    print(f"export-openapi: {time.perf_counter() - t:.1f} s, {(tmp / 'api.json').stat().st_size / 1e6:.2f} MB"
          + (f" ({out.stderr.strip()[-200:]})" if out.returncode else ""))


def bodies(upstream: str, tmp: Path, requests: int) -> None:
    proxy = Proxy(upstream, tmp / "bodies.db", tmp / "certs")
    run(proxy, (f"/big/{i}" for i in range(requests)), f"{requests} distinct responses of {BIG // 1000} KB")
    proxy.stop()


def main(argv: list[str]) -> None:
    what = argv[0] if argv and not argv[0].startswith("-") else "all"
    n = int(argv[argv.index("--requests") + 1]) if "--requests" in argv else None
    import mockstore

    print(f"mockstore from {Path(mockstore.__file__).parent}")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    upstream = f"http://127.0.0.1:{server.server_address[1]}"
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if what in ("names", "all"):
            names(upstream, tmp, n or 600)
        if what in ("bodies", "all"):
            bodies(upstream, tmp, n or 1500)
    server.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
