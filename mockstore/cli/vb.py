"""Command line for the virtual backend: resources, entity files, seeding, snapshots, reset.

Each command is a thin wrapper over one library call in `mockstore.vb`; the lead's CLI
calls `register(cli)` to add them.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import click

from . import _control

# The library (mockstore.vb imports faker, jsonschema, YAML) is imported by each command when
# it runs, so that building the command line for `mockstore --help` stays light.

DB = click.option("--db", default="mockstore.db", show_default=True, type=click.Path(dir_okay=False),
                  help="The store file.")


def _sources(f):
    for opt in reversed([
        click.option("--spec", default="", help="OpenAPI 3.x / Swagger 2.0 file."),
        click.option("--entities", default="", help="Entity file (YAML or JSON)."),
        click.option("--learned", is_flag=True, help="Include resources inferred from learned traffic."),
        click.option("--storage", default="sqlite", show_default=True,
                     type=click.Choice(["sqlite", "json", "memory"]), help="Where virtual rows live."),
        click.option("--vb-file", default="", help="JSON storage file (with --storage json)."),
        click.option("--seed", default=0, show_default=True, type=int, help="Seed for generated data."),
    ]):
        f = opt(f)
    return f


def _opts(spec, entities, learned, storage, vb_file) -> dict:
    return {"mock_spec": spec, "mock_entities": entities, "mock_vb_learned": learned,
            "mock_vb_storage": storage, "mock_vb_file": vb_file, "mock_vb_sweep": 0}


def _open(db, spec, entities, learned, storage, vb_file, seed):
    from mockstore.vb import VirtualBackend
    from mockstore.vb.model import ModelError

    try:
        vb = VirtualBackend.from_options(_opts(spec, entities, learned, storage, vb_file), db, seed)
    except (ValueError, ModelError) as e:
        raise click.ClickException(str(e)) from None
    if vb is None:
        raise click.ClickException("no resources: give --spec FILE, --entities FILE or --learned")
    return vb


@contextmanager
def _plain_errors():
    """What the library refuses, said as a one-line error, not a traceback."""
    from mockstore.vb.model import ModelError
    from mockstore.vb.snapshots import SnapshotError

    try:
        yield
    except (ValueError, ModelError, SnapshotError) as e:
        raise click.ClickException(str(e)) from None


@contextmanager
def _backend(db, spec, entities, learned, storage, vb_file, seed):
    vb = _open(db, spec, entities, learned, storage, vb_file, seed)
    try:
        with _plain_errors():
            yield vb
    finally:
        vb.close()


def register(cli: click.Group) -> None:
    @cli.group()
    def resources():
        """Virtual resources: what the virtual backend would serve."""

    @resources.command("list")
    @DB
    @_sources
    def resources_list(db, spec, entities, learned, storage, vb_file, seed):
        """List resources.

        Example: mockstore resources list --spec petstore.yaml
        """
        model = _model(db, spec, entities, learned)
        for r in model.resources.values():
            click.echo(f"{r.name}\t{r.prefixes[0]}{r.path}\tpk={r.pk}\t{len(r.fields)} fields\t{r.source}")

    @resources.command("show")
    @click.argument("name")
    @DB
    @_sources
    def resources_show(name, db, spec, entities, learned, storage, vb_file, seed):
        """Show one resource: fields, keys, references, why it exists.

        Example: mockstore resources show pets --spec petstore.yaml
        """
        import yaml

        model = _model(db, spec, entities, learned)
        if name not in model.resources:
            raise click.ClickException(f"no resource {name!r}; known: {', '.join(model.resources) or 'none'}")
        click.echo(yaml.safe_dump(model.resources[name].describe(), sort_keys=False, allow_unicode=True))

    @resources.command("infer")
    @DB
    def resources_infer(db):
        """Show the resources learned traffic implies, and why.

        Example: mockstore resources infer --db mockstore.db
        """
        from mockstore.vb.infer import infer

        if not Path(db).exists():
            raise click.ClickException(f"no store at {db}")
        try:
            model, notes = infer(db)
        except ValueError as e:
            raise click.ClickException(str(e)) from None
        for r in model.resources.values():
            click.echo(f"{r.name} ({r.path}, pk {r.pk}, {len(r.fields)} fields, {len(r.seed_rows)} seed rows)")
            for why in r.why:
                click.echo(f"  - {why}")
        for note in notes:
            click.echo(f"skipped: {note}")

    @cli.group()
    def entity():
        """Entity files: resources declared by hand."""

    @entity.command("create")
    @click.argument("name")
    @click.option("--fields", required=True, help="name:type pairs, comma-separated.")
    @click.option("--file", "path", default="entities.yaml", show_default=True, help="Entity file to add to.")
    def entity_create(name, fields, path):
        """Add a resource to an entity file (created if missing).

        Example: mockstore entity create users --fields id:integer,name:string,email:email
        """
        from mockstore.vb.entities import add_entity

        with _plain_errors():
            add_entity(path, name, fields)
        click.echo(f"{name} added to {path}")

    @cli.command()
    @click.argument("file", type=click.Path(exists=True, dir_okay=False))
    @DB
    @_sources
    def seed(file, db, spec, entities, learned, storage, vb_file, seed):
        """Load rows from a JSON or YAML file ({resource: [rows]}) into the data and the seeded state.

        Example: mockstore seed fixtures.yaml --entities entities.yaml
        """
        with _backend(db, spec, entities, learned, storage, vb_file, seed) as vb:
            n = vb.seed_file(file)
        click.echo(f"{n} rows seeded")

    @cli.command()
    @DB
    @_sources
    def reset(db, spec, entities, learned, storage, vb_file, seed):
        """Reset the virtual data to its seeded state.

        Example: mockstore reset --spec petstore.yaml
        """
        with _backend(db, spec, entities, learned, storage, vb_file, seed) as vb:
            _vb_control(vb).reset()
        click.echo("virtual data reset")

    @cli.group()
    def snapshot():
        """Named copies of the virtual data."""

    @snapshot.command("create")
    @click.argument("name")
    @click.option("--description", default="", help="What this state is for.")
    @DB
    @_sources
    def snapshot_create(name, description, db, spec, entities, learned, storage, vb_file, seed):
        """Save the current data under a name.

        Example: mockstore snapshot create before-tests --description "clean" --spec petstore.yaml
        """
        with _backend(db, spec, entities, learned, storage, vb_file, seed) as vb:
            s = _vb_control(vb).snapshot_create(name, description)
        click.echo(f"snapshot {s['name']!r} created ({s['rows']} rows)")

    @snapshot.command("list")
    @DB
    def snapshot_list(db):
        """List snapshots.

        Example: mockstore snapshot list
        """
        for s in _control(db, lambda c: c.read_snapshots(), write=True):
            click.echo(f"{s['name']}\t{s['rows']} rows\t{s['description']}")

    @snapshot.command("restore")
    @click.argument("name")
    @DB
    @_sources
    def snapshot_restore(name, db, spec, entities, learned, storage, vb_file, seed):
        """Replace the data with a snapshot.

        Example: mockstore snapshot restore before-tests --spec petstore.yaml
        """
        with _backend(db, spec, entities, learned, storage, vb_file, seed) as vb:
            _vb_control(vb).snapshot_restore(name)
        click.echo(f"snapshot {name!r} restored")

    @snapshot.command("delete")
    @click.argument("name")
    @DB
    def snapshot_delete(name, db):
        """Delete a snapshot.

        Example: mockstore snapshot delete before-tests
        """
        _control(db, lambda c: c.snapshot_delete(name), write=True)
        click.echo(f"snapshot {name!r} deleted")

    @snapshot.command("save")
    @click.argument("name")
    @click.argument("file", type=click.Path(dir_okay=False))
    @DB
    def snapshot_save(name, file, db):
        """Write a snapshot to a JSON file.

        Example: mockstore snapshot save before-tests before-tests.json
        """
        _control(db, lambda c: c.snapshot_save(name, file), write=True)
        click.echo(f"snapshot {name!r} saved to {file}")

    @snapshot.command("load")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False))
    @click.option("--name", default=None, help="Store it under this name (default: the name in the file).")
    @DB
    def snapshot_load(file, name, db):
        """Read a snapshot file into the store (restore it with `snapshot restore`).

        Example: mockstore snapshot load before-tests.json --name baseline
        """
        s = _control(db, lambda c: c.snapshot_load(file, name), write=True)
        click.echo(f"snapshot {s['name']!r} loaded ({s['rows']} rows)")


def _model(db, spec, entities, learned):
    from mockstore.vb import build_model
    from mockstore.vb.model import ModelError

    try:
        model = build_model({"mock_spec": spec, "mock_entities": entities, "mock_vb_learned": learned},
                            db if Path(db).exists() else None)
    except (ValueError, ModelError) as e:
        raise click.ClickException(str(e)) from None
    if model is None:
        raise click.ClickException("no resources: give --spec FILE, --entities FILE or --learned")
    return model


def _vb_control(vb):
    """The control surface over one virtual backend (snapshots and reset reach running proxies)."""
    from mockstore.control import Control

    return Control(None, vb=vb)
