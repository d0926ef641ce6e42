"""`mockstore drift`: the contract drift alerts, and resolving them."""

from __future__ import annotations

import json
import time

import click

from . import _control

DB_HELP = "The store (default ./mockstore.db)."


def _ago(ts: float | None) -> str:
    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def register(cli: click.Group) -> None:
    @cli.group(invoke_without_command=True)
    @click.option("--db", default="mockstore.db", show_default=True, help=DB_HELP)
    @click.option("--json", "as_json", is_flag=True, help="Output JSON, one object per alert, with findings.")
    @click.option("--unresolved", is_flag=True, help="Only alerts not resolved yet.")
    @click.option("--endpoint", help="Only this endpoint, e.g. 'GET api.example.com/users/{id}'.")
    @click.pass_context
    def drift(ctx, db, as_json, unresolved, endpoint):
        """Contract drift alerts: where the real API stopped answering as it used to.

        \b
        Example:
            mockstore drift --unresolved
            mockstore drift --json | jq '.[] | select(.score >= 50)'
            mockstore drift resolve 3
        """
        if ctx.invoked_subcommand is not None:
            return
        alerts = _control(db, lambda c: c.drift_alerts(unresolved_only=unresolved, endpoint=endpoint), write=True)
        if as_json:
            click.echo(json.dumps(alerts, indent=2, default=str))
            return
        if not alerts:
            click.echo("no drift" + (" left unresolved" if unresolved else " seen"))
            return
        rows = [("ID", "SCORE", "COUNT", "STATE", "LAST SEEN", "ENDPOINT", "SUMMARY")]
        for a in alerts:
            state = a["resolution"] or "resolved" if a["resolved"] else "open"
            what = a["endpoint"] if a["kind"] == "response" else f"{a['endpoint']} (request)"
            if a["kind"] == "response":
                what += f" -> {a['status']}"
            rows.append((str(a["id"]), str(a["score"]), str(a["count"]), state, _ago(a["last_seen"]), what, a["summary"]))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        for r in rows:
            click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])

    @drift.command()
    @click.argument("alert_id", type=int)
    @click.option("--keep-old", is_flag=True,
                  help="Keep the old shape as the contract: the same drift seen again reopens the alert.")
    @click.option("--db", default="mockstore.db", show_default=True, help=DB_HELP)
    def resolve(alert_id, keep_old, db):
        """Resolve a drift alert, accepting the new shape into the baseline.

        \b
        Example:
            mockstore drift resolve 3             # the API changed on purpose
            mockstore drift resolve 3 --keep-old  # the API is wrong; keep the old contract
        """
        alert = _control(db, lambda c: c.resolve(alert_id, accept=not keep_old), write=True)
        if keep_old:
            click.echo(f"alert {alert['id']} resolved; the old shape stays the contract")
        else:
            click.echo(f"alert {alert['id']} resolved; the new shape is accepted into the baseline "
                       f"({alert['endpoint']})")
