"""Failover always answers, in time: against a real upstream that hangs, trickles, resets or
refuses, every client gets mockstore's answer within the upstream deadline (1 s here, with
clients that give up after a few), never a recorded error when a success is known; an
upstream known down is not paid for on every request (the circuit breaker), and mitmproxy's
upstream TLS options are honoured."""

from __future__ import annotations

import ipaddress
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from conftest import free_port
from faulty_backend import Faulty

DEADLINE = 1  # mock_upstream_timeout, seconds
CLIENT_TIMEOUT = 3.5  # a client gives up after this: well past the deadline, well short of a queue of them


def learned(procs, proxy, paths=("/users/1", "/users/2", "/users/3"), **options):
    api = Faulty(procs, free_port())
    p = proxy(api.url, mode="failover", mock_upstream_timeout=DEADLINE, **options)
    with p.client() as c:
        for path in paths:
            r = c.get(path)
            assert r.status_code == 200 and "x-mockstore-source" not in r.headers, "forwarded while it works"
    return api, p


def get_all(p, paths: list[str]) -> list[httpx.Response]:
    """All at once, each on its own connection, as many clients would."""

    def one(path):
        with httpx.Client(base_url=p.url, timeout=CLIENT_TIMEOUT) as c:
            return c.get(path)

    with ThreadPoolExecutor(len(paths)) as pool:
        return list(pool.map(one, paths))


def test_hanging_upstream_every_client_answered_by_the_deadline(procs, proxy):
    api, p = learned(procs, proxy)
    api.mode("hang")
    answers = get_all(p, [f"/users/{i % 3 + 1}" for i in range(30)])  # a client timing out raises
    assert {(r.status_code, r.headers["x-mockstore-source"]) for r in answers} == {(200, "failover-recorded")}
    assert {r.headers["x-mockstore-upstream"] for r in answers} <= {"timeout", "down"}  # down: once the breaker opened
    log = p.stop()
    assert log.count("failover for GET 127.0.0.1") <= 3, "logged once per endpoint and cause"


def test_trickling_upstream_is_cut_at_the_deadline(procs, proxy):
    """The deadline is for the whole exchange: a byte every half second is no answer."""
    api, p = learned(procs, proxy)
    api.mode("trickle")
    with httpx.Client(base_url=p.url, timeout=CLIENT_TIMEOUT) as c:
        r = c.get("/users/1")
    assert (r.status_code, r.headers["x-mockstore-source"], r.headers["x-mockstore-upstream"]) == (200, "failover-recorded", "timeout")
    assert r.json() == {"id": 1, "name": "user 1"}


def test_never_a_recorded_error_when_a_success_is_known(procs, proxy):
    api, p = learned(procs, proxy, paths=("/flaky",))
    api.mode("error")
    with p.client() as c:
        r = c.get("/flaky")  # the real 503 is learned, and answered with the success
        assert (r.status_code, r.headers["x-mockstore-source"]) == (200, "failover-recorded")
    for mode in ("reset", "refused"):
        if mode == "refused":
            api.kill()
        else:
            api.mode(mode)
        answers = get_all(p, ["/flaky"] * 12)
        assert [r.status_code for r in answers] == [200] * 12, mode
        assert {r.headers["x-mockstore-source"] for r in answers} == {"failover-recorded"}
        # on a loaded machine a reset can come after the 1 s deadline: then it is a timeout
        assert {r.headers["x-mockstore-upstream"] for r in answers} <= {mode, "down", "timeout"}


def test_breaker_answers_at_once_while_down_and_probes_until_back(procs, proxy):
    api, p = learned(procs, proxy)
    api.mode("hang")
    with httpx.Client(base_url=p.url, timeout=CLIENT_TIMEOUT) as c:
        for i in range(3):  # three failures in a row open the breaker
            assert c.get("/users/1").headers["x-mockstore-upstream"] == "timeout"
        before = api.count()
        answers = [c.get(f"/users/{i % 3 + 1}") for i in range(20)]
        assert {(r.status_code, r.headers["x-mockstore-source"], r.headers["x-mockstore-upstream"]) for r in answers} == {
            (200, "failover-recorded", "down")
        }
        assert api.count() - before <= 3, "while down, only the probes reach it (one at a time, every second)"
        api.mode("ok")
        deadline = time.monotonic() + 10
        while "x-mockstore-source" in (r := c.get("/users/2")).headers:
            assert time.monotonic() < deadline, "a probe finds the upstream back"
            time.sleep(0.2)
        assert r.json() == {"id": 2, "name": "user 2"}
    log = p.stop()
    assert log.count("is down (") == 1 and log.count("is back (") == 1


def test_upstream_tls_trusts_mitmproxys_trusted_ca_option(backend, proxy, confdir, tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
    from mitmproxy import certs

    proxy(None).stop()  # the first start writes the CA into confdir
    store = certs.CertStore.from_store(confdir, "mitmproxy", 2048)
    entry = store.get_cert("127.0.0.1", [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    key = entry.privatekey.private_bytes(Encoding.PEM, PrivateFormat.TraditionalOpenSSL, NoEncryption())
    pem = tmp_path / "server.pem"
    pem.write_bytes(entry.cert.to_pem() + key)
    api, url = backend(tls=str(pem))
    ca = str(confdir / "mitmproxy-ca-cert.pem")
    trusting = proxy(url, mode="failover", mock_upstream_timeout=2, ssl_verify_upstream_trusted_ca=ca)
    with trusting.client() as c:
        r = c.get("/users/1")
    assert r.status_code == 200 and "x-mockstore-source" not in r.headers, "forwarded: the CA is trusted"
    doubting = proxy(url, mode="failover", mock_upstream_timeout=2, db=tmp_path / "other.db")
    with doubting.client() as c:
        r = c.get("/users/1")
    assert r.headers["x-mockstore-upstream"] == "tls", "not trusted without the option"


def test_refused_through_mockstore_serve(procs, proxy):
    api, p = learned(procs, proxy, runner="serve")
    api.kill()
    with p.client() as c:
        r = c.get("/users/1")
    assert (r.status_code, r.headers["x-mockstore-source"], r.headers["x-mockstore-upstream"]) == (200, "failover-recorded", "refused")


def test_a_failing_endpoint_does_not_open_the_breaker_for_the_others(backend, proxy):
    api, url = backend()
    p = proxy(url, mode="failover", mock_upstream_timeout=DEADLINE)
    with p.client() as c:
        for _ in range(5):
            r = c.get("/status/503")
            assert r.headers["x-mockstore-upstream"] == "5xx"
        r = c.get("/users/1")
        assert r.status_code == 200 and "x-mockstore-source" not in r.headers, "still forwarded"
    assert "is down" not in p.stop()
