"""ingestion add | list | show | export | schema | remove (the work: cutover.commands.ingestions)."""

from __future__ import annotations

from pathlib import Path

import click

from cutover.cli.app import App, pass_app
from cutover.commands import ingestions as C
from cutover.core.workspace import Workspace


@click.group()
def ingestion() -> None:
    """Ingestions: source files -> Iceberg table, on a legacy schedule."""


def _print_actions(app: App, res: C.IngestionChanges) -> None:
    prefix = "would " if res.dry_run else ""
    for action, ing in res.actions:
        app.echo(f"{prefix}{action}: {ing.id} ({ing.format} {ing.public_dict()['source_uri']}/{ing.pattern} -> {ing.table})")
    for action, job in res.jobs:
        app.echo(f"{prefix}{action}: {job.id} ({job.kind} {job.describe_target()})")
    n = res.counts()
    app.echo(f"{'Dry run: ' if res.dry_run else ''}{n['create']} to create, {n['update']} to update, "
             f"{n['unchanged']} unchanged")


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
    res = C.ingestion_add(Workspace(app.settings), ingestion_id, from_file=from_file, source=source, pattern=pattern,
                          fmt=fmt, table=table, schedule=schedule, tz=tz, size_class=size_class, priority=priority,
                          key_columns=key_columns, owner=owner, name=name, replace=replace, dry_run=dry_run)
    _print_actions(app, res)


@ingestion.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def list_cmd(app: App, as_json: bool) -> None:
    """Every ingestion (credentials never shown)."""
    res = C.ingestion_list(Workspace(app.settings))
    if as_json:
        app.json(res.as_dict())
        return
    if not res.items and not res.jobs:
        app.echo("no ingestions yet: add one with `cutover ingestion add` or `--from-file`")
        return
    app.table([(i.id, "ingestion", f"{i.format} -> {i.table}", i.public_dict()["schedule_text"], i.schedule_timezone,
                i.work_queue, "paused" if i.batch_paused else "", i.owner or "") for i in res.items]
              + [(j.id, j.kind, j.describe_target(), j.public_dict()["schedule_text"], j.schedule_timezone, "",
                  "paused" if j.paused else "", j.owner or "") for j in res.jobs],
              ("id", "kind", "target", "schedule", "tz", "queue", "legacy", "owner"))


@ingestion.command("show")
@click.argument("ingestion_id")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def show(app: App, ingestion_id: str, as_json: bool) -> None:
    """One ingestion in full (credentials masked)."""
    d = C.ingestion_show(Workspace(app.settings), ingestion_id)
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
    app.echo(C.ingestion_export(Workspace(app.settings), fmt))


@ingestion.command("schema")
@click.option("--json", "as_json", is_flag=True, help="The JSON Schema (the default output).")
@click.option("--markdown", is_flag=True, help="The field tables of docs/definitions.md instead.")
@click.option("--plan", "plan", is_flag=True, help="The schema of a saved plan file instead.")
@pass_app
def schema(app: App, as_json: bool, markdown: bool, plan: bool) -> None:
    """The JSON Schema of a definition file (--from-file), from the typed models."""
    out = C.definition_schema("plan" if plan else "definitions", "markdown" if markdown and not as_json else "json")
    if isinstance(out, str):
        app.echo(out)
    else:
        app.json(out)


@ingestion.command("remove")
@click.argument("ingestion_ids", nargs=-1, required=True)
@click.option("--dry-run", is_flag=True, help="Show what would be removed; change nothing.")
@pass_app
def remove(app: App, ingestion_ids, dry_run: bool) -> None:
    """Remove ingestions and their legacy jobs. Runs and ledger rows are kept as history."""
    res = C.ingestion_remove(Workspace(app.settings), ingestion_ids, dry_run=dry_run,
                             echo=lambda iid: app.echo(f"removed: {iid} (runs and ledger kept)"))
    if res.dry_run:
        for iid in res.ids:
            app.echo(f"would remove: {iid} (and its APScheduler job, if any; runs and ledger kept)")
