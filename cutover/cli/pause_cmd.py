"""`cutover pause` (and `pause list`) and `cutover resume`: parse, call cutover.commands.pause, render."""

from __future__ import annotations

from pathlib import Path

import click

from cutover.cli.app import App, command_started_at, exit_with, pass_app
from cutover.commands import pause as C
from cutover.core.workspace import Workspace


@click.group(invoke_without_command=True)
@click.option("--all", "all_", is_flag=True, help="Every ingestion of this workspace.")
@click.option("--select", help="Only these: id globs and/or owner=, format=, size_class=, priority=, queue=, state=, table=.")
@click.option("--reason", default="", help="Why (required; recorded with the snapshot and in the audit log).")
@click.option("--fence-pool/--no-fence-pool", "fence_pool", default=None,
              help="Pause the whole Prefect work pool as the instant fence (default: with --all only; "
                   "the pool is shared by every deployment).")
@click.option("--dry-run", is_flag=True, help="Show the counts; change nothing.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def pause(ctx: click.Context, all_, select, reason, fence_pool, dry_run, as_json) -> None:
    """Stop every run now, then pause every schedule durably; prints the snapshot id for `cutover resume`.

    Order: snapshot of the work pool flags -> fence (the legacy fence row + the Prefect work pool
    paused: one write each, whatever the count) -> snapshot of every schedule state -> every
    deployment, APScheduler job and batch flag paused -> snapshot marked durable.
    With the Prefect API down, the legacy side is fenced and paused, what could not be done is
    recorded, exit 3; the same command again completes the same snapshot.

    \b
    cutover pause --all --reason "catalog outage"
    cutover pause list
    """
    if ctx.invoked_subcommand is not None:
        return
    app: App = ctx.find_object(App)
    res = C.pause(Workspace(app.settings), all_=all_, select=select, reason=reason, dry_run=dry_run,
                  fence_pool=fence_pool, echo=app.echo if dry_run and not as_json else app.info,
                  started_at=command_started_at())
    if as_json:
        app.json(res.as_dict())
    elif res.snapshot_id:
        app.echo(res.snapshot_id)
    if not dry_run and res.problems:
        app.info(f"the pause is NOT complete ({len(res.problems)} problem(s)); the fences that could be raised "
                 f"are up. Run the same command again to complete snapshot {res.snapshot_id}.")
        exit_with(C.pause_exit_code(res, dry_run=dry_run))
    if not dry_run and res.snapshot_id and not res.already:
        app.info(f"resume with: cutover resume --snapshot {res.snapshot_id}")


@pause.command("list")
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def pause_list(app: App, limit: int, as_json: bool) -> None:
    """Pause snapshots, newest first: status, scope, counts, when fenced/durable/resumed."""
    snaps = C.pause_list(Workspace(app.settings), limit=limit)
    if as_json:
        app.json(snaps)
        return
    if not snaps:
        app.echo("no pause snapshot yet")
        return

    def t(v):
        return (v or "")[:19].replace("T", " ")

    app.table([(s["id"], s["status"], t(s["created_at"]), s["created_by"] or "", s["scope"],
                "?" if s["deployments"] is None else s["deployments"], s["apscheduler_jobs"], t(s["safe_at"]),
                t(s["durable_at"]) or "INCOMPLETE", t(s["resumed_at"]), s["reason"] or "") for s in snaps],
              ("snapshot", "status", "created (UTC)", "by", "scope", "deployments", "jobs", "fenced",
               "durable", "resumed", "reason"))


@click.command()
@click.option("--snapshot", "snapshot_id", required=True, help="The id `cutover pause` printed (see `cutover pause list`).")
@click.option("--late-runs", "late", type=click.Choice(["skip", "run-once"]), default="skip", show_default=True,
              help="Flow runs that became due behind the fence: skip them all, or run the newest per deployment once.")
@click.option("--dry-run", is_flag=True, help="Show what would be restored; change nothing.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def resume(app: App, snapshot_id: str, late: str, dry_run: bool, as_json: bool) -> None:
    """Restore exactly the schedule states of a pause snapshot, then lift the fences.

    What was paused before the pause stays paused; inactive schedules stay inactive; APScheduler
    jobs resume at their next fire time from now. Late runs are handled before the work pool is
    un-paused. A second resume is a no-op; after a crash, run it again. Exit 3 when a part could
    not be restored (e.g. the Prefect API is down: the legacy side is restored, the pool stays paused).
    """
    res = C.resume(Workspace(app.settings), snapshot_id, late=late, dry_run=dry_run,
                   echo=app.info if as_json else app.echo)
    if as_json:
        app.json(res.as_dict())
    elif not dry_run and not res.already:
        c = res.changes
        app.echo(f"snapshot {res.snapshot_id}: {c.get('deployments_resumed', 0)} deployment(s) resumed, "
                 f"{c.get('schedule_flags_restored', 0)} schedule flag(s) restored, {c.get('jobs_resumed', 0)} "
                 f"APScheduler job(s) resumed, {c.get('batch_flags_restored', 0)} batch flag(s) cleared; late runs: "
                 f"{len(res.late_runs.get('cancelled', []))} cancelled, {len(res.late_runs.get('kept', []))} kept")
        if "rq_holds_lifted" in c or c.get("rq_workers_resumed"):
            app.echo(f"  RQ: {c.get('rq_holds_lifted', 0)} workflow hold(s) lifted, {c.get('rq_holds_kept', 0)} kept "
                     f"(held before the pause)" + ("; workers resumed" if c.get("rq_workers_resumed") else ""))
        team = {k: v for k, v in c.items() if k.startswith("team_")}  # a team's own jobs (issue #15)
        if team:
            app.echo("  team jobs: " + ", ".join(f"{v} {k[len('team_'):].replace('_', ' ')}" for k, v in team.items()))
        for n in res.notes:
            app.echo(f"  note: {n}")
    if res.problems and not dry_run:
        for p in res.problems:
            app.info(f"NOT DONE: {p}")
        app.info(f"run the same command again to complete the resume of {res.snapshot_id}")
        exit_with(C.resume_exit_code(res, dry_run=dry_run))
