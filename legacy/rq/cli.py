"""`cutover rq ...`: Redis RQ workflows as a legacy orchestrator.

The side's own verbs, added to the `cutover` command line by ``cutover.registry`` (loaded by name
on use). Thin: the work is in ``legacy.rq`` (model, store, adapter, setup, worker). The RQ setup
(Redis URL, queues, workflows) lives in $CUTOVER_HOME/rq.json, written by ``rq import``;
``CUTOVER_RQ_REDIS_URL`` overrides its Redis URL. Redis URLs are redacted in every output.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import click

from cutover.core.output import Output as App
from cutover.core.output import pass_output as pass_app
from cutover.core.config import parse_duration
from cutover.core.errors import EXIT_PARTIAL, GateFailed, InputError
from cutover.core.records.ingestions import load_definitions
from cutover.core.workspace import Workspace
from legacy.rq.adapter import RQAdapter
from legacy.rq.model import RQConfig
from legacy.rq import setup as rq_setup
from legacy.rq.setup import apply_sync, plan_sync


@click.group()
def rq() -> None:
    """Redis RQ workflows (DAGs of RQ jobs) as the legacy side: import, sync, jobs, run, pause/resume, worker.

    A workflow runs one ingestion: discover -> ingest partitions in parallel -> publish, each
    step an RQ job (depends_on), each calling the same ingestion service as every other side.
    Pause = a persisted hold in Redis that every enqueue honours, the scheduled kickoff moved
    out of RQ's ScheduledJobRegistry (and back on resume). See docs/rq.md.
    """


def _adapter(app: App):
    return RQAdapter(Workspace(app.settings))


def _fresh(settings) -> bool:
    if not settings.is_embedded_autoloader:
        return False
    return not Path(settings.autoloader_url[len("sqlite:///"):].split("?", 1)[0]).exists()


def _targets(a, ids, all_: bool) -> list[str]:
    if all_ and ids:
        raise InputError("both ingestion ids and --all given", fix="use one or the other")
    if not all_ and not ids:
        raise InputError("no ingestion named", fix="name one or more ingestion ids, or pass --all")
    return a._call(a.store.def_ids) if all_ else list(dict.fromkeys(ids))


# `rq import` takes ingestions over from the APScheduler side (their jobs are removed): that part is
# another side's, so the composition root (cutover.registry) hands it in with use_import() when it
# loads this group. Alone, the import reads and removes no APScheduler job.
_import = {"plan": rq_setup.plan_import, "apply": rq_setup.apply_import}


def use_import(plan, apply) -> None:
    """Set the functions `rq import` plans and applies with (``legacy.rq.setup``'s signatures)."""
    _import["plan"], _import["apply"] = plan, apply


@rq.command("import")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True), required=True,
              help="YAML/JSON RQ setup: redis_url, queue, key_prefix, TTLs, workflows {ingestion: {...}}.")
@click.option("--redis-url", help="Redis URL (overrides the file; better: CUTOVER_RQ_REDIS_URL in the environment).")
@click.option("--definitions", type=click.Path(dir_okay=False, exists=True),
              help="YAML/JSON ingestion definitions for workflow ids not yet in the inventory.")
@click.option("--replace", "replace_existing", is_flag=True, help="Update ingestions whose definition differs.")
@click.option("--no-sync", is_flag=True, help="Write rq.json and the inventory only; `cutover rq sync` later.")
@click.option("--dry-run", is_flag=True, help="Show what would be imported and synced; write nothing.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def import_cmd(app: App, config_file, redis_url, definitions, replace_existing, no_sync, dry_run, as_json) -> None:
    """Bring an RQ setup into cutover: the workflows' ingestions, rq.json, and (unless --no-sync)
    their definitions and scheduled kickoffs in Redis."""
    ws = Workspace(app.settings)
    defs = load_definitions(Path(definitions)) if definitions else []
    plan = _import["plan"](ws, Path(config_file), redis_url=redis_url, definitions=defs,
                       replace_existing=replace_existing, read_inventory=not (dry_run and _fresh(app.settings)))
    synced = []
    if not dry_run:
        _import["apply"](ws, plan)
        if not no_sync:
            with RQAdapter(ws, plan.config) as a:
                synced = apply_sync(a, plan_sync(a, [it.ingestion_id for it in plan.items]))
    if as_json:
        app.json({**plan.as_dict(), "synced": [s.as_dict() for s in synced], "dry_run": dry_run})
        return
    would = "would " if dry_run else ""
    app.echo(f"RQ at {plan.config.public_url}, default queue {plan.config.queue}, key prefix {plan.config.key_prefix}")
    for it in plan.items:
        what = {"create": "create", "update": f"update ({', '.join(it.changes)})", "unchanged": "unchanged"}[it.action]
        app.echo(f"{would}{what}: {it.ingestion_id}  {it.schedule}, queue {it.queue}: {it.dag}")
    for w in plan.warnings:
        app.info(f"{'would: ' if dry_run else ''}{w}")
    for s in synced:
        app.echo(f"synced: {s.ingestion_id} {s.action}")
    if dry_run:
        app.echo("Dry run: nothing was changed.")
    else:
        app.echo(f"RQ setup recorded in {app.settings.home / 'rq.json'}"
                 + ("; run `cutover rq sync` to write Redis" if no_sync else ""))


@rq.command("sync")
@click.argument("ingestion_ids", nargs=-1)
@click.option("--dry-run", is_flag=True, help="Show what would change in Redis; write nothing.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def sync_cmd(app: App, ingestion_ids, dry_run, as_json) -> None:
    """Make Redis hold exactly the workflows of rq.json: definitions and kickoffs (held ones stay held)."""
    with _adapter(app) as a:
        items = plan_sync(a, list(ingestion_ids) or None)
        done = items if dry_run else apply_sync(a, items)
    if as_json:
        app.json({"items": [i.as_dict() for i in done], "dry_run": dry_run})
        return
    for it in done:
        app.echo(f"{'would ' if dry_run and it.action != 'unchanged' else ''}{it.action}: {it.ingestion_id}"
                 + (f" ({it.detail})" if it.detail else ""))
    if dry_run:
        app.echo("Dry run: nothing was changed.")


@rq.command("jobs")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def jobs_cmd(app: App, as_json) -> None:
    """The workflows in Redis: schedule, held, next kickoff, queue, DAG."""
    with _adapter(app) as a:
        infos = {j.ingestion_id: j for j in a.list_jobs()}
        rows = []
        for iid, j in sorted(infos.items()):
            d = a.definition(iid)
            hold = a._call(a.store.hold_info, iid)
            rows.append({"ingestion_id": iid, "schedule": d.describe() if d else None, "held": j.paused,
                         "held_since": (hold or {}).get("at"), "held_by": (hold or {}).get("by"),
                         "next_run_time": j.next_run_time.isoformat() if j.next_run_time else None,
                         "queue": d.queue if d else None, "dag": d.workflow().describe() if d else None})
    if as_json:
        app.json({"redis": a.config.public_url, "jobs": rows})
        return
    app.table([(r["ingestion_id"], r["schedule"] or "manual", "yes" if r["held"] else "no", r["next_run_time"] or "-",
                r["queue"], r["dag"]) for r in rows],
              ["INGESTION", "SCHEDULE", "HELD", "NEXT KICKOFF (UTC)", "QUEUE", "DAG"])


@rq.command("run")
@click.argument("ingestion_id")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the run to end.")
@click.option("--timeout", default="1h", show_default=True, help="How long --wait waits (e.g. 10m).")
@click.option("--dry-run", is_flag=True, help="Say whether a run would be enqueued; enqueue nothing.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def run_cmd(app: App, ingestion_id, wait, timeout, dry_run, as_json) -> None:
    """Enqueue a workflow run now (refused while held or paused). Exit 3 if the run did not succeed."""
    limit = parse_duration(timeout, what="--timeout")
    with _adapter(app) as a:
        d = a._require(ingestion_id)
        if dry_run:
            held = a._call(a.store.is_held, ingestion_id)
            ing = a.ws.ingestions.get(ingestion_id)
            if held or ing.batch_paused:
                raise GateFailed(f"ingestion {ingestion_id} is paused on the legacy side",
                                      fix=f"resume it with `cutover rq resume {ingestion_id}`")
            app.echo(f"would enqueue a workflow run of {ingestion_id} on queue {d.queue}: {d.workflow().describe()}")
            app.echo("Dry run: nothing was changed.")
            return
        run_id = a.trigger(ingestion_id, wait=wait, timeout=limit)
        state = a.run_state(run_id) or {}
        rec = a.ws.runs.find(run_id)
    if not wait:
        if as_json:
            app.json({"run_id": run_id, "status": state.get("status")})
        else:
            app.echo(f"{ingestion_id}: workflow run {run_id} enqueued")
        return
    out = {"run_id": run_id, "status": rec.status if rec else state.get("status"), "reason": state.get("reason"),
           "record": rec.as_dict() if rec else None}
    if as_json:
        app.json(out)
    elif rec is not None:
        app.echo(f"{ingestion_id}: run {run_id} {rec.status}: {rec.files_processed} file(s), "
                 f"{rec.records_ingested} record(s){'; ' + rec.error if rec.error else ''}")
    else:
        app.echo(f"{ingestion_id}: run {run_id} {state.get('status')}: {state.get('reason') or state.get('error') or ''}")
    if out["status"] != "SUCCESS":
        raise click.exceptions.Exit(EXIT_PARTIAL)


@rq.command("runs")
@click.argument("ingestion_id", required=False)
@click.option("--since", default="7d", show_default=True, help="How far back (e.g. 24h, 7d).")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def runs_cmd(app: App, ingestion_id, since, as_json) -> None:
    """Workflow runs as RQ sees them (skipped ones included), with each step's RQ status."""
    cutoff = datetime.now(timezone.utc) - timedelta(seconds=parse_duration(since, what="--since"))
    with _adapter(app) as a:
        rows = a.run_rows(ingestion_id, since=cutoff)
    if as_json:
        app.json(rows)
        return
    app.table([(r["run_id"][:12], r["ingestion_id"], r["trigger"], r["status"], (r["created_at"] or "")[:19],
                " ".join(f"{n}={s['rq_status'] or 'gone'}" for n, s in r["steps"].items()),
                (r["reason"] or r["error"] or "")[:60]) for r in rows],
              ["RUN", "INGESTION", "TRIGGER", "STATUS", "ENQUEUED", "STEPS (RQ)", "NOTE"])


def _hold(app: App, ids, all_, dry_run, reason, *, hold: bool) -> None:
    with _adapter(app) as a:
        targets = _targets(a, ids, all_)
        changed, problems = [], []
        verb = "hold" if hold else "release"
        for iid in targets:
            state = a.is_paused(iid)
            if state is None:
                problems.append(f"{iid}: no RQ workflow definition in Redis (cutover rq sync {iid})")
                continue
            if state == hold:
                app.echo(f"{iid}: already {'held' if hold else 'active'}")
                continue
            if dry_run:
                app.echo(f"{iid}: would {verb} (kickoff {'out of' if hold else 'back into'} the scheduled registry)")
                continue
            if a.pause(iid, reason=reason) if hold else a.resume(iid):
                changed.append(iid)
                app.echo(f"{iid}: {'held' if hold else 'resumed'}")
    for p in problems:
        app.echo(f"error: {p}", err=True)
    if dry_run:
        app.echo("Dry run: nothing was changed.")
    if problems:
        raise click.exceptions.Exit(EXIT_PARTIAL if changed else 2)


@rq.command("pause")
@click.argument("ingestion_ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every workflow in Redis.")
@click.option("--reason", default=None, help="Recorded with the hold.")
@click.option("--dry-run", is_flag=True)
@pass_app
def pause_cmd(app: App, ingestion_ids, all_, reason, dry_run) -> None:
    """Hold the workflows' enqueues (persisted in Redis); idempotent. In-flight runs finish."""
    _hold(app, ingestion_ids, all_, dry_run, reason, hold=True)


@rq.command("resume")
@click.argument("ingestion_ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every workflow in Redis.")
@click.option("--dry-run", is_flag=True)
@pass_app
def resume_cmd(app: App, ingestion_ids, all_, dry_run) -> None:
    """Lift the holds: kickoffs back in the scheduled registry at their time (or the next one); idempotent."""
    _hold(app, ingestion_ids, all_, dry_run, None, hold=False)


@rq.command("cancel")
@click.argument("ingestion_id")
@click.option("--dry-run", is_flag=True)
@pass_app
def cancel_cmd(app: App, ingestion_id, dry_run) -> None:
    """Cancel the in-flight workflow runs (cooperative: steps stop between files, publish closes CANCELLED)."""
    with _adapter(app) as a:
        a._require(ingestion_id)
        if dry_run:
            rows = [r for r in a.run_rows(ingestion_id) if r["status"] in ("PENDING", "RUNNING")]
            app.echo(f"would cancel {len(rows)} in-flight run(s) of {ingestion_id}")
            app.echo("Dry run: nothing was changed.")
            return
        n = a.cancel_running(ingestion_id)
    app.echo(f"{ingestion_id}: {n} in-flight run(s) cancelled")


@rq.command("status")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def status_cmd(app: App, as_json) -> None:
    """Redis, workers (alive, queues, current job), suspension, queue lengths and registries. Exit 1 if unhealthy."""
    from rq import Queue
    from rq.registry import (CanceledJobRegistry, DeferredJobRegistry, FailedJobRegistry, FinishedJobRegistry,
                             ScheduledJobRegistry, StartedJobRegistry)

    with _adapter(app) as a:
        h = a.health()
        workers = a.workers() if h.ok or "unreachable" not in h.detail else []
        queues = []
        if "unreachable" not in h.detail:
            for q in a.config.queues():
                qq = Queue(q, connection=a.conn)
                queues.append({"queue": q, "queued": len(qq), **{
                    name: R(queue=qq).count for name, R in (
                        ("started", StartedJobRegistry), ("deferred", DeferredJobRegistry),
                        ("scheduled", ScheduledJobRegistry), ("finished", FinishedJobRegistry),
                        ("failed", FailedJobRegistry), ("canceled", CanceledJobRegistry))}})
        suspended = a._call(a.store.suspended) if "unreachable" not in h.detail else None
    out = {"ok": h.ok, "detail": h.detail, "redis": a.config.public_url, "suspended": suspended,
           "workers": workers, "queues": queues}
    if as_json:
        app.json(out)
    else:
        app.echo(f"{'ok' if h.ok else 'NOT OK'}: {h.detail}")
        if workers:
            app.table([(w["name"], ",".join(w["queues"]), w["state"], "yes" if w["alive"] else "NO (process gone)",
                        w["current_job"] or "-") for w in workers], ["WORKER", "QUEUES", "STATE", "ALIVE", "JOB"])
        if queues:
            app.table([(q["queue"], q["queued"], q["started"], q["deferred"], q["scheduled"], q["finished"],
                        q["failed"], q["canceled"]) for q in queues],
                      ["QUEUE", "QUEUED", "STARTED", "DEFERRED", "SCHEDULED", "FINISHED", "FAILED", "CANCELED"])
    if not h.ok:
        raise click.exceptions.Exit(1)


@rq.command("worker")
@click.option("--queues", "queues", multiple=True, help="Queues to listen on (repeatable; default: every queue of rq.json).")
@click.option("--scheduler/--no-scheduler", "with_scheduler", default=True, show_default=True,
              help="Also move due scheduled kickoffs to their queues (one per Redis is enough; more are harmless).")
@click.option("--burst", is_flag=True, help="Exit when the queues are empty.")
@click.option("--name", help="Worker name (default: RQ's).")
@pass_app
def worker_cmd(app: App, queues, with_scheduler, burst, name) -> None:
    """Run an RQ worker for the workflows in the foreground (RQ's forking Worker, job modules preloaded)."""
    cfg = RQConfig.require(app.settings)
    qs = list(queues) or cfg.queues()
    app.info(f"RQ worker on {cfg.public_url}, queues {', '.join(qs)}{' (with scheduler)' if with_scheduler else ''}")
    from legacy.rq.worker import run_worker  # imports rq: only when a worker starts

    run_worker(cfg.url, qs, with_scheduler=with_scheduler, burst=burst, name=name,
               logging_level="DEBUG" if app.verbose > 1 else "INFO")


# -- a team's own RQ schedules (issue #15) -------------------------------------------------------


def _team_redis(url: str | None):
    import os

    import redis

    url = url or os.environ.get("CUTOVER_RQ_REDIS_URL")
    if not url:
        raise InputError("no Redis URL", fix="pass --redis-url or set CUTOVER_RQ_REDIS_URL")
    return url, redis.Redis.from_url(url)


@rq.command("import-jobs")
@click.option("--redis-url", help="The team's Redis (default: CUTOVER_RQ_REDIS_URL).")
@click.option("--key-prefix", default="rq", show_default=True, help="RQ's key prefix.")
@click.option("--code-location", metavar="DIR|package:NAME", help="Where the functions' code lives.")
@click.option("--shadow", type=click.Choice(["observe", "env", "sdk"]),
              help="How the imported callable jobs can be shadowed (default: undeclared).")
@click.option("--dry-run", is_flag=True, help="Show what would be imported; write nothing.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def import_jobs_cmd(app: App, redis_url, key_prefix, code_location, shadow, dry_run, as_json) -> None:
    """Import the functions behind a team's scheduled and repeated RQ jobs as callable jobs.

    Reads RQ's scheduled registries (enqueue_at/enqueue_in, Repeat), RQ's cron scheduler and
    rq-scheduler's keys; nothing in Redis changes. What cannot move is listed with the reason.
    """
    from redis.exceptions import RedisError

    from cutover.core.redact import redact_text
    from legacy.rq.teamjobs import apply_rq_jobs, plan_rq_jobs

    url, conn = _team_redis(redis_url)
    ws = Workspace(app.settings)
    try:
        items = plan_rq_jobs(conn, ws, redis_url=url, prefix=key_prefix, code_location=code_location, shadow=shadow,
                             read_inventory=not (dry_run and _fresh(app.settings)))
    except RedisError as e:
        raise InputError(f"cannot read Redis ({redact_text(str(e))})", fix="check --redis-url") from None
    finally:
        conn.close()
    if not dry_run:
        from cutover.core.state import lock

        with lock.locked(ws.state_engine, "rq import-jobs"):
            apply_rq_jobs(ws, items)
    n = {a: sum(1 for i in items if i.action == a) for a in ("create", "update", "unchanged", "cannot-move")}
    if as_json:
        app.json({"dry_run": dry_run, "jobs": [i.as_dict() for i in items], **{k.replace("-", "_"): v for k, v in n.items()}})
        return
    for i in items:
        app.echo(i.line(dry_run=dry_run))
        for note in i.notes:
            app.echo(f"    note: {note}")
    app.echo(f"{'Dry run: ' if dry_run else ''}{n['create']} to create, {n['update']} to update, "
             f"{n['unchanged']} unchanged, {n['cannot-move']} cannot move")


@rq.command("record-runs")
@click.option("--redis-url", help="The team's Redis (default: CUTOVER_RQ_REDIS_URL).")
@click.option("--key-prefix", default="rq", show_default=True, help="RQ's key prefix.")
@click.option("--dry-run", is_flag=True, help="Show the runs found; write nothing.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def record_runs_cmd(app: App, redis_url, key_prefix, dry_run, as_json) -> None:
    """Legacy run records of the imported RQ jobs from RQ's finished/failed registries (idempotent)."""
    from legacy.rq.teamjobs import record_registry_runs

    url, conn = _team_redis(redis_url)
    try:
        runs = record_registry_runs(conn, Workspace(app.settings), prefix=key_prefix, dry_run=dry_run)
    finally:
        conn.close()
    if as_json:
        app.json({"dry_run": dry_run, "runs": runs})
        return
    for r in runs:
        app.echo(f"{r['job_id']}: {r['status']} {r['started_at']} -> {r['ended_at']}")
    app.echo(f"{'Dry run: ' if dry_run else ''}{len(runs)} run(s) found")
