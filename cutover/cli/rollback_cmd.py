"""`cutover rollback`: parse, call cutover.commands.rollback, render."""

from __future__ import annotations

from pathlib import Path

import click

from cutover.cli.app import App, command_started_at, exit_with, pass_app
from cutover.commands import rollback as C
from cutover.core.workspace import Workspace


@click.command()
@click.argument("ingestion_ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every ingestion in SHADOW, CUTOVER or DONE.")
@click.option("--wave", "wave_no", type=int, help="The ingestions of this wave of --plan.")
@click.option("--plan", "plan_file", type=click.Path(dir_okay=False, path_type=Path), help="The plan of --wave.")
@click.option("--cancel-running", is_flag=True,
              help="Also cancel the in-flight Prefect flow runs (their claims are released).")
@click.option("--cancel-timeout", default="2m", show_default=True, help="How long to wait for cancelled runs to end.")
@click.option("--reason", default="", help="Why (recorded in the audit log).")
@click.option("--dry-run", is_flag=True, help="Show the steps and the missed intervals; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="The report (steps done, missed intervals) as JSON on stdout.")
@pass_app
def rollback(app: App, ingestion_ids, all_, wave_no, plan_file, cancel_running, cancel_timeout, reason, dry_run,
             as_json) -> None:
    """Give ingestions back to the legacy orchestrator: Prefect deployments paused (live and shadow),
    legacy job resumed at its next fire time, batch flag cleared, state ROLLED_BACK.

    Works with the Prefect API down: the legacy side is resumed, the Prefect steps stay FAILED in
    the journal and the command exits 3; run the same command again once the API is back to
    complete it. Prints the legacy fire times missed since the cutover (candidates for a backfill).
    Exit 0 done, 1 refused (lock, active pause), 2 usage, 3 some steps not done.
    """
    echo = app.info if as_json else app.echo
    res = C.rollback(Workspace(app.settings), ingestion_ids, all_=all_, wave=wave_no, plan_file=plan_file,
                     cancel_running=cancel_running, cancel_timeout=cancel_timeout, reason=reason, dry_run=dry_run,
                     echo=echo)
    if res.error is not None:
        for line in res.report_lines():
            echo(line)
        if as_json:
            app.json(res.as_dict())
        raise res.error
    if not res.report["ingestions"]:
        if as_json:
            app.json(res.as_dict())
        else:
            app.echo("nothing to roll back")
        return
    for line in res.report_lines():
        echo(line)
    if as_json:
        app.json(res.as_dict())
    elif not dry_run:
        app.echo(f"rolled back: {', '.join(res.report['ingestions'])}")
