"""Options and the command line: a bad value is refused at start, in one line that names the
option and what it accepts (through real `mitmdump --set` and `mockstore serve` processes);
`serve` refuses what it cannot serve before starting; `mockstore --help` stays light."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from conftest import ADDON, MITMDUMP, MOCKSTORE, ROOT, free_port, wait_port
from mockstore import options

BAD = [
    ("mock_mode=bogus", ["mock_mode", "'bogus'", "learn", "mock", "failover", "replay"]),
    ("mock_latency=bogus", ["mock_latency", "'bogus'", "learned", "none"]),
    ("mock_seed=abc", ["mock_seed", "'abc'", "whole number"]),
]


def run_until_exit(args: list[str], cwd=ROOT, timeout: float = 40) -> tuple[int | None, str, str]:
    """(exit code, stdout, stderr); None for a process still running after `timeout` (a
    proxy that started with the bad value), stopped then."""
    p = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out, err
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGINT)
        try:
            out, err = p.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        return None, out, err


def naming_lines(text: str, words: list[str]) -> list[str]:
    return [line for line in text.splitlines() if all(w in line for w in words)]


@pytest.mark.parametrize("setting,words", BAD, ids=[s for s, _ in BAD])
def test_mitmdump_refuses_a_bad_value_naming_the_option(tmp_path, confdir, setting, words):
    code, out, err = run_until_exit(
        [MITMDUMP, "-s", ADDON, "--listen-host", "127.0.0.1", "--listen-port", str(free_port()),
         "--set", f"confdir={confdir}", "--set", f"mock_db={tmp_path / 'm.db'}", "--set", setting], timeout=30)
    assert code is not None, f"mitmdump started with --set {setting}:\n{out}{err}"
    assert code != 0
    assert naming_lines(out + err, words), out + err


@pytest.mark.parametrize("setting,words", BAD, ids=[s for s, _ in BAD])
def test_serve_refuses_a_bad_value_in_one_line(tmp_path, confdir, setting, words):
    code, out, err = run_until_exit(
        [MOCKSTORE, "serve", "--listen-port", str(free_port()), "--db", str(tmp_path / "m.db"),
         "--confdir", str(confdir), "--set", setting], cwd=tmp_path, timeout=30)
    assert code is not None and code != 0, f"serve started with --set {setting}:\n{out}{err}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and naming_lines(lines[0], words), err
    assert not (tmp_path / "mockstore.db").exists(), "the default store was opened on the way out"


def test_the_mode_command_refuses_a_bad_mode(tmp_path):
    import asyncio

    from mitmproxy import exceptions
    from mitmproxy.test import taddons

    from mockstore.addon import MockStore

    async def main():
        addon = MockStore()
        tctx = taddons.context(addon)
        tctx.configure(addon, mock_db=str(tmp_path / "m.db"))
        try:
            with pytest.raises(exceptions.CommandError, match="mock_mode: 'bogus' is not one of learn, mock, failover, replay"):
                tctx.master.commands.call_strings("mockstore.mode", ["bogus"])
            assert tctx.options.mock_mode == "learn"
            tctx.master.commands.call_strings("mockstore.mode", ["mock"])
            assert tctx.options.mock_mode == "mock"
        finally:
            addon.done()

    asyncio.run(main())


def test_serve_refuses_an_upstream_that_is_not_a_url(tmp_path, confdir):
    code, out, err = run_until_exit(
        [MOCKSTORE, "serve", "--listen-port", str(free_port()), "--db", str(tmp_path / "m.db"),
         "--confdir", str(confdir), "--upstream", "not-a-url"], cwd=tmp_path, timeout=30)
    assert code is not None and code != 0, f"serve started with --upstream not-a-url:\n{out}{err}"
    assert err.strip().splitlines() == [
        "Error: --upstream: 'not-a-url' is not a URL of the real API: it needs http:// or https:// and a host, "
        "e.g. https://api.example.com"
    ]


def test_serve_on_a_port_in_use_names_its_own_flag(tmp_path, confdir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = run_until_exit(
            [MOCKSTORE, "serve", "--listen-port", str(port), "--db", str(tmp_path / "m.db"),
             "--confdir", str(confdir)], cwd=tmp_path, timeout=30)
    assert code is not None and code != 0
    assert f"cannot listen on 127.0.0.1:{port}" in err and "--listen-port" in err, out + err
    assert "--mode" not in out + err, "a hint serve would refuse"


def test_serve_keeps_one_ca_wherever_it_is_started(tmp_path):
    """Without --confdir, the CA is the checkout's certs/ (or ~/.mockstore/certs), not a new
    certs/ in whatever folder serve was started from."""
    port = free_port()
    p = subprocess.Popen([MOCKSTORE, "serve", "--listen-port", str(port), "--db", str(tmp_path / "m.db")],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_port(port, p)
    finally:
        p.send_signal(signal.SIGINT)
        p.communicate(timeout=15)
    assert not (tmp_path / "certs").exists()
    from mockstore.cli import default_confdir

    ca = default_confdir() / "mitmproxy-ca-cert.pem"
    assert default_confdir().is_absolute() and ca.is_file()
    assert default_confdir() == ROOT / "certs"  # the tests run from a checkout


@pytest.mark.parametrize("args", [["--help"], ["serve", "--help"], ["chaos", "add", "--help"]])
def test_help_imports_no_heavy_library(args):
    """`mockstore --help` took 3 s importing mitmproxy, faker and deepdiff for nothing. Checked
    through python -X importtime, not by the clock."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "mockstore", *args],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in r.stderr.splitlines() if "|" in line}
    assert "click" in imported and "mockstore" in imported  # the measurement works
    assert not imported & {"mitmproxy", "faker", "deepdiff"}, sorted(imported & {"mitmproxy", "faker", "deepdiff"})
    if args[0] == "chaos":
        assert "latency|error|reset|slow_body|timeout" in r.stdout.replace(" ", "").replace("\n", "")


# --- the pure part ----------------------------------------------------------------------

def test_parse_reads_texts_as_mitmproxy_does_and_names_the_option():
    assert options.parse("mock_seed", int, "7") == 7
    assert options.parse("mock_redact", bool, "false") is False
    assert options.parse_texts("mock_redact", bool, []) is True  # `--set mock_redact`
    assert options.parse("mock_db", str, "x.db") == "x.db"
    for name, typespec, text, message in [
        ("mock_seed", int, "abc", "mock_seed: 'abc' is not a whole number"),
        ("mock_redact", bool, "maybe", "mock_redact: 'maybe' is not true or false"),
    ]:
        with pytest.raises(ValueError, match=message):
            options.parse(name, typespec, text)
    with pytest.raises(ValueError, match="mock_seed: set 2 times"):
        options.parse_texts("mock_seed", int, ["1", "2"])


def test_check_knows_the_choices_and_ranges():
    assert options.check("mock_mode", "replay") == "replay"
    assert options.check("mock_upstream_timeout", "2.5") == 2.5
    for name, value, message in [
        ("mock_mode", "bogus", "one of learn, mock, failover, replay"),
        ("mock_latency", "slow", "one of learned, none"),
        ("mock_max_body", 0, "positive number of bytes"),
        ("mock_worker", 15, "0-14"),  # 15 is mockstore import's slot
        ("mock_upstream_timeout", "inf", "positive number of seconds"),
    ]:
        with pytest.raises(ValueError, match=message):
            options.check(name, value)


@pytest.mark.parametrize("url", ["not-a-url", "ftp://api.example.com", "https://", "api.example.com:443",
                                 "http://host:notaport"])
def test_upstream_url_needs_http_and_a_host(url):
    with pytest.raises(ValueError, match="--upstream"):
        options.upstream_url(url)


def test_upstream_url_accepts_what_a_reverse_proxy_takes():
    for url in ["https://api.example.com", "http://127.0.0.1:8000/base", "https://[::1]:8443"]:
        assert options.upstream_url(url) == url


def test_declared_dependencies_cover_what_the_code_imports():
    """mockstore/bodies.py imports brotli and zstandard itself: mitmproxy 12.3 stopped
    installing zstandard, and zstd bodies silently went unlearned."""
    from importlib.metadata import requires

    declared = {r.split(";")[0].split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip().lower()
                for r in requires("mockstore") if "extra ==" not in r}
    assert {"brotli", "zstandard", "mitmproxy"} <= declared
    mitm = next(r for r in requires("mockstore") if r.lower().startswith("mitmproxy"))
    assert "<" in mitm, "mitmproxy is bounded to the versions .ci/run tests"


def test_bench_test_is_opt_in():
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "tests/test_scale.py::test_bench_quick_produces_a_table"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT,
                       env={k: v for k, v in os.environ.items() if k != "MOCKSTORE_BENCH_TESTS"})
    assert "1 skipped" in r.stdout and "MOCKSTORE_BENCH_TESTS=1" in r.stdout, r.stdout
