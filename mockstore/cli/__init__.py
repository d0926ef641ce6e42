"""The `mockstore` command line: each command a thin wrapper over one library call.

Command groups that belong to one part of the library live in their own module here
(`cli/drift.py`, `cli/chaos.py`, `cli/vb.py`, `cli/files.py`, `cli/stubs.py`, `cli/scenarios.py`) and add themselves with
`register(cli)`.

Only click and the standard library are imported at the top of these modules: `mockstore
--help` (and every command) would otherwise first import mitmproxy, faker and deepdiff, about
a second or more. Each command imports the library it calls inside its function.
"""

from __future__ import annotations

import json
import socket
from contextlib import contextmanager
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .. import __version__
from ..options import LATENCIES, MAX_WORKER, MODES

if TYPE_CHECKING:
    from ..store import Store

DEFAULT_DB = "./mockstore.db"

db_option = click.option(
    "--db", "db_path", default=DEFAULT_DB, show_default=True, type=click.Path(dir_okay=False),
    help="The SQLite store.",
)


@click.group()
@click.version_option(__version__, prog_name="mockstore")
def cli():
    """mockstore: learn a real HTTP API from its traffic, then stand in for it."""


def open_store(db_path: str) -> Store:
    """Open the store for a command, or exit with the reason."""
    from ..store import Store, StoreError

    try:
        return Store(db_path)
    except StoreError as e:
        raise click.ClickException(str(e)) from None


@contextmanager
def store_connection(path: str, *, must_exist: bool, first: str, refused: tuple = ()):
    """A connection to the store (migrated) for one command, closed after; the library's
    refusals (`refused`) are one-line errors. `first`: what to do when there is no store."""
    from ..store import StoreError, migrated

    if must_exist and not Path(path).exists():
        raise click.ClickException(f"no store at {path!r}: {first}, or pass --db")
    try:
        with migrated(path) as db:
            yield db
    except (StoreError, *refused) as e:
        raise click.ClickException(str(e)) from None


def parse_set(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        if "=" not in item:
            raise click.BadParameter(f"{item!r}: expected NAME=VALUE", param_hint="--set")
        k, v = item.split("=", 1)
        out[k.strip()] = v
    return out


def default_confdir() -> Path:
    """Where the CA lives unless `--confdir` says, whatever the working directory: a CA is
    trusted once, so there is one. The checkout's certs/ (where scripts/trust-ca looks), or
    ~/.mockstore/certs when mockstore is installed from a package, without a checkout."""
    checkout = Path(__file__).resolve().parents[2] / "certs"
    return checkout if (checkout / "README.md").is_file() else Path.home() / ".mockstore" / "certs"


def check_port_free(host: str, port: int) -> None:
    """Refuse a port something listens on before starting, naming this command's flag
    (mitmproxy's own message suggests a `--mode` of its own command line)."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as mitmproxy binds: TIME_WAIT is no obstacle
        try:
            s.bind((host, port))
        except OSError as e:
            raise click.ClickException(
                f"cannot listen on {host or '*'}:{port}: {e.strerror}; choose another --listen-port"
            ) from None


@cli.command()
@db_option
@click.option("--mode", type=click.Choice(MODES), default="learn", show_default=True)
@click.option("--upstream", metavar="URL", help="The real API, for reverse-proxy mode (e.g. https://api.example.com).")
@click.option("--listen-host", default="127.0.0.1", show_default=True)
@click.option("--listen-port", default=8080, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for synthesis, latency and chaos.")
@click.option("--latency", type=click.Choice(LATENCIES), default="learned", show_default=True)
@click.option("--redact/--no-redact", default=True, show_default=True, help="Redact secrets before storing.")
@click.option("--max-body", default=1024 * 1024, show_default=True, type=int, help="Bytes of a body learned.")
@click.option("--upstream-timeout", default=10.0, show_default=True, type=float, help="Seconds, for failover.")
@click.option("--spec", type=click.Path(exists=True, dir_okay=False), help="OpenAPI document: serve its resources statefully.")
@click.option("--entities", type=click.Path(exists=True, dir_okay=False), help="Entity file (YAML/JSON): serve its resources statefully.")
@click.option("--stubs", type=click.Path(exists=True), help="Stubs file (YAML/JSON) or a folder of them: saved into the store, reloaded when they change.")
@click.option("--confdir", type=click.Path(file_okay=False, path_type=Path), help="Where the mitmproxy CA lives. [default: the checkout's certs/, else ~/.mockstore/certs]")
@click.option("--set", "extra", multiple=True, metavar="NAME=VALUE", help="Any other mitmproxy or mockstore option.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, MAX_WORKER + 1), help="Proxy processes sharing the port and the store (one per core).")
def serve(db_path, mode, upstream, listen_host, listen_port, seed, latency, redact, max_body, upstream_timeout, spec, entities, stubs, confdir, extra, workers):
    """Run the proxy with mockstore on a lean mitmproxy master.

    \b
    Examples:
      mockstore serve --upstream https://api.example.com        # learn, as a reverse proxy
      mockstore serve --mode mock --upstream https://api.example.com
      mockstore serve --listen-port 8080                        # regular proxy: point apps at it
      mockstore serve --mode mock --spec petstore.yaml          # a stateful mock, no real API
      mockstore serve --upstream https://api.example.com --stubs stubs/   # hand-written answers first
      mockstore serve --mode mock --upstream https://api.example.com --workers 2   # two cores
    """
    from ..options import upstream_url

    if upstream:
        try:
            upstream = upstream_url(upstream)
        except ValueError as e:
            raise click.ClickException(str(e)) from None
    if workers == 1:
        check_port_free(listen_host, listen_port)
    confdir = (confdir.expanduser() if confdir else default_confdir()).resolve()

    from ..serve import NOWHERE, run

    if upstream:
        proxy_mode = f"reverse:{upstream}"
    elif spec or entities:
        proxy_mode = NOWHERE
        mode = "mock" if mode == "learn" else mode
    else:
        proxy_mode = "regular"
    settings = {
        "mode": [proxy_mode], "listen_host": listen_host, "listen_port": listen_port, "confdir": str(confdir),
        "mock_db": db_path, "mock_mode": mode, "mock_seed": seed, "mock_latency": latency,
        "mock_redact": redact, "mock_max_body": max_body, "mock_upstream_timeout": str(upstream_timeout),
    }
    if spec:
        settings["mock_spec"] = spec
    if entities:
        settings["mock_entities"] = entities
    if stubs:
        settings["mock_stubs"] = stubs
    settings.update(parse_set(extra))
    from ..store import ReadOnlyStoreError, StoreError, probe, readonly_for

    try:
        # the store first: one that cannot be opened stops this before anything is created
        probe(settings["mock_db"], readonly=readonly_for(settings["mock_mode"]))
    except ReadOnlyStoreError as e:
        raise click.ClickException(
            f"{e}; --mode {settings['mock_mode']} writes to it: use --mode mock or replay, or a store that can be written"
        ) from None
    except StoreError as e:
        raise click.ClickException(str(e)) from None
    confdir.mkdir(parents=True, exist_ok=True)
    try:
        if workers > 1:
            from ..workers import run as run_workers

            sys.exit(run_workers(settings, workers))
        run(settings)
    except Exception as e:  # an OptionsError, a port in use: say it plainly
        raise click.ClickException(str(e)) from None


@cli.command()
@db_option
def rewind(db_path):
    """Replay recorded sequences from their first recording again, in every running proxy
    serving from this store (each one looks within a second).

    \b
    Example:
      mockstore rewind --db ./mockstore.db
    """
    if not _control(db_path, lambda c: c.rewind(), write=True):
        raise click.ClickException(f"could not write to the store {db_path}: nothing was rewound")
    click.echo("recorded sequences rewind: proxies serving from this store replay them from the start")


@cli.command()
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def endpoints(db_path, as_json):
    """The learned endpoints: template, count, p50/p95 latency, status mix.

    \b
    Example:
      mockstore endpoints --db ./mockstore.db
    """
    rows = [{k: e[k] for k in ("method", "host", "template", "count", "p50_ms", "p95_ms", "statuses")}
            for e in _control(db_path, lambda c: c.endpoints())]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no endpoints learned yet")
        return
    table = [("METHOD", "HOST", "TEMPLATE", "COUNT", "P50 ms", "P95 ms", "STATUSES")] + [
        (r["method"], r["host"], r["template"], str(r["count"]), str(r["p50_ms"]), str(r["p95_ms"]),
         " ".join(f"{k}:{v}" for k, v in r["statuses"].items()))
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


@cli.command()
@db_option
@click.argument("endpoint")
@click.option("--status", type=int, help="The response status (default: the most frequent 2xx).")
@click.option("--request", "kind_request", is_flag=True, help="The request body's schema instead.")
def schema(db_path, endpoint, status, kind_request):
    """The learned JSON schema of an endpoint ('METHOD /template', host optional).

    \b
    Examples:
      mockstore schema 'GET /users/{id}'
      mockstore schema 'POST api.example.com/users' --request
    """
    value = _control(db_path, lambda c: c.schema(endpoint, status=status, request=kind_request))
    click.echo(json.dumps(value, indent=2))


def _control(db_path: str, call, *, write: bool = False, create: bool = False):
    """Run one control (`mockstore.control`) on the store; its refusal is a one-line error.
    A control that only reads opens the store read-only: a file that is not a store is said
    to be one, not made one. `create`: a new store is made if there is none (it writes)."""
    from ..control import Control, ControlError
    from ..store import Store, StoreError

    write = write or create
    if not create and not Path(db_path).exists():
        raise click.ClickException(f"no store at {db_path}: learn some traffic first (mockstore serve)")
    try:
        store = Store(db_path, readonly=not write)
    except StoreError as e:
        raise click.ClickException(str(e)) from None
    c = Control.open(store)
    try:
        return call(c)
    except ControlError as e:
        raise click.ClickException(str(e)) from None
    finally:
        c.close()


@cli.command()
@db_option
@click.argument("mode", required=False, type=click.Choice(MODES))
@click.option("--json", "as_json", is_flag=True, help="Show {stored, running, admin} as JSON.")
def mode(db_path, mode, as_json):
    """Show or switch the mode of the proxies running on this store (within a second).

    Shown: the mode of the proxy running on the store, asked through its admin API, and the
    one stored by the last switch when the two differ (a proxy started with a --mode of its
    own since). With no proxy running, or its admin API off, the stored one alone.

    \b
    Examples:
      mockstore mode
      mockstore mode mock --db api.db
    """
    if mode is None:
        state = _control(db_path, lambda c: c.read_running_mode())
        if as_json:
            click.echo(json.dumps(state))
        elif state["running"] in (None, state["stored"]):
            click.echo(state["stored"])
        else:
            click.echo(f"{state['running']} (the proxy running on this store, admin API at {state['admin']})\n"
                       f"stored: {state['stored']} (the last switch; the proxy was started with a mode of its own since)")
        return
    _control(db_path, lambda c: c.set_mode(mode), write=True)
    click.echo(f"mode {mode}")


from . import chaos, drift, files, scenarios, stubs, vb  # noqa: E402  (they need `cli` above)

for _module in (files, drift, chaos, stubs, scenarios, vb):
    _module.register(cli)
