"""`mockstore import`, `export-openapi`, `export-har`: traffic and knowledge in and out of files."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys

import click

from . import _control, db_option, open_store


def register(cli: click.Group) -> None:
    cli.add_command(import_cmd)
    cli.add_command(export_openapi)
    cli.add_command(export_har)
    cli.add_command(rebuild_cmd)


class _EchoWarnings(logging.Handler):
    """Show the library's warnings (skipped entries) to the person running the command."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"warning: {record.getMessage()}", err=True)


@click.command(name="import")
@db_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--max-body", default=1024 * 1024, show_default=True, type=int,
              help="Bodies larger than this are learned for statistics only, not recorded.")
@click.option("--redact/--no-redact", default=True, show_default=True, help="Redact secrets before storing.")
def import_cmd(db_path, file, max_body, redact):
    """Learn from a HAR file or a mitmproxy flow file (told apart by content).

    \b
    Examples:
      mockstore import session.har                 # saved from a browser's DevTools
      mitmdump -w traffic.flows ... && mockstore import traffic.flows --db api.db
    """
    from .. import imports

    try:
        kind = imports.detect(file)  # before the store is opened: a wrong file makes no store
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    handler = _EchoWarnings(logging.WARNING)
    loggers = [logging.getLogger(n) for n in ("mockstore.imports", "mockstore.har")]
    for lg in loggers:
        lg.addHandler(handler)
    size = os.path.getsize(file)
    shown = size > 1024 * 1024
    bar = click.progressbar(length=size, label=f"importing {os.path.basename(file)}", file=sys.stderr) \
        if shown else contextlib.nullcontext()
    try:
        with bar:
            progress = (lambda done: bar.update(done - bar.pos)) if shown else None
            result = _control(db_path, lambda c: c.import_file(file, limit=max_body, redacting=redact,
                                                               progress=progress), create=True)
    finally:
        for lg in loggers:
            lg.removeHandler(handler)
    click.echo(f"imported {result['imported']} exchanges from {file} ({'HAR' if kind == 'har' else 'mitmproxy flows'})")
    if result["learned"]:
        click.echo(f"{len(result['learned'])} endpoints learned:")
        for ep in result["learned"]:
            click.echo(f"  {ep['method']} {ep['host']}{ep['template']}  (+{ep['added']})")


@click.command(name="export-openapi")
@db_option
@click.option("-o", "--output", required=True, type=click.File("w", encoding="utf-8"), help="The file to write ('-' for stdout).")
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), help="Default: from the file name, else yaml.")
@click.option("--title", default="Learned API", show_default=True)
@click.option("--api-version", default="1.0.0", show_default=True, help="info.version of the document.")
def export_openapi(db_path, output, fmt, title, api_version):
    """Write what was learned as an OpenAPI 3.1 document.

    \b
    Examples:
      mockstore export-openapi -o api.yaml
      mockstore export-openapi -o - --format json --db api.db | jq .paths
    """
    doc = _control(db_path, lambda c: c.openapi(c.read_openapi_inputs(), title=title, version=api_version))
    if fmt is None:
        fmt = "json" if getattr(output, "name", "").endswith(".json") else "yaml"
    if fmt == "json":
        text = json.dumps(doc, indent=2, ensure_ascii=False)
        # a path byte that is not UTF-8 is a lone surrogate here: written as its JSON escape (as YAML does)
        output.write(text.encode("utf-8", "backslashreplace").decode("utf-8") + "\n")
    else:
        import yaml

        yaml.safe_dump(doc, output, sort_keys=False, allow_unicode=True)
    if output.name != "<stdout>":
        from ..openapi import METHODS

        ops = sum(1 for item in doc["paths"].values() for k in item if k in METHODS)
        click.echo(f"wrote {len(doc['paths'])} paths, {ops} operations to {output.name}")


@click.command(name="export-har")
@db_option
@click.option("-o", "--output", required=True, type=click.File("w", encoding="utf-8"), help="The file to write ('-' for stdout).")
def export_har(db_path, output):
    """Write the recorded exchanges as a HAR 1.2 file (opens in DevTools and HAR viewers).

    \b
    Examples:
      mockstore export-har -o recorded.har
      mockstore export-har -o - --db api.db | jq '.log.entries | length'
    """
    n = _control(db_path, lambda c: c.read_har(output))
    if output.name != "<stdout>":
        click.echo(f"wrote {n} exchanges to {output.name}")


@click.command(name="rebuild")
@db_option
def rebuild_cmd(db_path):
    """Learn the whole model (endpoints, statistics, schemas, templates) again from the
    recorded exchanges. Stop the proxy first: it would persist its own model over it.

    \b
    Opening a store already learns again what a killed proxy had stored but not counted;
    this is for a model that is damaged, or was learned with other settings.
    Example:
      mockstore rebuild --db api.db
    """
    from ..rebuild import rebuild

    store = open_store(db_path)
    try:
        n, endpoints = rebuild(store)
    finally:
        store.close()
    click.echo(f"learned {n} recorded exchanges again: {endpoints} endpoints")
