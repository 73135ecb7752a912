"""db upgrade | downgrade | current | history (the work: cutover.commands.db)."""

from __future__ import annotations

import click

from cutover.cli.app import App, pass_app
from cutover.commands import db as C
from cutover.core.redact import redact_url

WHICH = click.Choice(["all", "autoloader", "state"])


@click.group()
def db() -> None:
    """The autoloader DB and the cutover state DB, migrated with alembic."""


@db.command("upgrade")
@click.option("--db", "which", type=WHICH, default="all", show_default=True)
@click.option("--revision", default="head", show_default=True)
@click.option("--dry-run", "--sql", "dry_run", is_flag=True, help="Print the SQL that would run; change nothing.")
@pass_app
def upgrade_cmd(app: App, which: str, revision: str, dry_run: bool) -> None:
    """Bring the schemas to REVISION (default head). Idempotent."""
    res = C.db_upgrade(app.settings, which=which, revision=revision, dry_run=dry_run)
    for c in res.changes:
        if dry_run:
            if c.sql is None:
                app.echo(f"-- {c.db}: already at {c.after}, nothing to do")
            else:
                app.echo(f"-- {c.db} ({c.url}): {c.before or 'empty'} -> {c.after}")
                app.echo(c.sql)
            continue
        verb = "unchanged at" if c.before == c.after else f"{c.before or 'empty'} ->"
        app.echo(f"{c.db}: {verb} {c.after} ({c.url})")


@db.command("downgrade")
@click.argument("revision")
@click.option("--db", "which", type=click.Choice(["autoloader", "state"]), required=True)
@click.option("--dry-run", "--sql", "dry_run", is_flag=True, help="Print the SQL that would run; change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def downgrade_cmd(app: App, revision: str, which: str, dry_run: bool, yes: bool) -> None:
    """Downgrade one DB to REVISION ('base' drops every table)."""
    if not dry_run and not yes:
        [(tree, url)] = C.db_targets(app.settings, which)
        click.confirm(f"downgrade the {tree} DB at {redact_url(url)} to {revision}? Data in dropped tables is lost",
                      abort=True)
    c = C.db_downgrade(app.settings, revision, which=which, dry_run=dry_run)
    if dry_run:
        app.echo(c.sql)
        return
    app.echo(f"{c.db}: {c.before or 'empty'} -> {c.after or 'base'}")


@db.command("current")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def current_cmd(app: App, as_json: bool) -> None:
    """The revision each DB is at, and the head this cutover needs."""
    res = C.db_current(app.settings)
    if as_json:
        app.json(res.as_dict())
    else:
        app.table([(d.db, d.url, d.current, d.head) for d in res.dbs], ("db", "url", "current", "head"))


@db.command("history")
@pass_app
def history_cmd(app: App) -> None:
    """Every migration of both trees."""
    app.table([(m.db, m.revision, m.down or "-", m.description) for m in C.db_history().migrations],
              ("db", "revision", "down", "description"))
