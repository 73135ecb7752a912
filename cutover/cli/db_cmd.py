from __future__ import annotations

import click

from cutover.cli.app import App, pass_app
from cutover.core.redact import redact_url

WHICH = click.Choice(["all", "autoloader", "state"])


def _targets(app: App, which: str):
    s = app.settings
    out = []
    if which in ("all", "autoloader"):
        out.append(("autoloader", s.autoloader_url))
    if which in ("all", "state"):
        out.append(("state", s.state_url))
    return out


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
    from cutover.core import db as dbm

    for tree, url in _targets(app, which):
        before = dbm.current_revision(url, tree)
        target = dbm.head_revision(tree) if revision == "head" else revision
        if dry_run:
            if before == target:
                app.echo(f"-- {tree}: already at {target}, nothing to do")
            else:
                app.echo(f"-- {tree} ({redact_url(url)}): {before or 'empty'} -> {target}")
                app.echo(dbm.upgrade(url, tree, revision, sql=True))
            continue
        dbm.upgrade(url, tree, revision)
        after = dbm.current_revision(url, tree)
        verb = "unchanged at" if before == after else f"{before or 'empty'} ->"
        app.echo(f"{tree}: {verb} {after} ({redact_url(url)})")


@db.command("downgrade")
@click.argument("revision")
@click.option("--db", "which", type=click.Choice(["autoloader", "state"]), required=True)
@click.option("--dry-run", "--sql", "dry_run", is_flag=True, help="Print the SQL that would run; change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def downgrade_cmd(app: App, revision: str, which: str, dry_run: bool, yes: bool) -> None:
    """Downgrade one DB to REVISION ('base' drops every table)."""
    from cutover.core import db as dbm

    [(tree, url)] = _targets(app, which)
    if dry_run:
        app.echo(dbm.downgrade(url, tree, revision, sql=True))
        return
    if not yes:
        click.confirm(f"downgrade the {tree} DB at {redact_url(url)} to {revision}? Data in dropped tables is lost",
                      abort=True)
    before = dbm.current_revision(url, tree)
    dbm.downgrade(url, tree, revision)
    app.echo(f"{tree}: {before or 'empty'} -> {dbm.current_revision(url, tree) or 'base'}")


@db.command("current")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def current_cmd(app: App, as_json: bool) -> None:
    """The revision each DB is at, and the head this cutover needs."""
    from cutover.core import db as dbm

    rows = [(tree, redact_url(url), dbm.current_revision(url, tree) or "empty", dbm.head_revision(tree))
            for tree, url in _targets(app, "all")]
    if as_json:
        app.json([dict(zip(("db", "url", "current", "head"), r)) for r in rows])
    else:
        app.table(rows, ("db", "url", "current", "head"))


@db.command("history")
@pass_app
def history_cmd(app: App) -> None:
    """Every migration of both trees."""
    from cutover.core import db as dbm

    rows = [(tree, rev, down or "-", doc.splitlines()[0] if doc else "")
            for tree in ("autoloader", "state") for rev, down, doc in dbm.history(tree)]
    app.table(rows, ("db", "revision", "down", "description"))
