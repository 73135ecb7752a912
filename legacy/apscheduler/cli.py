"""`cutover legacy scheduler|jobs|sync|pause|resume|import`: the APScheduler side.

The `legacy` group of the `cutover` command line, added by ``cutover.registry`` (loaded by name on
use), which also adds the batch orchestrator's `legacy run` (``legacy/batch/cli.py``). Thin: the
work is in ``legacy.apscheduler.scheduler`` (JobSync, run_foreground, plan_import).
"""

from __future__ import annotations

import threading
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from cutover.core.errors import InputError, PartialFailure
from cutover.core.output import Output as App
from cutover.core.output import pass_output as pass_app
from cutover.core.output import iso_time
from cutover.core.redact import redact_url
from cutover.core.schedule import triggers as sched
from cutover.core.workspace import Workspace
from legacy.apscheduler.importer import apply_import, plan_import, read_source_jobs
from legacy.apscheduler.process import run_foreground
from legacy.apscheduler.scheduler import JobSync


@click.group()
def legacy() -> None:
    """The legacy side: the batch orchestrator and the APScheduler scheduler."""


def _fresh(ws: Workspace) -> bool:
    """An embedded workspace whose autoloader DB does not exist yet (nothing to read)."""
    s = ws.settings
    return s.is_embedded_autoloader and not _sqlite_file(s.autoloader_url).exists()


def _sqlite_file(url: str):
    return Path(url[len("sqlite:///"):].split("?", 1)[0])


def _ingestions(ws: Workspace, ids, all_: bool, *, dry_run: bool):
    """The named ingestions (all must exist), or all of them; a dry run never creates the DB."""
    if all_ and ids:
        raise InputError("both ingestion ids and --all given", fix="use one or the other")
    if not all_ and not ids:
        raise InputError("no ingestion named", fix="name one or more ingestion ids, or pass --all")
    if dry_run and _fresh(ws):
        if all_:
            return []
        raise InputError(f"no ingestion {ids[0]!r}", fix="add one with `cutover ingestion add`")
    return ws.ingestions.resolve(ids, all_=all_)


def _fmt_time(dt, tz: str) -> str:
    if dt is None:
        return ""
    try:
        local = dt.astimezone(ZoneInfo(tz))
    except Exception:  # noqa: BLE001 - an odd zone still prints in the job's own zone
        local = dt
    return iso_time(local)  # the one time style: 2026-12-04T02:30:00+01:00


# -- scheduler ------------------------------------------------------------------------------


@legacy.command("scheduler")
@click.option("--once-for", "once_for", type=float, metavar="SECONDS",
              help="Stop by itself after SECONDS (tests and demos).")
@pass_app
def scheduler(app: App, once_for: float | None) -> None:
    """Run the APScheduler scheduler in the foreground until Ctrl-C / SIGTERM.

    Creates/updates one job per scheduled ingestion first (paused jobs stay
    paused), then fires them. Pause/resume done from another terminal take
    effect within [scheduler] poll_interval. On stop it waits for running jobs.
    """
    if once_for is not None and once_for < 0:
        raise InputError("--once-for must not be negative", fix="give a number of seconds")
    stop = threading.Event()
    timer = None
    if once_for is not None:
        timer = threading.Timer(once_for, stop.set)
        timer.daemon = True
        timer.start()
    try:
        run_foreground(app.settings, stop_event=stop, echo=app.info)
    finally:
        if timer is not None:
            timer.cancel()


# -- jobs -----------------------------------------------------------------------------------


@legacy.command("jobs")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def jobs(app: App, as_json: bool) -> None:
    """APScheduler jobs and the batch flag, per ingestion; next fire time in the ingestion's zone."""
    ws = Workspace(app.settings)
    items = [] if _fresh(ws) else ws.ingestions.list()
    js = JobSync(ws.settings)
    by_id = {j.ingestion_id: j for j in js.jobs()}
    foreign = set(js.foreign_jobs())
    rows = []
    for ing in items:
        job = by_id.pop(ing.id, None)
        tz = ing.schedule_timezone
        if job is None and ing.id in foreign:
            state = "blocked (another application's job has this id)"
        elif job is None:
            state = "missing (run `cutover legacy sync`)" if ing.schedule is not None else "none"
        else:
            state = "paused" if job.paused else "active"
        rows.append({
            "ingestion_id": ing.id, "schedule": sched.describe(ing.schedule), "timezone": tz,
            "job": state, "trigger": job.schedule if job else None,
            "batch": "paused" if ing.batch_paused else "active",
            "next_run_time": job.next_run_time if job else None,
            "next_run_local": _fmt_time(job.next_run_time, tz) if job else "",
        })
    for jid, job in sorted(by_id.items()):  # jobs whose ingestion is gone
        rows.append({"ingestion_id": jid, "schedule": None, "timezone": None,
                     "job": "orphan (paused)" if job.paused else "orphan", "trigger": job.schedule,
                     "batch": None, "next_run_time": job.next_run_time,
                     "next_run_local": _fmt_time(job.next_run_time, "UTC")})
    if as_json:
        app.json({"jobstore": redact_url(ws.settings.jobstore_url), "table": ws.settings.jobstore_table,
                  "jobs": rows, "queued_one_off_runs": js.pending_one_offs()})
        return
    if not rows:
        app.echo("no ingestions and no APScheduler jobs")
        return
    app.table([(r["ingestion_id"], r["schedule"] or "", r["timezone"] or "", r["job"], r["batch"] or "",
                r["next_run_local"]) for r in rows],
              ("ingestion", "schedule", "tz", "apscheduler", "batch", "next run"))
    queued = js.pending_one_offs()
    if queued:
        app.echo(f"{len(queued)} one-off run(s) queued for the scheduler")


# -- sync -----------------------------------------------------------------------------------


@legacy.command("sync")
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@pass_app
def sync(app: App, dry_run: bool) -> None:
    """Create/update one APScheduler job per scheduled ingestion; remove jobs of gone or unscheduled ones.

    Paused jobs stay paused.
    """
    ws = Workspace(app.settings)
    items = [] if (dry_run and _fresh(ws)) else ws.ingestions.list()
    problems: list[str] = []
    actions = JobSync(ws.settings).sync(items, dry_run=dry_run, problems=problems)
    prefix = "would " if dry_run else ""
    verbs = {"created": "create", "updated": "update", "removed": "remove"}
    for action, iid in actions:
        if action == "unchanged":
            app.echo(f"unchanged: {iid}")
        else:
            app.echo(f"{prefix}{verbs[action] if dry_run else action}: {iid}")
    n = {a: sum(1 for x, _ in actions if x == a) for a in ("created", "updated", "removed", "unchanged")}
    if dry_run:
        app.echo(f"Dry run: {n['created']} to create, {n['updated']} to update, {n['removed']} to remove, "
                 f"{n['unchanged']} unchanged")
    else:
        app.echo(f"{n['created']} created, {n['updated']} updated, {n['removed']} removed, {n['unchanged']} unchanged")
    for p in problems:
        app.echo(f"problem: {p}")
    if problems:
        cls = InputError if dry_run or not any(a != "unchanged" for a, _ in actions) else PartialFailure
        raise cls(f"{len(problems)} job(s) could not be synced", fix="see the problem lines above")


# -- pause / resume -------------------------------------------------------------------------


def _pause_resume(app: App, ids, all_: bool, dry_run: bool, *, pause: bool) -> None:
    ws = Workspace(app.settings)
    items = _ingestions(ws, list(ids), all_, dry_run=dry_run)
    js = JobSync(ws.settings)
    verb = "pause" if pause else "resume"
    done = "paused" if pause else "resumed"
    changed_n = 0
    for ing in items:
        job_paused = js.is_paused(ing.id)  # None: no job
        steps = []
        if job_paused is not None and job_paused != pause:
            steps.append("job")
        if ing.batch_paused != pause:
            steps.append("batch")
        if not dry_run:
            # pause: stop the scheduler first; resume: clear the flag first so the next fire is not skipped
            for step in (steps if pause else list(reversed(steps))):
                if step == "job":
                    (js.pause if pause else js.resume)(ing.id)
                else:
                    ws.ingestions.set_batch_paused(ing.id, pause)
        parts = []
        if job_paused is None:
            parts.append("no APScheduler job")
        else:
            parts.append(f"APScheduler job {done}" if "job" in steps else f"APScheduler job already {done}")
        parts.append((f"batch flag {'set' if pause else 'cleared'}") if "batch" in steps
                     else f"batch already {done}")
        if steps:
            changed_n += 1
            app.echo(f"{'would ' + verb if dry_run else done} {ing.id}: {', '.join(parts)}")
        else:
            app.echo(f"unchanged {ing.id}: already {done} ({', '.join(parts)})")
    app.echo(f"{'Dry run: ' if dry_run else ''}{changed_n} {'to ' + verb if dry_run else done}, "
             f"{len(items) - changed_n} already {done}")


@legacy.command("pause")
@click.argument("ingestion_ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every ingestion.")
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@pass_app
def pause(app: App, ingestion_ids, all_: bool, dry_run: bool) -> None:
    """Pause legacy jobs persistently: the APScheduler job (if any) and the batch flag. Idempotent."""
    _pause_resume(app, ingestion_ids, all_, dry_run, pause=True)


@legacy.command("resume")
@click.argument("ingestion_ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every ingestion.")
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@pass_app
def resume(app: App, ingestion_ids, all_: bool, dry_run: bool) -> None:
    """Resume legacy jobs at their next correct fire time (no catch-up of missed runs). Idempotent."""
    _pause_resume(app, ingestion_ids, all_, dry_run, pause=False)


# -- import ---------------------------------------------------------------------------------


@legacy.command("import")
@click.option("--jobstore", "jobstore_url", required=True, metavar="URL",
              help="SQLAlchemy URL of the team's APScheduler job store (read only).")
@click.option("--table", default="apscheduler_jobs", show_default=True, help="Its jobs table.")
@click.option("--replace", is_flag=True, help="Update the schedule of existing ingestions when the job fires differently.")
@click.option("--jobs", "with_jobs", is_flag=True,
              help="Import every other job as a callable job (any function, args, kwargs); those that cannot move "
                   "are listed with the reason.")
@click.option("--code-location", metavar="DIR|package:NAME",
              help="Where the imported callables' code lives (a directory, or an installed package).")
@click.option("--shadow", type=click.Choice(["observe", "env", "sdk"]),
              help="How the imported callable jobs can be shadowed (default: undeclared).")
@click.option("--verify-days", type=click.IntRange(0, 3660), default=366, show_default=True,
              help="Verify each imported job's Prefect schedule against its legacy fire times over this many days "
                   "(0: do not).")
@click.option("--dry-run", is_flag=True, help="Show what would be imported; write nothing.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def import_cmd(app: App, jobstore_url: str, table: str, replace: bool, with_jobs: bool, code_location: str | None,
               shadow: str | None, verify_days: int, dry_run: bool, as_json: bool) -> None:
    """Import the jobs of an existing APScheduler 3 job store, with their real triggers.

    The source is only read (never restored through APScheduler, which would
    delete jobs it cannot load). A job becomes an ingestion from its kwargs
    (source_uri/source, format, table, ...), or updates the schedule of the
    ingestion of the same id. Paused jobs are imported paused. All jobs are
    validated first: any problem exits 2 with nothing written.

    With --jobs, every job that is not an ingestion becomes a callable job (function reference,
    args, kwargs, trigger, misfire_grace_time, coalesce, max_instances, paused state); a job that
    cannot move (a lambda, a bound method, an unreadable argument, a trigger no schedule
    reproduces) is listed with the reason and stays on the team's scheduler.
    """
    from legacy.apscheduler.teamstore import apply_team_jobs, plan_team_jobs

    rows = read_source_jobs(jobstore_url, table)
    ws = Workspace(app.settings)
    fresh = dry_run and _fresh(ws)
    if fresh:
        existing, ours_paused = {}, {}
    else:
        existing = {i.id: i for i in ws.ingestions.list()}
        js = JobSync(ws.settings)
        ours_paused = {i: ing.batch_paused or bool(js.is_paused(i)) for i, ing in existing.items()}
    team, rest = plan_team_jobs(rows, ws, source=jobstore_url, table=table, code_location=code_location, shadow=shadow,
                                read_inventory=not fresh, verify_days=verify_days) if with_jobs else ([], rows)
    items = plan_import(rest, existing, replace=replace, ours_paused=ours_paused)
    if not with_jobs:
        items = [_hint_jobs(i) for i in items]
    new_ings = {i.ingestion_id for i in items if i.action == "create"}
    for t in team:  # ids are shared: a job may not take the id of an ingestion this import creates
        if t.job is not None and t.job.id in new_ings:
            items.append(replace(items[0], job_id=t.store_id, action="problem", ingestion_id=None,
                                 detail=f"job {t.store_id}: its id {t.job.id} is the id of an ingestion this import "
                                        "creates: rename one of them in the source"))
    problems = [i for i in items if i.action == "problem"]
    every = [*items, *team]
    n = {a: sum(1 for i in every if i.action == a) for a in ("create", "update", "unchanged", "cannot-move")}
    summary = (f"{n['create']} to create, {n['update']} to update, {n['unchanged']} unchanged, "
               f"{n['cannot-move']} cannot move, {len(problems)} problem(s)")
    if as_json:
        app.json({"dry_run": dry_run or bool(problems), "jobstore": redact_url(jobstore_url), "table": table,
                  "ingestions": [{"store_job_id": i.job_id, "kind": "ingestion", "action": i.action,
                                  "ingestion_id": i.ingestion_id, "detail": i.detail} for i in items],
                  "jobs": [t.as_dict() for t in team], **{k.replace("-", "_"): v for k, v in n.items()},
                  "problems": len(problems)})
    else:
        app.info(f"{len(rows)} job(s) in {redact_url(jobstore_url)} table {table}")
        for item in items:  # with problems nothing is written: every line says "would"
            app.echo(item.line(dry_run=dry_run or bool(problems)))
        for t in team:
            app.echo(t.line(dry_run=dry_run or bool(problems)))
            for note in t.notes:
                app.echo(f"    note: {note}")
    if problems:
        if not as_json:
            app.echo(summary)
        raise InputError(f"{len(problems)} job(s) cannot be imported, nothing was written",
                         fix="fix the problems listed above and run the import again")
    if dry_run:
        if not as_json:
            app.echo(f"Dry run: {summary}")
        return
    from cutover.core.state import lock

    with lock.locked(ws.state_engine, "legacy import"):  # one mutating operation at a time
        apply_import(ws, items)
        apply_team_jobs(ws, team)
    if as_json:
        return
    app.echo(summary.replace("to create", "created").replace("to update", "updated"))
    if n["create"] or n["update"]:
        app.info("the source job store was not changed: stop the team's scheduler before `cutover legacy scheduler` "
                 "takes over (the ledger fences any overlap)")


def _hint_jobs(item):
    """A job that is no ingestion: say that --jobs imports it as a callable job."""
    from dataclasses import replace

    if item.action == "problem" and "carry no definition" in item.detail:
        return replace(item, detail=item.detail + "; or pass --jobs to import it as a callable job")
    return item
