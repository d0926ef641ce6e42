"""A real API that fails on demand, for the failover and mock-isolation tests:

    python tests/faulty_backend.py PORT

It counts every request it gets (`GET /__count`, not counted) and behaves as `PUT /__mode/X`
says: `ok` (answers), `hang` (reads the request, never answers), `trickle` (headers, then the
body two bytes a second), `reset` (closes the connection with a TCP reset), `error` (a 503 for
every request). Routes when ok: `/users/N` (JSON), `/flaky` (JSON), `/gzip` (a gzip body),
`/badheader` (a header with a byte that is not UTF-8).
"""

from __future__ import annotations

import gzip
import json
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODE = "ok"
COUNT = 0
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def send(self, status: int, body: bytes, headers: list[tuple[str, str]] = ()):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def handle_one(self, method: str):
        global MODE, COUNT
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        if self.path == "/__count":
            return self.send(200, str(COUNT).encode())
        if self.path.startswith("/__mode/"):
            MODE = self.path.rsplit("/", 1)[1]
            return self.send(200, MODE.encode())
        with LOCK:
            COUNT += 1
        if MODE == "hang":
            time.sleep(3600)
        if MODE == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        if MODE == "error":
            return self.send(503, b'{"error": "overloaded"}', [("Content-Type", "application/json")])
        body, headers = self.route()
        if MODE == "trickle":
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for i in range(len(body)):
                self.wfile.write(body[i:i + 1])
                self.wfile.flush()
                time.sleep(0.5)
            return
        self.send(200, body, headers)

    def route(self) -> tuple[bytes, list[tuple[str, str]]]:
        json_type = [("Content-Type", "application/json")]
        if self.path.startswith("/users/"):
            uid = self.path.rsplit("/", 1)[1]
            return json.dumps({"id": int(uid) if uid.isdigit() else uid, "name": f"user {uid}"}).encode(), json_type
        if self.path == "/gzip":
            return gzip.compress(b'{"compressed": true, "n": 42}', mtime=0), json_type + [("Content-Encoding", "gzip")]
        if self.path == "/badheader":
            return b'{"ok": true}', json_type + [("X-Odd", "caf\xe9 \xff")]  # latin-1 on the wire
        return json.dumps({"path": self.path}).encode(), json_type

    def do_GET(self):
        self.handle_one("GET")

    def do_POST(self):
        self.handle_one("POST")

    def do_PUT(self):
        self.handle_one("PUT")


class Faulty:
    """The test's handle on a running faulty backend (started with conftest's `procs`)."""

    def __init__(self, procs, port: int):
        self.procs, self.port = procs, port
        self.url = f"http://127.0.0.1:{port}"
        self.start()

    def start(self) -> None:
        self.proc = self.procs([sys.executable, __file__, str(self.port)], self.port)

    def kill(self) -> None:
        self.proc.kill()

    def mode(self, mode: str) -> None:
        _get(f"{self.url}/__mode/{mode}", "PUT")

    def count(self) -> int:
        return int(_get(f"{self.url}/__count"))


def _get(url: str, method: str = "GET") -> bytes:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(urllib.request.Request(url, method=method), timeout=10) as r:
        return r.read()


def main(argv: list[str]) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(argv[0])), Handler)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
