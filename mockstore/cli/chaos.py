"""`mockstore chaos`: the chaos rules kept in the store, and their switch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from mockstore.chaosrules import ChaosRules

DB_OPTION = click.option("--db", default="mockstore.db", show_default=True,
                         help="The store (default ./mockstore.db).")


@contextmanager
def _rules(db: str, *, must_exist: bool = False) -> Iterator[ChaosRules]:
    """The store's rules for one command; a refused rule is a one-line error; closed after."""
    from mockstore.chaos import compile_filter  # mitmproxy's filter language
    from mockstore.chaosrules import ChaosRuleError, ChaosRules
    from mockstore.store import Store, StoreError

    if must_exist and not Path(db).exists():
        raise click.ClickException(f"no store at {db!r}: add a rule first, or pass --db")
    try:
        store = Store(db)
    except StoreError as e:
        raise click.ClickException(str(e)) from None
    try:
        yield ChaosRules(store, filter_compiler=compile_filter)
    except ChaosRuleError as e:
        raise click.ClickException(str(e)) from None
    finally:
        store.close()


class _Effects(click.Choice):
    """The effects chaosrules knows, read when a command needs them, not when `mockstore
    --help` builds the command (chaosrules imports the store and YAML)."""

    def __init__(self):
        self.case_sensitive = True

    @property
    def choices(self):
        from mockstore.chaosrules import EFFECTS

        return tuple(EFFECTS)


def register(cli: click.Group) -> None:
    @cli.group()
    def chaos():
        """Inject latency and failures into chosen endpoints (mocked and proxied alike).

        \b
        Example:
            mockstore chaos add --endpoint 'GET /users/{id}' --effect error --status 503 -p 0.3
            mockstore chaos add --filter '~d api.example.com & ~m POST' --effect latency --ms 800
            mockstore chaos list
            mockstore chaos disable
        """

    @chaos.command()
    @DB_OPTION
    @click.option("--id", "rule_id", help="A name for the rule (default: the next number).")
    @click.option("--endpoint", help="Method and template, e.g. 'GET /users/{id}'.")
    @click.option("--method", help="Only this HTTP method.")
    @click.option("--template", help="Only this endpoint template or path ('*' globs).")
    @click.option("--host", help="Only this host ('*' globs).")
    @click.option("--filter", "flt", help="A mitmproxy filter expression, e.g. '~d example.com & ~m POST'.")
    @click.option("-p", "--probability", type=float, default=1.0, show_default=True, help="0 to 1.")
    @click.option("--effect", required=True, type=_Effects(), help="What to inject.")
    @click.option("--ms", type=float, help="latency: fixed milliseconds.")
    @click.option("--min-ms", type=float, help="latency: uniform, from.")
    @click.option("--max-ms", type=float, help="latency: uniform, to.")
    @click.option("--learned", help="latency: from the learned distribution, e.g. 'p99 x 3'.")
    @click.option("--status", type=int, help="error: the status (default 500).")
    @click.option("--body", help="error: the body (default: an error this endpoint really returned).")
    @click.option("--bps", type=float, help="slow_body: bytes per second.")
    @click.option("--seconds", type=float, help="timeout: longest hold, in seconds.")
    def add(db, rule_id, endpoint, method, template, host, flt, probability, effect, ms, min_ms,
            max_ms, learned, status, body, bps, seconds):
        """Add a chaos rule.

        \b
        Example:
            mockstore chaos add --endpoint 'GET /users/{id}' --effect latency --learned 'p99 x 3'
            mockstore chaos add --template '/orders*' --effect reset -p 0.05
            mockstore chaos add --endpoint 'GET /report' --effect slow_body --bps 2000
        """
        spec = {"id": rule_id, "endpoint": endpoint, "method": method, "template": template,
                "host": host, "filter": flt, "probability": probability, "effect": effect,
                "ms": ms, "min_ms": min_ms, "max_ms": max_ms, "learned": learned, "status": status,
                "body": body, "bytes_per_second": bps, "seconds": seconds}
        spec = {k: v for k, v in spec.items() if v is not None}
        for k in ("ms", "min_ms", "max_ms", "bytes_per_second"):
            if k in spec and float(spec[k]).is_integer():
                spec[k] = int(spec[k])
        with _rules(db) as rules:
            rule = rules.add(spec)
        click.echo(f"added chaos rule {rule.id}: {rule.describe()}")

    @chaos.command(name="list")
    @DB_OPTION
    @click.option("--json", "as_json", is_flag=True, help="Output JSON.")
    def list_(db, as_json):
        """List the chaos rules with their counters (applied, skipped).

        \b
        Example:
            mockstore chaos list --json
        """
        with _rules(db, must_exist=True) as rules:
            items, enabled = rules.list(), rules.enabled
        if as_json:
            click.echo(json.dumps({"enabled": enabled, "rules": [r.to_dict() for r in items]}, indent=2))
            return
        click.echo(f"chaos is {'enabled' if enabled else 'DISABLED'}; {len(items)} rule(s)")
        for r in items:
            click.echo(f"  {r.id:<12} {r.describe()}  [applied {r.applied}, skipped {r.skipped}; {r.source}]")

    @chaos.command()
    @DB_OPTION
    @click.argument("rule_id")
    def rm(db, rule_id):
        """Remove one chaos rule.

        \b
        Example:
            mockstore chaos rm 2
        """
        with _rules(db, must_exist=True) as rules:
            rules.remove(rule_id)
        click.echo(f"removed chaos rule {rule_id}")

    @chaos.command()
    @DB_OPTION
    def clear(db):
        """Remove every chaos rule.

        \b
        Example:
            mockstore chaos clear
        """
        with _rules(db) as rules:
            n = len(rules.list())
            rules.clear()
        click.echo(f"removed {n} chaos rule(s)")

    @chaos.command()
    @DB_OPTION
    def enable(db):
        """Turn chaos on (the rules apply again).

        \b
        Example:
            mockstore chaos enable
        """
        _switch(db, True)

    @chaos.command()
    @DB_OPTION
    def disable(db):
        """Turn all chaos off at once; the rules are kept.

        \b
        Example:
            mockstore chaos disable
        """
        _switch(db, False)


def _switch(db: str, on: bool) -> None:
    with _rules(db) as rules:
        rules.enabled = on
    click.echo(f"chaos {'enabled' if on else 'disabled'}")
