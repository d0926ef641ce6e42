"""`mockstore chaos`: the chaos rules kept in the store, and their switch."""

from __future__ import annotations

import json

import click

from mockstore.chaosrules import EFFECTS

from . import _control

DB_OPTION = click.option("--db", default="mockstore.db", show_default=True,
                         help="The store (default ./mockstore.db).")


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
    @click.option("--effect", required=True, type=click.Choice(list(EFFECTS)), help="What to inject.")
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
        rule = _control(db, lambda c: c.chaos_add(spec), create=True)
        click.echo(f"added chaos rule {rule['id']}: {rule['describe']}")

    @chaos.command(name="list")
    @DB_OPTION
    @click.option("--json", "as_json", is_flag=True, help="Output JSON.")
    def list_(db, as_json):
        """List the chaos rules with their counters (applied, skipped).

        \b
        Example:
            mockstore chaos list --json
        """
        state = _control(db, lambda c: c.chaos_rules(), write=True)
        if as_json:
            for r in state["rules"]:
                r.pop("describe")
            click.echo(json.dumps(state, indent=2))
            return
        click.echo(f"chaos is {'enabled' if state['enabled'] else 'DISABLED'}; {len(state['rules'])} rule(s)")
        for r in state["rules"]:
            off = "" if r["enabled"] else " (off)"
            click.echo(f"  {r['id']:<12} {r['describe']}{off}  [applied {r['applied']}, skipped {r['skipped']}; {r['source']}]")

    @chaos.command()
    @DB_OPTION
    @click.argument("rule_id")
    def rm(db, rule_id):
        """Remove one chaos rule.

        \b
        Example:
            mockstore chaos rm 2
        """
        _control(db, lambda c: c.chaos_remove(rule_id), write=True)
        click.echo(f"removed chaos rule {rule_id}")

    @chaos.command()
    @DB_OPTION
    def clear(db):
        """Remove every chaos rule.

        \b
        Example:
            mockstore chaos clear
        """
        n = _control(db, lambda c: c.chaos_clear(), create=True)
        click.echo(f"removed {n} chaos rule(s)")

    @chaos.command()
    @DB_OPTION
    @click.argument("rule_id", required=False)
    def enable(db, rule_id):
        """Turn chaos on (the rules apply again), or one rule.

        \b
        Example:
            mockstore chaos enable
            mockstore chaos enable 2
        """
        _switch(db, True, rule_id)

    @chaos.command()
    @DB_OPTION
    @click.argument("rule_id", required=False)
    def disable(db, rule_id):
        """Turn all chaos off at once, or one rule; the rules are kept.

        \b
        Example:
            mockstore chaos disable
            mockstore chaos disable 2
        """
        _switch(db, False, rule_id)


def _switch(db: str, on: bool, rule_id: str | None) -> None:
    if rule_id is None:
        _control(db, lambda c: c.chaos_enabled(on), create=True)
    else:
        _control(db, lambda c: c.chaos_rule_enabled(rule_id, on), write=True)
    click.echo(f"chaos{'' if rule_id is None else ' rule ' + rule_id} {'enabled' if on else 'disabled'}")
