"""`mockstore scenario`: stored scenarios, run against a proxy on the same store, and their results."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import click

from . import store_connection

DB_OPTION = click.option("--db", default="mockstore.db", show_default=True, help="The store (default ./mockstore.db).")


@contextmanager
def _db(path: str, *, must_exist: bool = True):
    """A connection to the store for one command; a refused scenario is a one-line error."""
    from mockstore import scenarios, stubs

    refused = (scenarios.ScenarioError, stubs.StubError)
    with store_connection(path, must_exist=must_exist, first="add a scenario first", refused=refused) as db:
        yield db


def register(cli: click.Group) -> None:
    @cli.group()
    def scenario():
        """Scenarios: switch mocks, set delays, wait, and check real requests; each run is recorded.

        \b
        Example:
            mockstore scenario add slow-items.yaml
            mockstore scenario run slow-items --proxy http://127.0.0.1:8080 --junit results.xml
            mockstore scenario results slow-items
        """

    @scenario.command()
    @DB_OPTION
    @click.argument("file", type=click.Path(exists=True, dir_okay=False))
    @click.option("--replace", is_flag=True, help="Replace a stored scenario of the same name.")
    def add(db, file, replace):
        """Add a scenario from a YAML or JSON file.

        \b
        Example:
            mockstore scenario add slow-items.yaml
        """
        from mockstore import scenarios

        with _db(db, must_exist=False) as conn:
            s = scenarios.save(conn, scenarios.load_file(file), replace=replace)
        click.echo(f"added scenario {s.name} ({s.id}): {len(s.actions)} action(s)")

    @scenario.command(name="list")
    @DB_OPTION
    @click.option("--json", "as_json", is_flag=True, help="Output JSON.")
    def list_(db, as_json):
        """The stored scenarios and their status."""
        from mockstore import scenarios

        with _db(db) as conn:
            items = scenarios.all_scenarios(conn)
        if as_json:
            click.echo(json.dumps([{"id": s.id, **s.spec(), "createdAt": s.created_at, "updatedAt": s.updated_at}
                                   for s in items], indent=2))
            return
        if not items:
            click.echo("no scenarios")
        for s in items:
            click.echo(f"{s.name:<24} {s.status:<10} {len(s.actions)} action(s)  {s.description or ''}".rstrip())

    @scenario.command()
    @DB_OPTION
    @click.argument("name")
    def show(db, name):
        """One scenario, as written."""
        import yaml

        from mockstore import scenarios

        with _db(db) as conn:
            s = scenarios.get(conn, name)
        click.echo(yaml.safe_dump(s.spec(), sort_keys=False, allow_unicode=True), nl=False)

    @scenario.command()
    @DB_OPTION
    @click.argument("name")
    @click.option("--proxy", metavar="URL", help="The running proxy's URL (for requests through it).")
    @click.option("--junit", type=click.Path(dir_okay=False), help="Write the result as JUnit XML here.")
    @click.option("--insecure", is_flag=True, help="Do not verify TLS certificates.")
    def run(db, name, proxy, junit, insecure):
        """Run a scenario: prints the outcome and the failing action; exit status 1 unless SUCCESS.

        \b
        Example:
            mockstore scenario run slow-items --proxy http://127.0.0.1:8080 --junit results.xml
        """
        from mockstore import scenarios

        with _db(db) as conn:
            result = scenarios.run(conn, name, proxy=proxy, verify=not insecure)
        for a in result.actions:
            mark = "ok  " if a.passed else "FAIL"
            click.echo(f"  {mark} #{a.index} {a.label} ({a.duration_ms:.0f} ms)" + (f": {a.error}" if a.error else ""))
        click.echo(f"{result.status}: scenario {result.scenario} in {result.duration_ms:.0f} ms"
                   + (f"; {result.error}" if result.error else ""))
        if junit:
            Path(junit).write_text(scenarios.junit(result), encoding="utf-8")
        if result.status != "SUCCESS":
            raise SystemExit(1)

    @scenario.command()
    @DB_OPTION
    @click.argument("name")
    @click.option("--json", "as_json", is_flag=True, help="Output JSON, with each action's expected and actual.")
    @click.option("--limit", type=int, default=20, show_default=True)
    def results(db, name, as_json, limit):
        """The recorded runs of a scenario, newest first."""
        from mockstore import scenarios

        with _db(db) as conn:
            items = scenarios.results(conn, name, limit)
        if as_json:
            click.echo(json.dumps([r.to_dict() for r in items], indent=2, default=str))
            return
        if not items:
            click.echo(f"scenario {name} has not run yet")
        for r in items:
            click.echo(f"{r.executed_at}  {r.status:<8} {r.duration_ms:.0f} ms" + (f"  {r.error}" if r.error else ""))
