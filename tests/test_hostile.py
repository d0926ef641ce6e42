"""A live proxy under hostile traffic (issue 12, item 9): `mockstore serve` learns from a raw
backend through thousands of generated exchanges (broken and deep JSON, huge arrays, bytes
that are not UTF-8 anywhere, wrong Content-Length, bogus chunking, compression bombs in every
encoding, 50 MB bodies, header floods, odd paths and queries, thousands of distinct paths),
then mocks the same requests, then fails over in front of the backend misbehaving.

What must hold: no crash and no traceback; every exchange the backend answered validly
reaches the client with the same status and body bytes; broken upstream framing gets an error
or a closed connection within a bound, and the next request is served; no request reaches the
backend in mock mode; the proxy's memory stays bounded; the store is intact and every CLI
command works on it. The traffic is generated from SEED; SCALE sizes the run (1.0: about a
minute on a quiet 2-core machine).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import MOCKSTORE, Proc, free_port
from hostile_wire import INVALID, RESPONSE_FAILOVER, RESPONSE_LEARN, Backend, Case, Result, exchange, generate

SEED = int(os.environ.get("MOCKSTORE_HOSTILE_SEED", "12"))
SCALE = float(os.environ.get("MOCKSTORE_HOSTILE_SCALE", "1.0"))
N_LEARN = int(1500 * SCALE)  # exchanges learned; the same requests are then mocked
N_FAILOVER = int(600 * SCALE)
BIG_BODIES = 2  # exchanges with a 50 MB body: one request, one response
CLIENTS = 8  # concurrent raw-socket clients
BOUND = 60.0  # seconds an exchange may take before it counts as a hang (a loaded machine, 50 MB)
DEADLINE = 1  # mock_upstream_timeout in failover
RSS_LIMIT = 600 << 20
MAX_BODY = 1 << 20  # mock_max_body, the default  # the proxy's peak resident memory (VmHWM), with 50 MB bodies buffered

TRACEBACK_ALLOWED: list[re.Pattern] = []  # none: every traceback in the proxy's output is a bug


def drive(port: int, cases: list[Case]) -> dict[str, Result]:
    def one(c: Case) -> tuple[str, Result]:
        half = c.framing == "badcl-long"  # the body it announces never comes: the proxy sees the end
        return c.id, exchange(port, c.wire(), c.method, half_close=half, timeout=BOUND)

    with ThreadPoolExecutor(CLIENTS) as pool:
        return dict(pool.map(one, cases))


def vm(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                k, v = line.split(":")
                out[k] = int(v.split()[0]) * 1024
    return out


class Drained(Proc):
    """A Proc whose output is read while it runs: thousands of exchanges log more than a pipe
    holds, and a proxy blocked writing its log serves nobody."""

    def __init__(self, args: list[str], port: int):
        super().__init__(args, port)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self.reader.start()

    def stop(self, sig=signal.SIGINT) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout=15)
        self.output = "".join(self.lines)
        return self.output


def serve(db, mode: str, upstream: str, confdir, *extra: str) -> Proc:
    port = free_port()
    args = [MOCKSTORE, "serve", "--listen-port", str(port), "--db", str(db), "--mode", mode, "--latency", "none",
            "--upstream", upstream, "--confdir", str(confdir), "--upstream-timeout", str(DEADLINE), *extra]
    return Drained(args, port)


def health(port: int) -> Result:
    req = [b"GET /health/after HTTP/1.1\r\nHost: h\r\nX-Hostile-Id: health\r\nX-Hostile-Resp: json\r\nConnection: close\r\n\r\n"]
    return exchange(port, req, b"GET", half_close=False, timeout=BOUND)


class Run:
    """Everything the phases saw, for the tests below to judge."""

    def __init__(self):
        self.phases: dict[str, dict] = {}
        self.outputs: dict[str, str] = {}
        self.db = None
        self.seconds: dict[str, float] = {}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    tmp = tmp_path_factory.mktemp("hostile")
    confdir = tmp_path_factory.mktemp("hostile-certs")
    r = Run()
    r.db = tmp / "hostile.db"
    backend = Backend(hang=DEADLINE + 2)
    learn_cases = generate(SEED, N_LEARN, RESPONSE_LEARN, big=BIG_BODIES)
    rng = random.Random(SEED + 1)
    failover_cases = [
        Case(f"f{c.id}", c.req, rng.choices(list(RESPONSE_FAILOVER), weights=list(RESPONSE_FAILOVER.values()))[0],
             c.method, c.target, c.headers, c.body, c.framing, c.valid_request)
        for c in random.Random(SEED + 2).sample(learn_cases, min(N_FAILOVER, len(learn_cases)))
    ]
    try:
        for mode, cases in (("learn", learn_cases), ("mock", learn_cases), ("failover", failover_cases)):
            started = time.monotonic()
            p = serve(r.db, mode, backend.url, confdir)
            try:
                before = backend.count
                results = drive(p.port, cases)
                r.seconds[mode + " traffic"] = time.monotonic() - started
                after = backend.count
                alive = health(p.port)
                memory = vm(p.proc.pid)
            finally:
                r.outputs[mode] = p.stop()
            r.phases[mode] = dict(cases=cases, results=results, backend_before=before, backend_after=after,
                                  alive=alive, memory=memory, exit=p.proc.returncode)
            r.seconds[mode] = time.monotonic() - started
        r.backend = backend
        yield r
    finally:
        backend.close()
        print("hostile run:", {m: f"{s:.1f} s" for m, s in r.seconds.items()},
              {m: len(ph["cases"]) for m, ph in r.phases.items()})
        for mode, ph in r.phases.items():
            print(mode, Counter(res.outcome for res in ph["results"].values()), ph["memory"])
            slow = sorted(ph["results"].items(), key=lambda kv: -kv[1].seconds)[:3]
            print("  slowest:", [(hid, round(res.seconds, 1), res.outcome, res.status, res.source) for hid, res in slow])


def _failures(lines: list[str]) -> str:
    return f"{len(lines)} failures, first ones:\n" + "\n".join(lines[:15])


def test_no_crash_and_no_traceback(run):
    for mode, out in run.outputs.items():
        ph = run.phases[mode]
        assert ph["exit"] == 0, f"{mode}: the proxy exited with {ph['exit']}:\n{out[-3000:]}"
        tracebacks = [m.start() for m in re.finditer("Traceback", out)]
        unexplained = [at for at in tracebacks if not any(p.search(out, at) for p in TRACEBACK_ALLOWED)]
        assert not unexplained, f"{mode}: a traceback in the proxy's output:\n{out[unexplained[0] - 300:unexplained[0] + 3000]}"


@pytest.mark.parametrize("mode", ["learn", "mock", "failover"])
def test_no_exchange_hangs_and_the_proxy_keeps_serving(run, mode):
    ph = run.phases[mode]
    hung = [f"{c.id} {c.req}/{c.resp} {c.target[:60]!r}" for c in ph["cases"] if ph["results"][c.id].outcome == "timeout"]
    assert not hung, f"no answer and no close within {BOUND} s: " + _failures(hung)
    assert ph["alive"].outcome == "response" and ph["alive"].status is not None, f"after the traffic: {ph['alive']}"


def test_learning_every_valid_answer_reaches_the_client_byte_identical(run):
    ph, backend = run.phases["learn"], run.backend
    bad, compared = [], 0
    for c in ph["cases"]:
        res = ph["results"][c.id]
        answered = backend.valid.get(c.id)
        if answered:
            compared += 1
            (status, body), = set(answered)
            if (res.outcome, res.status, res.body) != ("response", status, body):
                bad.append(f"{c.id} {c.req}/{c.resp}: sent {status} {body}, client got {res.outcome} {res.status} {res.body} {res.error}")
        elif c.id in backend.lenient:
            if res.outcome == "response" and res.status < 400 and (res.status, res.body) not in backend.lenient[c.id]:
                bad.append(f"{c.id} {c.req}/{c.resp}: passed on as {res.status} {res.body}, not as sent {backend.lenient[c.id]}")
        elif c.id in backend.invalid and res.outcome == "response" and res.status < 400:
            bad.append(f"{c.id} {c.req}/{c.resp}: broken framing passed on as {res.status} {res.body}")
        elif c.valid_request and c.id not in backend.invalid:
            bad.append(f"{c.id} {c.req}/{c.resp} {c.target[:60]!r}: a valid request never reached the backend ({res.outcome} {res.status} {res.error})")
        if res.source is not None:
            bad.append(f"{c.id}: answered by mockstore ({res.source}) in learn mode")
    assert compared > N_LEARN // 2
    assert not bad, _failures(bad)


def test_mock_never_reaches_the_backend_and_answers_every_request(run):
    ph = run.phases["mock"]
    assert ph["backend_after"] == ph["backend_before"], "requests reached the backend in mock mode"
    bad = []
    for c in ph["cases"]:
        res = ph["results"][c.id]
        if not c.valid_request:
            continue  # refused by mitmproxy or answered: either way in time (test above)
        if res.outcome != "response" or res.source is None or res.source == "error":
            bad.append(f"{c.id} {c.req} {c.method} {c.target[:80]!r}: {res.outcome} {res.status} {res.source} {res.error}")
    assert not bad, _failures(bad)


def test_failover_passes_valid_answers_on_exactly_and_stands_in_for_the_rest(run):
    ph, backend = run.phases["failover"], run.backend
    bad, passed, stood_in = [], 0, 0
    for c in ph["cases"]:
        res = ph["results"][c.id]
        if not c.valid_request or res.outcome != "response":
            if c.valid_request:
                bad.append(f"{c.id} {c.req}/{c.resp}: {res.outcome} {res.error}")
            continue
        if res.source is None:  # passed on from the backend: exactly what it answered
            passed += 1
            sent = set(backend.valid.get(c.id, []) + backend.lenient.get(c.id, []))
            if (res.status, res.body) not in sent:
                bad.append(f"{c.id} {c.req}/{c.resp}: client got {res.status} {res.body}, backend answered {sent or 'nothing valid'}")
        else:
            stood_in += 1
            if not res.source.startswith("failover-"):
                bad.append(f"{c.id} {c.req}/{c.resp}: source {res.source}")
        if c.resp in INVALID and c.resp != "cl-te" and res.source is None:
            bad.append(f"{c.id} {c.req}/{c.resp}: a broken upstream answer passed on ({res.status})")
    assert passed > 0 and stood_in > 0, (passed, stood_in)
    assert not bad, _failures(bad)


@pytest.mark.parametrize("mode", ["learn", "mock", "failover"])
def test_memory_stays_bounded(run, mode):
    memory = run.phases[mode]["memory"]
    assert memory["VmHWM"] < RSS_LIMIT, f"{mode}: peak RSS {memory['VmHWM'] >> 20} MB"


def test_the_store_is_intact(run):
    db = sqlite3.connect(run.db)
    try:
        assert db.execute("pragma integrity_check").fetchall() == [("ok",)]
        assert db.execute("select count(*) from exchanges").fetchone()[0] > 0
    finally:
        db.close()


def _cli(run, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([MOCKSTORE, *args, "--db", str(run.db)], capture_output=True, timeout=120, **kw)


@pytest.mark.parametrize("command", [
    ("endpoints",), ("endpoints", "--json"), ("schema",), ("export-har", "-o", "{tmp}/out.har"),
    ("export-openapi", "-o", "{tmp}/openapi.json"), ("drift",), ("chaos", "list"), ("resources", "infer"), ("rebuild",),
])
def test_every_cli_command_works_on_the_store(run, command, tmp_path):
    args = [a.format(tmp=tmp_path) for a in command]
    if args == ["schema"]:
        endpoints = json.loads(_cli(run, "endpoints", "--json").stdout)
        assert endpoints
        args.append(endpoints[0]["id"] if "id" in endpoints[0] else f"{endpoints[0]['method']} {endpoints[0]['template']}")
    done = _cli(run, *args)
    assert done.returncode == 0, f"mockstore {' '.join(args)}: {done.returncode}\n{done.stderr.decode(errors='replace')[-3000:]}"
    assert b"Traceback" not in done.stderr


# --- the causes the traffic found, each on its own (no proxy needed) ----------------------

RAW = "/caf\udce9"  # a path byte that is not UTF-8, as mitmproxy decodes it (surrogateescape)


def test_a_lone_surrogate_in_a_body_has_a_match_key():
    from mockstore.model import match_key

    keys = {match_key("POST", "h", "/a", [], body) for body in ('{"a":"\ud800"}', '{"a":"\udce9"}', '{"a":"x"}')}
    assert len(keys) == 3


def test_synthesis_keyed_by_a_raw_path_and_its_json_body():
    from mockstore.exchange import Response
    from mockstore.synth import synthesize

    schema = {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}
    value = synthesize(schema, key=f"GET h{RAW}", overrides={"id": RAW[1:]})
    assert value == {"id": RAW[1:]}
    assert Response.make_json(200, value).body == b'{"id": "caf\xe9"}'  # the byte as it came


def test_a_url_keeps_a_query_byte_that_is_not_utf8():
    from mockstore.exchange import Request

    assert Request("GET", "h", "/a", query=[("q", "caf\udce9")]).url == "http://h/a?q=caf%E9"


def test_mock_answers_a_learned_exchange_with_the_body_learned(run):
    """A request mocked exactly as it was learned, whose answer was recorded whole (valid
    framing, within mock_max_body, no encoding), gets that answer's status and body again."""
    learn, mock, backend = run.phases["learn"], run.phases["mock"], run.backend
    # a request learned more than once replays its answers in recorded order: the clients' order here is not that
    times = Counter((c.method, c.target, c.body, c.framing) for c in learn["cases"])
    bad, compared = [], 0
    for c in mock["cases"]:
        res, sent = mock["results"][c.id], backend.valid.get(c.id)
        if not sent or res.source != "recorded" or times[(c.method, c.target, c.body, c.framing)] > 1:
            continue
        (status, body), = set(sent)
        if body[0] > MAX_BODY or len(c.body) > MAX_BODY or c.resp in ("bomb", "big") or c.req in ("big", "bomb"):
            continue  # passed through unlearned, or matched without the request body it was over the limit
        compared += 1
        if (res.status, res.body) != (status, body):
            bad.append(f"{c.id} {c.req}/{c.resp} {c.method} {c.target[:60]!r}: learned {status} {body}, mocked {res.status} {res.body}")
    assert compared > 0
    assert not bad, f"of {compared}: " + _failures(bad)


def test_synthesis_from_deeply_nested_arrays_stays_small():
    """A schema learned from `[[[[...]]]]` (deep JSON): array lengths multiply down the nesting
    (3^12 values on average) unless one answer's values are bounded."""
    from mockstore.synth import MAX_VALUES, synthesize

    schema: dict = {"type": "integer"}
    for _ in range(40):
        schema = {"type": "array", "items": schema}

    def count(v) -> int:
        return 1 + sum(count(x) for x in v) if isinstance(v, list) else 1

    sizes = [count(synthesize(schema, key=str(k))) for k in range(5)]
    assert max(sizes) <= 2 * MAX_VALUES, sizes
