from __future__ import annotations

from pathlib import Path

import click

from cutover.cli.app import App, pass_app
from cutover.core.errors import InputError
from cutover.core.workspace import Workspace


@click.group()
def ingestion() -> None:
    """Ingestions: source files -> Iceberg table, on a legacy schedule."""


def _print_actions(app: App, actions, *, dry_run: bool) -> None:
    prefix = "would " if dry_run else ""
    for action, ing in actions:
        app.echo(f"{prefix}{action}: {ing.id} ({ing.format} {ing.public_dict()['source_uri']}/{ing.pattern} -> {ing.table})")
    n = {a: sum(1 for x, _ in actions if x == a) for a in ("create", "update", "unchanged")}
    app.echo(f"{'Dry run: ' if dry_run else ''}{n['create']} to create, {n['update']} to update, {n['unchanged']} unchanged")


@ingestion.command("add")
@click.argument("ingestion_id", required=False)
@click.option("--from-file", "from_file", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML or JSON file with one or many ingestions.")
@click.option("--source", help="Local directory or fsspec URL (s3://bucket/prefix).")
@click.option("--pattern", default="*", show_default=True, help="Glob pattern below the source.")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl", "json", "parquet"]))
@click.option("--table", help="Destination Iceberg table, namespace.table.")
@click.option("--schedule", help="'hourly :15', 'daily 02:00', 'weekly mon 06:00', 'cron 0 2 * * *', "
              "a JSON APScheduler trigger spec, or 'manual'.")
@click.option("--timezone", "tz", default="UTC", show_default=True)
@click.option("--size-class", type=click.Choice(["small", "medium", "large"]), default="small", show_default=True)
@click.option("--priority", type=click.Choice(["normal", "high"]), default="normal", show_default=True)
@click.option("--key-columns", help="Comma-separated key columns for data-quality checks.")
@click.option("--owner")
@click.option("--name")
@click.option("--replace", is_flag=True, help="Update ingestions that already exist with another definition.")
@click.option("--dry-run", is_flag=True, help="Validate and show what would change; write nothing.")
@pass_app
def add(app: App, ingestion_id, from_file, source, pattern, fmt, table, schedule, tz, size_class, priority,
        key_columns, owner, name, replace, dry_run) -> None:
    """Add ingestions, from options or --from-file (all or nothing)."""
    from cutover.core.records.ingestions import load_definitions, validate
    from cutover.core.schedule.triggers import parse_schedule_text

    if from_file:
        if ingestion_id or source or table:
            raise InputError("--from-file cannot be combined with an id or --source/--table", fix="use one or the other")
        items = load_definitions(from_file)
    else:
        if not ingestion_id:
            raise InputError("no ingestion id given", fix="cutover ingestion add ID --source DIR --format csv --table ns.t")
        items = [validate({
            "id": ingestion_id, "name": name, "source_uri": source, "pattern": pattern, "format": fmt, "table": table,
            "schedule": parse_schedule_text(schedule) if schedule else None, "timezone": tz,
            "size_class": size_class, "priority": priority, "key_columns": key_columns, "owner": owner,
        })]
    ws = Workspace(app.settings)
    if dry_run:
        if not ws.settings.is_embedded_autoloader or ws.settings.home.joinpath("autoloader.db").exists():
            actions = ws.ingestions.plan_upsert(items)
        else:  # fresh embedded workspace: do not create the DB just to answer a dry run
            actions = [("create", i) for i in items]
        _print_actions(app, actions, dry_run=True)
        return
    actions = ws.ingestions.upsert(items, replace_existing=replace)
    _print_actions(app, actions, dry_run=False)


@ingestion.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def list_cmd(app: App, as_json: bool) -> None:
    """Every ingestion (credentials never shown)."""
    items = Workspace(app.settings).ingestions.list()
    if as_json:
        app.json([i.public_dict() for i in items])
        return
    if not items:
        app.echo("no ingestions yet: add one with `cutover ingestion add` or `--from-file`")
        return
    app.table([(i.id, i.format, i.table, i.public_dict()["schedule_text"], i.schedule_timezone, i.work_queue,
                "paused" if i.batch_paused else "", i.owner or "") for i in items],
              ("id", "format", "table", "schedule", "tz", "queue", "batch", "owner"))


@ingestion.command("show")
@click.argument("ingestion_id")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def show(app: App, ingestion_id: str, as_json: bool) -> None:
    """One ingestion in full (credentials masked)."""
    ing = Workspace(app.settings).ingestions.get(ingestion_id)
    d = ing.public_dict()
    if as_json:
        app.json(d)
        return
    for k, v in d.items():
        app.echo(f"{k + ':':<24}{v}")


@ingestion.command("export")
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
@pass_app
def export(app: App, fmt: str) -> None:
    """Print every definition in the --from-file form (credentials masked)."""
    items = [i.definition() for i in Workspace(app.settings).ingestions.list()]
    if fmt == "json":
        app.json({"ingestions": items})
    else:
        import yaml

        app.echo(yaml.safe_dump({"ingestions": items}, sort_keys=False).rstrip())


@ingestion.command("remove")
@click.argument("ingestion_ids", nargs=-1, required=True)
@click.option("--dry-run", is_flag=True, help="Show what would be removed; change nothing.")
@pass_app
def remove(app: App, ingestion_ids, dry_run: bool) -> None:
    """Remove ingestions and their legacy jobs. Runs and ledger rows are kept as history."""
    ws = Workspace(app.settings)
    items = [ws.ingestions.get(i) for i in ingestion_ids]  # all exist, or nothing happens
    for ing in items:
        if dry_run:
            app.echo(f"would remove: {ing.id} (and its APScheduler job, if any; runs and ledger kept)")
            continue
        from legacy.apscheduler.scheduler import JobSync

        JobSync(ws.settings).remove(ing.id)
        ws.ingestions.remove(ing.id)
        app.echo(f"removed: {ing.id} (runs and ledger kept)")
