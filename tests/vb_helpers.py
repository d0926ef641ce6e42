"""Serve a VirtualBackend over real HTTP on 127.0.0.1, for the vb tests."""

from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from mockstore.exchange import Request


def make_request(method: str, path: str, body: bytes = b"", headers=None, query=None, host: str = "api.test") -> Request:
    hs = list(headers or [])
    if not any(k.lower() == "content-type" for k, _ in hs):
        hs.insert(0, ("content-type", "application/json"))
    return Request(method, host, path, list(query or []), hs, body)


def call(vb, method: str, path: str, data=None, *, raw: bytes | None = None, headers=None, query=None):
    """handle() directly; returns (status, parsed JSON body or None, response)."""
    body = raw if raw is not None else (json.dumps(data).encode() if data is not None else b"")
    resp = vb.handle(make_request(method, path, body, headers, query))
    if resp is None:
        return None, None, None
    return resp.status, resp.json(), resp


@contextlib.contextmanager
def serve(vb):
    """Yield the base URL of a ThreadingHTTPServer answering from `vb` (404 when not ours)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _any(self):
            url = urlsplit(self.path)
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            req = Request(
                method=self.command, host=(self.headers.get("host") or "127.0.0.1").split(":")[0],
                path=url.path, query=parse_qsl(url.query, keep_blank_values=True),
                headers=list(self.headers.items()), body=body, port=self.server.server_port,
            )
            resp = vb.handle(req)
            if resp is None:
                payload = json.dumps({"error": "not a virtual resource"}).encode()
                status, headers = 404, [("content-type", "application/json")]
            else:
                status, headers, payload = resp.status, resp.headers, resp.body
            self.send_response(status)
            for k, v in headers:
                if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(k, v)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
