"""The `mockstore` command line: each command a thin wrapper over one library call.

Command groups that belong to one part of the library live in their own module here
(`cli/drift.py`, `cli/chaos.py`, `cli/vb.py`, `cli/files.py`) and add themselves with
`register(cli)`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .. import __version__
from ..model import Model
from ..store import Store, StoreError, connect

DEFAULT_DB = "./mockstore.db"
CERTS = Path("certs")

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
    try:
        return Store(db_path)
    except StoreError as e:
        raise click.ClickException(str(e)) from None


def load_model(db_path: str) -> Model:
    if not Path(db_path).exists():
        raise click.ClickException(f"no store at {db_path}: learn some traffic first (mockstore serve)")
    try:
        return Model.load(connect(db_path, readonly=True))
    except StoreError as e:
        raise click.ClickException(str(e)) from None


def parse_set(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        if "=" not in item:
            raise click.BadParameter(f"{item!r}: expected NAME=VALUE", param_hint="--set")
        k, v = item.split("=", 1)
        out[k.strip()] = v
    return out


@cli.command()
@db_option
@click.option("--mode", type=click.Choice(["learn", "mock", "failover", "replay"]), default="learn", show_default=True)
@click.option("--upstream", metavar="URL", help="The real API, for reverse-proxy mode (e.g. https://api.example.com).")
@click.option("--listen-host", default="127.0.0.1", show_default=True)
@click.option("--listen-port", default=8080, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for synthesis, latency and chaos.")
@click.option("--latency", type=click.Choice(["learned", "none"]), default="learned", show_default=True)
@click.option("--redact/--no-redact", default=True, show_default=True, help="Redact secrets before storing.")
@click.option("--max-body", default=1024 * 1024, show_default=True, type=int, help="Bytes of a body learned.")
@click.option("--upstream-timeout", default=10.0, show_default=True, type=float, help="Seconds, for failover.")
@click.option("--spec", type=click.Path(exists=True, dir_okay=False), help="OpenAPI document: serve its resources statefully.")
@click.option("--entities", type=click.Path(exists=True, dir_okay=False), help="Entity file (YAML/JSON): serve its resources statefully.")
@click.option("--confdir", default=str(CERTS), show_default=True, help="Where the mitmproxy CA lives.")
@click.option("--set", "extra", multiple=True, metavar="NAME=VALUE", help="Any other mitmproxy or mockstore option.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 16), help="Proxy processes sharing the port and the store (one per core).")
def serve(db_path, mode, upstream, listen_host, listen_port, seed, latency, redact, max_body, upstream_timeout, spec, entities, confdir, extra, workers):
    """Run the proxy with mockstore on a lean mitmproxy master.

    \b
    Examples:
      mockstore serve --upstream https://api.example.com        # learn, as a reverse proxy
      mockstore serve --mode mock --upstream https://api.example.com
      mockstore serve --listen-port 8080                        # regular proxy: point apps at it
      mockstore serve --mode mock --spec petstore.yaml          # a stateful mock, no real API
      mockstore serve --mode mock --upstream https://api.example.com --workers 2   # two cores
    """
    from ..serve import NOWHERE, run

    if upstream:
        proxy_mode = f"reverse:{upstream}"
    elif spec or entities:
        proxy_mode = NOWHERE
        mode = "mock" if mode == "learn" else mode
    else:
        proxy_mode = "regular"
    Path(confdir).mkdir(parents=True, exist_ok=True)
    settings = {
        "mode": [proxy_mode], "listen_host": listen_host, "listen_port": listen_port, "confdir": confdir,
        "mock_db": db_path, "mock_mode": mode, "mock_seed": seed, "mock_latency": latency,
        "mock_redact": redact, "mock_max_body": max_body, "mock_upstream_timeout": str(upstream_timeout),
    }
    if spec:
        settings["mock_spec"] = spec
    if entities:
        settings["mock_entities"] = entities
    settings.update(parse_set(extra))
    try:
        if workers > 1:
            from ..workers import run as run_workers

            sys.exit(run_workers(settings, workers))
        run(settings)
    except Exception as e:  # an OptionsError, a port in use: say it plainly
        raise click.ClickException(str(e)) from None


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


def _control(db_path: str, call):
    """Run one control (`mockstore.control`) on the store; its refusal is a one-line error."""
    from ..control import Control, ControlError

    if not Path(db_path).exists():
        raise click.ClickException(f"no store at {db_path}: learn some traffic first (mockstore serve)")
    c = Control.open(open_store(db_path))
    try:
        return call(c)
    except ControlError as e:
        raise click.ClickException(str(e)) from None
    finally:
        c.close()


@cli.command()
@db_option
@click.argument("mode", required=False, type=click.Choice(["learn", "mock", "failover", "replay"]))
def mode(db_path, mode):
    """Show or switch the mode of the proxies running on this store (within a second).

    \b
    Examples:
      mockstore mode
      mockstore mode mock --db api.db
    """
    if mode is None:
        click.echo(_control(db_path, lambda c: c.mode()))
        return
    _control(db_path, lambda c: c.set_mode(mode))
    click.echo(f"mode {mode}")


from . import chaos, drift, files, vb  # noqa: E402  (they need `cli` above)

for _module in (files, drift, chaos, vb):
    _module.register(cli)
