"""ledger [show] ID, ledger retry ID (the work: cutover.commands.ingestions, cutover.commands.ledger)."""

from __future__ import annotations

import click

from cutover.cli.app import App, DefaultGroup, pass_app
from cutover.cli.inspect_cmd import ledger as show
from cutover.commands.ledger import ledger_retry
from cutover.core.workspace import Workspace


@click.group(cls=DefaultGroup, default="show")
def ledger() -> None:
    """The processed-file ledger of an ingestion: `ledger ID` shows it, `ledger retry ID`
    re-queues FAILED files."""


ledger.add_command(show, "show")


@ledger.command("retry")
@click.argument("ingestion_id")
@click.option("--file", "files", multiple=True, metavar="PATH", help="A FAILED file to retry (repeatable).")
@click.option("--status", type=click.Choice(["FAILED"]), help="Every FAILED file of the ingestion.")
@click.option("--namespace", type=click.Choice(["live", "shadow"]), default="live", show_default=True)
@click.option("--dry-run", is_flag=True, help="Show which files would be re-queued; change nothing.")
@click.option("--reason", default="", help="Why (recorded in the audit log).")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def retry(app: App, ingestion_id, files, status, namespace, dry_run, reason, as_json) -> None:
    """Re-queue FAILED files: the next run retries them even if their content did not change.

    A FAILED file is otherwise retried only once it changes (size or etag). The file stays FAILED
    until that run takes it over; behind the operator lock; recorded in `cutover log`.
    """
    res = ledger_retry(Workspace(app.settings), ingestion_id, files=files, status=status, namespace=namespace,
                       dry_run=dry_run, reason=reason)
    if as_json:
        app.json(res.as_dict())
        return
    if not res.files:
        app.echo(f"{ingestion_id}: no FAILED file in the {namespace} ledger: nothing to retry")
        return
    verb = "would re-queue" if dry_run else "re-queued"
    for p in res.files:
        app.echo(f"  {p}")
    app.echo(f"{ingestion_id}: {verb} {len(res.files)} FAILED file(s) in the {namespace} ledger"
             + (f" ({res.already_queued} already queued)" if res.already_queued else "")
             + ("" if dry_run else f"; the next run retries them (`cutover legacy run {ingestion_id}`)"))
    if dry_run:
        app.echo("Dry run: nothing was changed.")
