"""shadow start | stop | run --once (the work: cutover.commands.migration)."""

from __future__ import annotations

import click

from cutover.cli.app import App, exit_with, pass_app
from cutover.commands import migration as C
from cutover.commands import verdicts as P
from cutover.core.errors import InputError
from cutover.core.workspace import Workspace


@click.group()
def shadow() -> None:
    """Shadow runs: Prefect writes the cutover-shadow branch and the shadow ledger; legacy stays live."""


@shadow.command("start")
@click.argument("ingestion_ids", nargs=-1)
@click.option("--all", "all_", is_flag=True)
@click.option("--dry-run", is_flag=True, help="Show the steps; change nothing.")
@click.option("--reason", default="")
@click.option("--accept-schedule-difference", "accepted", multiple=True, metavar="ID",
              help="Deploy ID even though its schedule is not proven equivalent (recorded in the audit log).")
@pass_app
def start(app: App, ingestion_ids, all_, dry_run, reason, accepted) -> None:
    """Fork cutover-shadow, seed the shadow ledger, deploy the Prefect shadow deployment on the legacy schedule.

    Refused (exit 1) for a schedule `cutover schedules verify` does not prove equivalent,
    unless named with --accept-schedule-difference.
    """
    def before(sm: C.ShadowMoves) -> None:
        for iid in sm.already:
            app.echo(f"{iid}: already in SHADOW")

    C.shadow_start(Workspace(app.settings), ingestion_ids, all_=all_, echo=app.echo, dry_run=dry_run, reason=reason,
                   before=before, accept_schedule_difference=accepted)


@shadow.command("stop")
@click.argument("ingestion_ids", nargs=-1)
@click.option("--all", "all_", is_flag=True)
@click.option("--dry-run", is_flag=True)
@click.option("--reason", default="")
@pass_app
def stop(app: App, ingestion_ids, all_, dry_run, reason) -> None:
    """Pause the shadow deployments and go back to LEGACY (branch and shadow ledger are kept)."""
    def before(sm: C.ShadowMoves) -> None:
        for iid in sm.already:
            app.echo(f"{iid}: not in SHADOW, nothing to stop")

    C.shadow_stop(Workspace(app.settings), ingestion_ids, all_=all_, echo=app.echo, dry_run=dry_run, reason=reason,
                  before=before)


@shadow.command("declare")
@click.argument("job_ids", nargs=-1, required=True)
@click.option("--as", "as_", required=True, type=click.Choice(["observe", "env", "sdk"]),
              help="observe: Prefect does not run it in shadow (schedules and legacy runs are compared); "
                   "env: it reads CUTOVER_MODE/CUTOVER_ICEBERG_BRANCH/CUTOVER_LEDGER_NAMESPACE/CUTOVER_OUTPUT_PREFIX; "
                   "sdk: it uses cutover.sdk.")
@click.option("--table", default=None, help="sdk jobs: the Iceberg table the job appends to (forked at shadow start).")
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@pass_app
def declare(app: App, job_ids, as_, table, dry_run) -> None:
    """Declare how generic jobs can be shadowed: a job without a declaration cannot enter SHADOW."""
    res = C.shadow_declare(Workspace(app.settings), job_ids, as_=as_, table=table, dry_run=dry_run)
    for jid, before, now, tbl in res.changes:
        app.echo(f"{'would declare' if dry_run else 'declared'} {jid}: shadow {before or '(undeclared)'} -> {now}"
                 + (f", table {tbl}" if tbl else ""))


SHADOW_RUN_FORMATS = ("text", "json", "md")


@shadow.command("run")
@click.argument("ingestion_ids", nargs=-1)
@click.option("--all", "all_", is_flag=True)
@click.option("--once", is_flag=True, required=True, help="Run both sides now (the only mode so far).")
@click.option("--timeout", default="15m", show_default=True, help="How long to wait for the Prefect flow runs.")
@click.option("--format", "fmt", default="text", show_default=True)
@click.option("--no-store", is_flag=True, help="Do not record the parity run in the history.")
@pass_app
def run(app: App, ingestion_ids, all_, once, timeout, fmt, no_store) -> None:
    """Run legacy live and Prefect shadow now against the same files, wait for both, print the verdict.

    Needs the shadow started (`cutover shadow start`) and a live Prefect worker polling the work
    pool (the embedded server gets one here; another server needs `prefect worker start --pool
    POOL`): without one it fails at once. Exit 0 pass, 1 fail, 3 a run could not complete.
    """
    if fmt not in SHADOW_RUN_FORMATS:
        raise InputError(f"--format {fmt} is not one of text, json, md", fix="use cutover parity for html/junit reports")
    res = C.shadow_run_once(Workspace(app.settings), ingestion_ids, all_=all_, timeout=timeout, store=not no_store,
                            info=app.info)
    for e in res.errors:
        app.echo(f"error: {e}")
    app.echo(P.render_report(res.report, fmt))
    if res.incomplete or res.errors:
        app.echo("incomplete: " + "; ".join(res.incomplete + res.errors))
    exit_with(res.exit_code)
