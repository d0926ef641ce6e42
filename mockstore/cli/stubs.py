"""`mockstore stub`: hand-written stubs in the store; a running proxy on the same store
answers with a change within a second."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path

import click

from . import store_connection

DB_OPTION = click.option("--db", default="mockstore.db", show_default=True, help="The store (default ./mockstore.db).")


@contextmanager
def _db(path: str, *, must_exist: bool = True):
    """A connection to the store for one command; a refused stub is a one-line error."""
    from mockstore import stubs

    with store_connection(path, must_exist=must_exist, first="add a stub first", refused=(stubs.StubError,)) as db:
        yield db


def _read(file: str):
    """The mocks of a stubs file, a folder of them, or '-' (stdin)."""
    import yaml

    from mockstore import stubs

    try:
        if file == "-":
            try:
                return stubs.parse(yaml.safe_load(sys.stdin.read()), "<stdin>")
            except yaml.YAMLError as e:
                raise stubs.StubError(f"<stdin>: not valid YAML or JSON: {e}") from None
        return stubs.load_path(file)
    except stubs.StubError as e:
        raise click.ClickException(str(e)) from None


def register(cli: click.Group) -> None:
    @cli.group()
    def stub():
        """Hand-written stubs: when a request matches a condition, answer this.

        Stubs answer before recordings, synthesis and virtual resources, in every mode.

        \b
        Example:
            mockstore stub add stubs.yaml
            mockstore stub add --name ping --route 'GET /ping' --body '{"ok": true}'
            mockstore stub list
            mockstore stub disable items
            mockstore stub from-endpoint 'GET /users/{id}' -o users.yaml
        """

    @stub.command()
    @DB_OPTION
    @click.argument("file", required=False)
    @click.option("--name", help="Without FILE: the mock's name.")
    @click.option("--route", "route", help="Without FILE: method and path, e.g. 'GET /users/{id}'.")
    @click.option("--status", "status_code", type=int, default=200, show_default=True, help="Without FILE: the status.")
    @click.option("--body", default="", help="Without FILE: the body (templates allowed).")
    @click.option("--header", "headers", multiple=True, metavar="NAME:VALUE", help="Without FILE: a response header.")
    @click.option("--delay", type=int, default=0, help="Without FILE: the mock's responseDelay in ms.")
    def add(db, file, name, route, status_code, body, headers, delay):
        """Add the mocks of a stubs file (YAML/JSON, a folder, or - for stdin), or one simple
        mock from the options. A name already stored is refused (see `import`).

        \b
        Example:
            mockstore stub add stubs.yaml
            mockstore stub add --name ping --route 'GET /ping' --body '{"ok": true}' --header 'Content-Type: application/json'
        """
        from mockstore import stubs

        if file:
            if name or route:
                raise click.UsageError("give a FILE or --name/--route, not both")
            mocks = _read(file)
        else:
            if not name or not route:
                raise click.UsageError("give a stubs FILE, or --name and --route")
            method, _, path = route.strip().partition(" ")
            hs = {}
            for h in headers:
                k, sep, v = h.partition(":")
                if not sep:
                    raise click.BadParameter(f"{h!r}: expected NAME:VALUE", param_hint="--header")
                hs[k.strip()] = v.strip()
            raw = {"name": name, "responseDelay": delay, "routes": [{
                "method": method, "path": path.strip(), "statusCode": status_code,
                "defaultResponse": {"body": body, "headers": hs}}]}
            try:
                mocks = [stubs.validate_mock(raw)]
            except stubs.StubError as e:
                raise click.ClickException(str(e)) from None
        with _db(db, must_exist=False) as conn:
            stubs.save(conn, mocks)
        for m in mocks:
            click.echo(f"added mock {m.name} ({m.id}): {len(m.routes)} route(s)")

    @stub.command(name="import")
    @DB_OPTION
    @click.argument("file")
    @click.option("--replace/--no-replace", default=True, show_default=True,
                  help="Replace stored mocks of the same name (else refuse them).")
    def import_(db, file, replace):
        """Add or replace the mocks of a stubs file (YAML/JSON, a folder, or -).

        \b
        Example:
            mockstore stub import stubs/
        """
        from mockstore import stubs

        mocks = _read(file)
        with _db(db, must_exist=False) as conn:
            stubs.save(conn, mocks, replace=replace)
        click.echo(f"imported {len(mocks)} mock(s): {', '.join(m.name for m in mocks) or 'none'}")

    @stub.command()
    @DB_OPTION
    @click.argument("names", nargs=-1)
    @click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
    @click.option("-o", "--out", type=click.Path(dir_okay=False), help="Write to this file (default: stdout).")
    def export(db, names, fmt, out):
        """Write stored mocks (all, or these NAMES) as a stubs file, which `import` reads back.

        \b
        Example:
            mockstore stub export -o stubs.yaml
        """
        from mockstore import stubs

        with _db(db) as conn:
            mocks = stubs.load(conn)
        if names:
            missing = set(names) - {m.name for m in mocks}
            if missing:
                raise click.ClickException(f"no mock {sorted(missing)[0]!r}")
            mocks = [m for m in mocks if m.name in names]
        text = stubs.export(mocks, fmt)
        if out:
            Path(out).write_text(text, encoding="utf-8")
            click.echo(f"wrote {len(mocks)} mock(s) to {out}")
        else:
            click.echo(text, nl=False)

    @stub.command(name="list")
    @DB_OPTION
    @click.option("--json", "as_json", is_flag=True, help="Output JSON.")
    def list_(db, as_json):
        """The stored mocks: name, status, delay, routes, conditions, source.

        \b
        Example:
            mockstore stub list
        """
        from mockstore import stubs

        with _db(db) as conn:
            mocks = stubs.load(conn)
        if as_json:
            click.echo(json.dumps([m.to_dict() for m in mocks], indent=2))
            return
        if not mocks:
            click.echo("no stubs")
            return
        for m in mocks:
            conditions = sum(len(r.conditions) for r in m.routes)
            click.echo(f"{m.name:<20} {m.status:<8} delay={m.response_delay}ms routes={len(m.routes)} "
                       f"conditions={conditions} {m.source} {m.id}")
            for r in m.routes:
                click.echo(f"    {r.method} {r.path} -> {r.status_code} ({len(r.conditions)} condition(s))")

    @stub.command()
    @DB_OPTION
    @click.argument("name")
    @click.option("--json", "as_json", is_flag=True, help="Output JSON (with ids and timestamps).")
    def show(db, name, as_json):
        """One mock, as written in a stubs file (or JSON with ids and timestamps).

        \b
        Example:
            mockstore stub show items
        """
        from mockstore import stubs

        with _db(db) as conn:
            mock = next((m for m in stubs.load(conn) if name in (m.name, m.id)), None)
        if mock is None:
            raise click.ClickException(f"no mock {name!r}")
        if as_json:
            click.echo(json.dumps(mock.to_dict(), indent=2))
        else:
            click.echo(stubs.export([mock]), nl=False)

    @stub.command()
    @DB_OPTION
    @click.argument("name")
    def rm(db, name):
        """Remove a mock with its routes and conditions.

        \b
        Example:
            mockstore stub rm items
        """
        from mockstore import stubs

        with _db(db) as conn:
            removed = stubs.remove(conn, name)
        click.echo(f"removed mock {removed}")

    @stub.command()
    @DB_OPTION
    @click.argument("name")
    def enable(db, name):
        """Make a mock ACTIVE (it answers again).

        \b
        Example:
            mockstore stub enable items
        """
        from mockstore import stubs

        with _db(db) as conn:
            click.echo(f"mock {stubs.update(conn, name, status='ACTIVE')} is ACTIVE")

    @stub.command()
    @DB_OPTION
    @click.argument("name")
    def disable(db, name):
        """Make a mock INACTIVE (kept, not answering).

        \b
        Example:
            mockstore stub disable items
        """
        from mockstore import stubs

        with _db(db) as conn:
            click.echo(f"mock {stubs.update(conn, name, status='INACTIVE')} is INACTIVE")

    @stub.command(name="from-endpoint")
    @DB_OPTION
    @click.argument("endpoint")
    @click.option("--name", help="The mock's name (default: from the endpoint).")
    @click.option("--host", help="Only recordings of this host (host[:port]).")
    @click.option("--limit", type=int, default=50, show_default=True, help="Most conditions (distinct path values).")
    @click.option("-o", "--out", type=click.Path(dir_okay=False), help="Write the stubs file here (default: stdout).")
    @click.option("--add", "add_", is_flag=True, help="Also add it to the store.")
    def from_endpoint(db, endpoint, name, host, limit, out, add_):
        """Write an editable stub from the recordings of an endpoint: the last 2xx as its
        default answer, one condition per distinct value recorded for its last {param}.

        \b
        Example:
            mockstore stub from-endpoint 'GET /users/{id}' -o users.yaml
        """
        from mockstore import recordings, stubs

        method, _, template = endpoint.strip().partition(" ")
        template = template.strip()
        if not method or not template.startswith("/"):
            raise click.BadParameter(f"{endpoint!r}: expected 'METHOD /path/{{param}}'", param_hint="ENDPOINT")
        name = name or (method.lower() + "-" + "-".join(
            s.strip("{}") for s in template.strip("/").split("/") if s) or method.lower())
        with _db(db) as conn:
            mock = stubs.from_exchanges(name, method, template, recordings.of_method(conn, method.upper(), host), limit=limit)
            stubs.validate_mock(mock.spec())  # what it wrote reads back
            if add_:
                stubs.save(conn, [mock])
        text = stubs.export([mock])
        if out:
            Path(out).write_text(text, encoding="utf-8")
            click.echo(f"wrote mock {name} ({sum(len(r.conditions) for r in mock.routes)} condition(s)) to {out}")
        else:
            click.echo(text, nl=False)
        if add_:
            click.echo(f"added mock {name} to {db}", err=not out)
