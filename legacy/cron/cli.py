"""`cutover cron ...`: the crontab legacy side (a crontab FILE + the wrapper's run log).

The side's own verbs, added to the `cutover` command line by ``cutover.registry`` (loaded by name
on use). Thin: the work is in ``legacy.cron.side`` (CronAdapter, plan_import/apply_import) and
``legacy.cron.medallion`` (the reference wrapper). The crontab is always a file you name
(``--crontab``, remembered by ``cron import`` in $CUTOVER_HOME/cron.json), never the
machine's crontab: ``crontab -l > FILE`` exports it, ``crontab FILE`` (or ``--install``)
installs it again.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import click

from cutover.core.output import Output as App
from cutover.core.output import pass_output as pass_app
from cutover.core.errors import EXIT_PARTIAL, InputError
from cutover.core.config import parse_duration
from cutover.core.records.ingestions import load_definitions
from cutover.core.workspace import Workspace
from legacy.cron.medallion import write_pipeline
from legacy.cron.side import CronAdapter, apply_import, normalize_expr, plan_import

_crontab_opt = click.option("--crontab", "crontab", type=click.Path(dir_okay=False), envvar="CUTOVER_CRON_CRONTAB",
                            help="The crontab FILE (default: the one `cutover cron import` recorded).")
_install_opt = click.option("--install", is_flag=True,
                            help="Run `crontab FILE` after writing (installs it as this user's crontab).")


@click.group()
def cron() -> None:
    """The crontab legacy side: import lines, list jobs, pause/resume them in the managed block.

    cutover edits only the lines between '# BEGIN cutover managed' and '# END cutover managed'
    of the crontab FILE, keeps a backup (FILE.bak.<timestamp>) before every write, and writes
    atomically. Schedules keep standard cron semantics ({"crontab": ...} in the inventory).
    """


def _adapter(app: App, crontab: str | None, *, install: bool = False):
    return CronAdapter(Workspace(app.settings), crontab=crontab, install=install or None)


def _fresh(settings) -> bool:
    if not settings.is_embedded_autoloader:
        return False
    return not Path(settings.autoloader_url[len("sqlite:///"):].split("?", 1)[0]).exists()


def _started(entry: dict) -> datetime | None:
    """When a run-log entry started (aware), None when it has no readable start."""
    value = entry.get("start")
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


@cron.command("import")
@click.option("--crontab", "crontab", type=click.Path(dir_okay=False, exists=True), required=True,
              help="The crontab FILE to import (e.g. written by `crontab -l > FILE`).")
@click.option("--map", "maps", multiple=True, metavar="TEXT=ID",
              help="Map unmarked lines whose command contains TEXT to ingestion ID (repeatable); the marker is added.")
@click.option("--definitions", type=click.Path(dir_okay=False, exists=True),
              help="YAML/JSON ingestion definitions for ids not yet in the inventory.")
@click.option("--timezone", "tz", help="The zone cron runs in (default: CRON_TZ in the file, else this machine's).")
@click.option("--run-log", help="The run log (JSON lines) the wrapper appends (default: from the wrapper's pipeline.json).")
@click.option("--wrapper", help="Command that runs a step; lines added later run '<wrapper> ingest <id>'.")
@click.option("--output-dir", type=click.Path(file_okay=False), help="Where lines added later append their output.")
@click.option("--replace", "replace_existing", is_flag=True, help="Update ingestions whose definition differs.")
@click.option("--jobs", "with_jobs", is_flag=True,
              help="Also import every other job line as a command job, wrapped in place by `cutover cron exec`.")
@click.option("--shadow", type=click.Choice(["observe", "env", "sdk"]),
              help="How the imported command jobs can be shadowed (default: undeclared).")
@click.option("--verify-days", type=click.IntRange(0, 3660), default=366, show_default=True,
              help="Verify each imported job's Prefect schedule against its legacy fire times over this many days "
                   "(0: do not).")
@click.option("--undo", is_flag=True, help="Put the wrapped lines back byte for byte and remove their command jobs.")
@click.option("--dry-run", is_flag=True, help="Show what would be imported and adopted; write nothing.")
@_install_opt
@click.option("--json", "as_json", is_flag=True)
@pass_app
def import_cmd(app: App, crontab, maps, definitions, tz, run_log, wrapper, output_dir, replace_existing, with_jobs,
               shadow, verify_days, undo, dry_run, install, as_json) -> None:
    """Bring crontab lines into the inventory and the managed block.

    A line belongs to an ingestion by its marker comment '# cutover: ingestion=<id>' or by
    --map. Each becomes (or updates) an ingestion with schedule {"crontab": "<5 fields>"};
    marked lines outside the managed block are moved into it verbatim (backup first).
    With --jobs every other job line becomes a command job and is wrapped in place by
    `cutover cron exec --job ID -- SHELL -c '<command>'` (runs recorded); --undo reverses that.
    Environment lines, @reboot and unreadable lines are listed and never changed.
    """
    if undo:
        from legacy.cron.jobimport import undo_jobs

        from cutover.core.state import lock

        ws = Workspace(app.settings)
        if dry_run:
            res = undo_jobs(ws, crontab, dry_run=True)
        else:
            with lock.locked(ws.state_engine, "cron import --undo"):
                res = undo_jobs(ws, crontab)
        if as_json:
            app.json({**res.as_dict(), "dry_run": dry_run})
            return
        would = "would " if dry_run else ""
        for jid in res.jobs:
            app.echo(f"{would}restore the original line of {jid} and remove the job (runs kept)")
        app.echo(f"{'Dry run: ' if dry_run else ''}{len(res.jobs)} job(s); crontab "
                 f"{'would change' if dry_run and res.restored else 'restored' if res.restored else 'unchanged'}")
        return
    mapping = {}
    for m in maps:
        text, sep, iid = m.rpartition("=")
        if not sep or not text or not iid:
            raise InputError(f"--map {m!r} is not TEXT=ID", fix="e.g. --map 'run_step.py silver=medallion-silver'")
        mapping[text] = iid
    defs = load_definitions(Path(definitions)) if definitions else []
    ws = Workspace(app.settings)
    fresh = dry_run and _fresh(app.settings)
    plan = plan_import(ws, crontab, mapping=mapping, definitions=defs, timezone=tz, replace_existing=replace_existing,
                       run_log=run_log, wrapper=wrapper, output_dir=output_dir, read_inventory=not fresh,
                       jobs=with_jobs, shadow=shadow, verify_days=verify_days)
    if install:
        plan.config.install = True
    if not dry_run:
        from cutover.core.state import lock

        with lock.locked(ws.state_engine, "cron import"):  # one mutating operation at a time
            apply_import(ws, plan)
    if as_json:
        app.json({**plan.as_dict(), "dry_run": dry_run})
        return
    would = "would " if dry_run else ""
    for it in plan.items:
        what = {"create": "create", "update": f"update ({', '.join(it.changes)})", "unchanged": "unchanged"}[it.action]
        line = "adopt line into the managed block" if it.line_action == "adopt" else "line already managed"
        app.echo(f"{would}{what}: {it.ingestion_id}  crontab {it.expr} ({plan.timezone}), line {it.line}: {line}")
    for ig in plan.ignored:
        app.echo(f"not imported: line {ig['line']} ({ig['schedule']} {ig['command']}): {ig['why']}"
                 f"{'' if with_jobs else ' (--jobs imports it as a command job)'}")
    jp = plan.jobs
    for ji in jp.items if jp is not None else []:
        what = "line already wrapped" if ji.line_action == "wrapped" else "wrap the line with `cutover cron exec`"
        sched = ji.prefect_schedule or f"NOT TRANSLATABLE ({ji.translate_error})"
        app.echo(f"{would}{ji.action}: {ji.job.id}  command {ji.job.describe_target()!r}  "
                 f"crontab {ji.job.schedule['crontab']} ({ji.job.schedule_timezone}) -> Prefect {sched}, "
                 f"line {ji.line}: {what}")
    for ln in jp.lines if jp is not None else []:
        if ln["kind"] != "job":
            app.echo(f"line {ln['line']} ({ln['kind']}): {ln.get('reason') or ln.get('note')}: {ln['text']}")
    for p in jp.problems if jp is not None else []:
        app.echo(f"problem: {p}")
    for w in plan.warnings:
        app.info(f"warning: {w}")
    if not plan.items and not (jp and jp.items):
        app.echo("no line runs an ingestion: mark lines with '# cutover: ingestion=<id>' or pass --map")
    if dry_run:
        app.echo("Dry run: nothing was changed.")
    else:
        app.echo(f"crontab {plan.crontab} recorded in {app.settings.home / 'cron.json'}; "
                 f"install it with `crontab {plan.crontab}` when it runs from the system crontab")


@cron.command("jobs")
@_crontab_opt
@click.option("--lines", "show_lines", is_flag=True, help="Every line of the file, with what cutover makes of it.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def jobs_cmd(app: App, crontab, show_lines, as_json) -> None:
    """The crontab's ingestion jobs: schedule, paused, next fire time, managed."""
    a = _adapter(app, crontab)
    if show_lines:
        lines = a.file.lines()
        if as_json:
            app.json([ln.as_dict() for ln in lines])
            return
        for ln in lines:
            tag = ("managed" if ln.managed else "block") if ln.in_block else ("unmanaged" if ln.ingestion_id else "foreign")
            app.echo(f"{ln.n:>4} {ln.kind:<8} {tag:<9} {ln.text}")
        return
    lines = a.file.lines()
    tz = a.timezone_for(lines)
    infos = {j.ingestion_id: j for j in a.list_jobs()}
    rows = []
    for j in a.jobs(lines):
        info = infos[j.ingestion_id]
        rows.append({"ingestion_id": j.ingestion_id, "schedule": j.line.expr, "timezone": tz, "paused": j.paused,
                     "managed": j.managed, "line": j.line.n,
                     "next_run_time": info.next_run_time.isoformat() if info.next_run_time else None,
                     "command": j.line.command})
    if as_json:
        app.json({"crontab": str(a.file.path), "timezone": tz, "jobs": rows})
        return
    app.table([(r["ingestion_id"], r["schedule"], "yes" if r["paused"] else "no", "yes" if r["managed"] else "NO",
                r["next_run_time"] or "-", r["line"]) for r in rows],
              ["INGESTION", "SCHEDULE", "PAUSED", "MANAGED", "NEXT RUN (UTC)", "LINE"])


def _targets(a, ids, all_: bool) -> list[str]:
    if all_ and ids:
        raise InputError("both ingestion ids and --all given", fix="use one or the other")
    if not all_ and not ids:
        raise InputError("no ingestion named", fix="name one or more ingestion ids, or pass --all")
    managed = [j.ingestion_id for j in a.jobs() if j.managed]
    return managed if all_ else list(ids)


def _pause_resume(app: App, crontab, ids, all_, dry_run, install, *, pause: bool) -> None:
    a = _adapter(app, crontab, install=install)
    targets = _targets(a, ids, all_)
    states = {j.ingestion_id: j for j in a.jobs()}
    verb = "pause" if pause else "resume"
    changed, problems = [], []
    for iid in targets:
        j = states.get(iid)
        if j is None or not j.managed:
            problems.append(f"{iid}: {'not in the managed block' if j else 'no line'} of {a.file.path}")
            continue
        if j.paused == pause:
            app.echo(f"{iid}: already {'paused' if pause else 'active'}")
            continue
        if dry_run:
            app.echo(f"{iid}: would {verb} line {j.line.n}")
            continue
        if (a.pause if pause else a.resume)(iid):
            changed.append(iid)
            app.echo(f"{iid}: {verb}d")
    for p in problems:
        app.echo(f"error: {p}", err=True)
    if dry_run:
        app.echo("Dry run: nothing was changed.")
    elif changed:
        app.info(f"backup of the previous file: {a.file.backups()[-1] if a.file.backups() else '-'}")
    if problems:
        raise click.exceptions.Exit(EXIT_PARTIAL if changed else 2)


@cron.command("pause")
@click.argument("ingestion_ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every line of the managed block.")
@click.option("--dry-run", is_flag=True)
@_crontab_opt
@_install_opt
@pass_app
def pause_cmd(app: App, ingestion_ids, all_, dry_run, crontab, install) -> None:
    """Comment the ingestions' lines out (inside the managed block only); idempotent."""
    _pause_resume(app, crontab, ingestion_ids, all_, dry_run, install, pause=True)


@cron.command("resume")
@click.argument("ingestion_ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every line of the managed block.")
@click.option("--dry-run", is_flag=True)
@_crontab_opt
@_install_opt
@pass_app
def resume_cmd(app: App, ingestion_ids, all_, dry_run, crontab, install) -> None:
    """Uncomment the ingestions' lines (byte for byte as they were); idempotent."""
    _pause_resume(app, crontab, ingestion_ids, all_, dry_run, install, pause=False)


@cron.command("run")
@click.argument("ingestion_id")
@_crontab_opt
@click.option("--json", "as_json", is_flag=True)
@pass_app
def run_cmd(app: App, ingestion_id, crontab, as_json) -> None:
    """Run the ingestion's cron command now (as cron would) and wait for it. Exit 3 if the run failed."""
    a = _adapter(app, crontab)
    run_id = a.trigger(ingestion_id)
    entry = next((d for d in a.read_log() if d.get("run_id") == run_id), {})
    if as_json:
        app.json(entry)
    else:
        app.echo(f"{ingestion_id}: run {run_id} {entry.get('status')}: {entry.get('files_processed', 0)} file(s), "
                 f"{entry.get('records', 0)} record(s){'; ' + entry['error'] if entry.get('error') else ''}")
    if entry.get("status") != "SUCCESS":
        raise click.exceptions.Exit(EXIT_PARTIAL)


@cron.command("runs")
@click.argument("ingestion_id", required=False)
@click.option("--since", default="7d", show_default=True, help="How far back (e.g. 24h, 7d).")
@_crontab_opt
@click.option("--json", "as_json", is_flag=True)
@pass_app
def runs_cmd(app: App, ingestion_id, since, crontab, as_json) -> None:
    """The wrapper's run log: every step (silver/gold and skipped runs included)."""
    a = _adapter(app, crontab)
    cutoff = datetime.now(timezone.utc) - timedelta(seconds=parse_duration(since, what="--since"))
    rows = [d for d in a.read_log() if (_started(d) or cutoff) >= cutoff
            and (ingestion_id is None or d.get("ingestion_id") == ingestion_id)]
    if as_json:
        app.json(rows)
        return
    app.table([(d.get("run_id", "")[:12], d.get("job"), d.get("ingestion_id") or "-", d.get("trigger"),
                d.get("status"), d.get("start"), d.get("records", 0), (d.get("error") or "")[:60]) for d in rows],
              ["RUN", "JOB", "INGESTION", "TRIGGER", "STATUS", "START", "RECORDS", "ERROR"])


@cron.command("scaffold")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--source", "source", type=click.Path(file_okay=False), required=True,
              help="Directory of the raw event files (events-*.csv) bronze ingests.")
@click.option("--schedule", default="15 * * * *", show_default=True, help="Cron schedule of the bronze line.")
@click.option("--namespace", default="medallion", show_default=True, help="Iceberg namespace of bronze/silver/gold.")
@pass_app
def scaffold_cmd(app: App, directory, source, schedule, namespace) -> None:
    """Generate the reference legacy cron pipeline (demo/test): wrapper, pipeline.json, crontab FILE.

    Nothing outside DIRECTORY is written (the system crontab is never touched).
    """
    normalize_expr(schedule)
    paths = write_pipeline(directory, source_dir=Path(source).absolute(), cutover_home=app.settings.home,
                           namespace=namespace, schedule=schedule)
    for k in ("wrapper", "config", "crontab", "run_log"):
        app.echo(f"{k:<8} {paths[k]}")
    app.echo(f"next: cutover cron import --crontab {paths['crontab']}")


@cron.command("exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--job", "job_id", required=True, help="The job id (`cutover cron import --jobs` writes it).")
@click.option("--home", type=click.Path(file_okay=False),
              help="The cutover home holding the run records (cron's environment has no CUTOVER_HOME).")
@click.option("--trigger", type=click.Choice(["scheduled", "manual"]), default="scheduled", show_default=True)
@click.option("--run-id", help="The run record's id (default: a new one).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_cmd(job_id: str, home: str | None, trigger: str, run_id: str | None, command) -> None:
    """Run COMMAND as cron would and record the run: start, end, exit code, duration, output tail.

    stdin, stdout and stderr pass through; the exit code is the command's (128+N when killed by
    signal N). The records store being down never stops the command.
    """
    import os
    import sys

    from cutover.core.config import load_settings
    from legacy.cron.jobexec import Records, run_and_record

    env = dict(os.environ)
    if home:
        env["CUTOVER_HOME"] = home
    try:
        ws = Records(load_settings(env))
    except Exception as e:  # noqa: BLE001 - the command runs anyway
        sys.stderr.write(f"cutover cron exec: cannot read the settings ({type(e).__name__}): run not recorded\n")
        ws = None
    argv = list(command[1:] if command and command[0] == "--" else command)
    sys.exit(run_and_record(ws, job_id, argv, trigger=trigger, run_id=run_id) if ws is not None else _plain(argv))


def _plain(argv) -> int:
    import subprocess

    try:
        rc = subprocess.call(argv)
    except OSError:
        return 127
    return 128 - rc if rc < 0 else rc
