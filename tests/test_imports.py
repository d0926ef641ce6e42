"""Imports of mitmproxy flow files (written by FlowWriter, and by a real mitmdump in front of
a real backend) and the file commands of the CLI."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner
from openapi_spec_validator import validate

from mockstore.cli import cli
from mockstore.exchange import Exchange, Request, Response
from mockstore.har import exchanges_from_store, write_har
from mockstore.imports import detect, import_file
from mockstore.model import Model
from mockstore.store import Store
from conftest import free_port, wait_port

MITMDUMP = str(Path(sys.executable).parent / "mitmdump")


def write_flows(path: Path, flows) -> None:
    from mitmproxy import io

    with open(path, "wb") as f:
        w = io.FlowWriter(f)
        for fl in flows:
            w.add(fl)


def tflows():
    from mitmproxy.test import tflow

    out = []
    for i in range(1, 4):
        f = tflow.tflow(resp=True)
        f.request.path = f"/users/{i}?fields=name"
        f.request.headers["authorization"] = "Bearer hunter2"
        f.response.headers["content-type"] = "application/json"
        f.response.content = json.dumps({"id": i, "name": f"n{i}"}).encode()
        out.append(f)
    gz = tflow.tflow(resp=True)
    gz.request.path = "/zipped"
    gz.response.headers["content-type"] = "application/json"
    gz.response.headers["content-encoding"] = "gzip"
    gz.response.content = b'{"zipped": true}'  # mitmproxy encodes it, as on the wire
    out.append(gz)
    out.append(tflow.tflow(resp=False))  # no response: not an exchange
    out.append(tflow.ttcpflow())  # not HTTP at all
    return out


def test_detect(tmp_path):
    flows = tmp_path / "capture.har"  # the name lies: content decides
    write_flows(flows, tflows())
    assert detect(flows) == "flows"
    har = tmp_path / "capture.flows"
    with open(har, "w") as f:
        write_har([], f)
    assert detect(har) == "har"
    bom = tmp_path / "bom"
    bom.write_bytes(b"\xef\xbb\xbf\n  " + har.read_bytes())
    assert detect(bom) == "har"
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        detect(tmp_path / "empty")
    (tmp_path / "png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(100))
    with pytest.raises(ValueError, match="neither a HAR file nor a mitmproxy flow file"):
        detect(tmp_path / "png")


def test_import_flow_file(tmp_path):
    path = tmp_path / "t.flows"
    write_flows(path, tflows())
    store = Store(tmp_path / "s.db")
    seen = []
    assert import_file(store, path, progress=seen.append).count == 4
    assert seen[-1] == path.stat().st_size and seen == sorted(seen)
    db = store.reader()
    rows = list(db.execute("select host, path, query, req_headers, resp_body, source from exchanges order by id"))
    assert len(rows) == 4
    assert rows[0][0] == "address:22" and rows[0][1] == "/users/1"
    assert json.loads(rows[0][2]) == [["fields", "name"]]
    assert [v for k, v in json.loads(rows[0][3]) if k == "authorization"][0].startswith("Bearer REDACTED-")
    assert rows[3][4] == b'{"zipped": true}'  # stored decoded
    assert {r[5] for r in rows} == {"import"}
    model = Model.load(db)
    ep = model.endpoints["GET address:22/users/{id}"]
    assert ep.count == 3 and ep.stats.query["fields"]["count"] == 3
    assert ep.response_schema(200)["properties"]["name"] == {"type": "string"}
    assert model.endpoints["GET address:22/zipped"].response_schema(200)["properties"]["zipped"] == {"type": "boolean"}
    # importing again adds to what is known
    assert import_file(store, path, redacting=False).count == 4
    assert Model.load(store.reader()).endpoints["GET address:22/users/{id}"].count == 6
    hs = store.reader().execute("select req_headers from exchanges order by id desc limit 1").fetchone()[0]
    assert "REDACTED-" not in hs
    store.close()


def test_flow_bodies_over_the_limit_count_for_stats_only(tmp_path):
    from mitmproxy.test import tflow

    big = tflow.tflow(resp=True)
    big.request.path = "/big"
    big.response.headers["content-type"] = "application/json"
    big.response.content = json.dumps({"data": "x" * 5000}).encode()
    small = tflow.tflow(resp=True)
    small.request.path = "/small"
    path = tmp_path / "big.flows"
    write_flows(path, [big, small])
    store = Store(tmp_path / "s.db")
    assert import_file(store, path, limit=1000).count == 2
    db = store.reader()
    assert [r[0] for r in db.execute("select path from exchanges")] == ["/small"]
    assert Model.load(db).endpoints["GET address:22/big"].count == 1
    store.close()


def test_truncated_flow_file_keeps_what_came_before(tmp_path, caplog):
    path = tmp_path / "cut.flows"
    write_flows(path, tflows()[:3])
    data = path.read_bytes()
    path.write_bytes(data[:-40])
    store = Store(tmp_path / "s.db")
    assert import_file(store, path).count == 2
    assert "stopped after 2 exchanges" in caplog.text
    assert store.reader().execute("select count(*) from exchanges").fetchone()[0] == 2
    store.close()


def test_garbage_that_looks_like_a_flow_file(tmp_path):
    path = tmp_path / "x.flows"
    path.write_bytes(b"12:" + os.urandom(200))
    store = Store(tmp_path / "s.db")
    with pytest.raises(ValueError, match="not a mitmproxy flow file"):
        import_file(store, path)
    store.close()


# --- a real mitmdump in front of a real backend ----------------------------------------------


class Backend(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status: int, data, gzipped: bool = False) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        if gzipped:
            body = gzip.compress(body)
            self.send_header("content-encoding", "gzip")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[0] == "users" and len(parts) == 2 and parts[1].isdigit():
            gz = "gzip" in (self.headers.get("accept-encoding") or "")
            self._send(200, {"id": int(parts[1]), "email": f"u{parts[1]}@example.com"}, gzipped=gz)
        else:
            self._send(404, {"error": "no such thing"})

    def do_POST(self):
        n = int(self.headers.get("content-length") or 0)
        data = json.loads(self.rfile.read(n) or b"{}")
        self._send(201, {"id": 99, **data})


@pytest.fixture
def backend():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_import_a_real_mitmdump_capture(tmp_path, backend):
    flows = tmp_path / "real.flows"
    port = free_port()
    proc = subprocess.Popen(
        [MITMDUMP, "-q", "-w", str(flows), "--mode", f"reverse:{backend}", "--listen-host", "127.0.0.1",
         "--listen-port", str(port), "--set", f"confdir={tmp_path / 'certs'}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        wait_port(port, proc)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=20) as c:
            for i in (1, 2, 3):
                r = c.get(f"/users/{i}", params={"v": "1"}, headers={"accept-encoding": "gzip"})
                assert r.status_code == 200 and r.json()["id"] == i
            assert c.post("/users", json={"email": "new@example.com"}).status_code == 201
            assert c.get("/nope").status_code == 404
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert flows.exists() and detect(flows) == "flows"

    store = Store(tmp_path / "s.db")
    assert import_file(store, flows).count == 5
    model = Model.load(store.reader())
    authority = backend.removeprefix("http://")
    ep = model.endpoints[f"GET {authority}/users/{{id}}"]
    assert ep.count == 3 and ep.statuses == {200: 3}
    assert ep.response_schema(200)["properties"]["email"]["format"] == "email"
    assert ep.stats.query["v"]["count"] == 3
    post = model.endpoints[f"POST {authority}/users"]
    assert post.request_schema()["properties"]["email"]["type"] == "string"
    assert model.endpoints[f"GET {authority}/nope"].statuses == {404: 1}
    bodies = [ex.response.body for ex in exchanges_from_store(store.reader())]
    assert json.loads(bodies[0]) == {"id": 1, "email": "u1@example.com"}  # gzip undone
    store.close()


# --- the command line ------------------------------------------------------------------------


def sample_har(path: Path, n: int = 12, body_size: int = 0) -> None:
    exs = []
    for i in range(n):
        exs.append(Exchange(
            Request("GET", "api.example.com", f"/items/{i + 1}", [("lang", "en")], scheme="https", port=443),
            Response.make_json(200 if i % 4 else 404, {"id": i + 1, "pad": "p" * body_size}),
            started=1_700_000_000 + i, duration_ms=5 + i,
        ))
    exs.append(Exchange(
        Request("POST", "api.example.com", "/items", [], [("content-type", "application/json")], b'{"name": "a"}',
                scheme="https", port=443),
        Response.make_json(201, {"id": 100, "name": "a"}), started=1_700_000_100, duration_ms=9,
    ))
    with open(path, "w", encoding="utf-8") as f:
        write_har(exs, f)


def test_cli_import_and_exports(tmp_path):
    runner = CliRunner()
    db = str(tmp_path / "m.db")
    har = tmp_path / "in.har"
    sample_har(har)
    r = runner.invoke(cli, ["import", str(har), "--db", db])
    assert r.exit_code == 0, r.output
    assert "imported 13 exchanges" in r.output and "(HAR)" in r.output
    assert "GET api.example.com/items/{id}  (+12)" in r.output
    assert "POST api.example.com/items  (+1)" in r.output

    out = tmp_path / "api.yaml"
    r = runner.invoke(cli, ["export-openapi", "-o", str(out), "--db", db, "--title", "Items"])
    assert r.exit_code == 0, r.output
    assert "2 paths, 2 operations" in r.output
    doc = yaml.safe_load(out.read_text())
    validate(doc)
    assert doc["info"]["title"] == "Items"
    assert doc["servers"] == [{"url": "https://api.example.com"}]
    assert doc["paths"]["/items/{id}"]["parameters"][0]["schema"] == {"type": "integer"}
    assert set(doc["paths"]["/items/{id}"]["get"]["responses"]) == {"200", "404"}

    r = runner.invoke(cli, ["export-openapi", "-o", "-", "--format", "json", "--db", db])
    assert r.exit_code == 0
    validate(json.loads(r.stdout))

    out_json = tmp_path / "api.json"  # the format follows the file name
    assert runner.invoke(cli, ["export-openapi", "-o", str(out_json), "--db", db]).exit_code == 0
    assert json.loads(out_json.read_text())["openapi"] == "3.1.0"

    exported = tmp_path / "out.har"
    r = runner.invoke(cli, ["export-har", "-o", str(exported), "--db", db])
    assert r.exit_code == 0, r.output
    assert "wrote 13 exchanges" in r.output
    entries = json.loads(exported.read_text())["log"]["entries"]
    assert len(entries) == 13 and entries[0]["request"]["url"] == "https://api.example.com/items/1?lang=en"


def test_cli_import_big_file_with_progress(tmp_path):
    har = tmp_path / "big.har"
    sample_har(har, n=300, body_size=4000)
    assert har.stat().st_size > 1024 * 1024
    r = CliRunner().invoke(cli, ["import", str(har), "--db", str(tmp_path / "m.db"), "--max-body", "2000"])
    assert r.exit_code == 0, r.output
    assert "importing big.har" in r.output
    assert "imported 301 exchanges" in r.output
    store = Store(tmp_path / "m.db")
    # the 300 big responses were learned for statistics only
    assert store.reader().execute("select count(*) from exchanges").fetchone()[0] == 1
    assert Model.load(store.reader()).endpoints["GET api.example.com/items/{id}"].count == 300
    store.close()


def test_cli_errors_are_plain(tmp_path):
    runner = CliRunner()
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01binary")
    r = runner.invoke(cli, ["import", str(junk), "--db", str(tmp_path / "m.db")])
    assert r.exit_code == 1 and "neither a HAR file nor a mitmproxy flow file" in r.output
    bad = tmp_path / "bad.har"
    bad.write_text('{"log": {"entries": [')
    r = runner.invoke(cli, ["import", str(bad), "--db", str(tmp_path / "m.db")])
    assert r.exit_code == 1 and "bad.har: not a HAR file: broken JSON" in r.output
    assert "Traceback" not in r.output
    r = runner.invoke(cli, ["import", str(tmp_path / "missing.har")])
    assert r.exit_code == 2 and "does not exist" in r.output
    for cmd in (["export-openapi", "-o", str(tmp_path / "o.yaml")], ["export-har", "-o", str(tmp_path / "o.har")]):
        r = runner.invoke(cli, [*cmd, "--db", str(tmp_path / "nowhere.db")])
        assert r.exit_code == 1 and "no store at" in r.output
        assert not Path(cmd[-1]).exists()
    notdb = tmp_path / "notdb.db"
    notdb.write_bytes(b"not a database at all" * 100)
    r = runner.invoke(cli, ["export-har", "-o", "-", "--db", str(notdb)])
    assert r.exit_code == 1 and "Traceback" not in r.output


def test_cli_import_warns_about_skipped_entries(tmp_path):
    har = tmp_path / "partly.har"
    har.write_text(json.dumps({"log": {"version": "1.2", "entries": [
        {"startedDateTime": "2024-01-01T00:00:00Z", "time": 1,
         "request": {"method": "GET", "url": "http://h.example/a", "headers": []},
         "response": {"status": 200, "headers": [], "content": {"mimeType": "text/plain", "text": "a"}}},
        {"request": {"method": "GET", "url": "http://h.example/b"}, "response": {"status": 0}},
    ]}}))
    r = CliRunner().invoke(cli, ["import", str(har), "--db", str(tmp_path / "m.db")])
    assert r.exit_code == 0, r.output
    assert "imported 1 exchanges" in r.output
    assert "warning: partly.har: entry 1 skipped: no real response (status 0)" in r.output
