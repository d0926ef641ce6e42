"""Mock and replay modes never contact the real API: when mockstore cannot make an answer (a
damaged store row, a recorded header that is not UTF-8, a path that is not UTF-8), the client
gets a 500 saying so (source `error`), and the real API, counting, sees nothing."""

from __future__ import annotations

import socket
import sqlite3

import pytest
from conftest import free_port
from faulty_backend import Faulty


def raw_request(port: int, target: bytes) -> tuple[int, dict[str, str], bytes]:
    """A request whose path httpx would not send as it is (bytes that are not UTF-8)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.mark.parametrize("mode", ["mock", "replay"])
def test_internal_errors_answer_500_and_never_reach_the_real_api(procs, proxy, mode):
    api = Faulty(procs, free_port())
    learn = proxy(api.url)
    with learn.client() as c:
        for path in ("/users/1", "/users/2", "/badheader"):
            assert c.get(path).status_code == 200
    learn.stop()
    db = sqlite3.connect(learn.db)
    db.execute("update exchanges set resp_headers = '{damaged' where path = '/users/2'")
    db.commit()
    db.close()

    p = proxy(api.url, mode=mode, db=learn.db, runner="serve")  # mitmdump would print the odd path raw
    before = api.count()
    with p.client() as c:
        r = c.get("/users/1")
        assert (r.status_code, r.headers["x-mockstore-source"]) == (200, "recorded")
        r = c.get("/users/2")
        assert (r.status_code, r.headers["x-mockstore-source"]) == (500, "error"), "a damaged row"
        assert "mockstore could not answer" in r.json()["error"]
        r = c.get("/badheader")
        assert "x-mockstore-source" in r.headers, "a recorded header that is not UTF-8: answered by mockstore"
    status, headers, _ = raw_request(p.port, b"/nothing/caf\xe9")
    assert "x-mockstore-source" in headers and status in (404, 500)
    assert api.count() == before, "mock and replay modes never contact the real API"
    assert "could not answer a request" in p.stop()
