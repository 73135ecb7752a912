"""inventory, plan, execute, status, log, unlock (the work: cutover.commands.migration)."""

from __future__ import annotations

from pathlib import Path

import click

from cutover.cli.app import App, exit_with, pass_app
from cutover.commands import migration as C
from cutover.core.output import iso_time
from cutover.core.workspace import Workspace


@click.command()
@click.option("--json", "as_json", is_flag=True)
@click.option("--no-verify", is_flag=True, help="Skip the schedule equivalence proof (faster).")
@pass_app
def inventory(app: App, as_json: bool, no_verify: bool) -> None:
    """Every ingestion: legacy and Prefect schedule, verification, queue, state, parity streak."""
    res = C.inventory(Workspace(app.settings), verify=not no_verify)
    rows = res.rows
    if as_json:
        app.json(res.as_dict())
        return
    if not rows:
        app.echo("no ingestions yet: add some with `cutover ingestion add`")
        return
    app.table([(r["id"], r["legacy_schedule"], r["timezone"], r["prefect_schedule"] or "(untranslatable)",
                r["schedule_verification"] if r["schedule_verification"] is not None else "-", r["work_queue"], r["state"],
                r["last_parity"] or "-", r["streak"]) for r in rows],
              ("ingestion", "legacy schedule", "tz", "prefect schedule", "verified", "queue", "state", "parity", "streak"))


@click.command()
@click.option("--waves", default="canary=1,50%,rest", show_default=True,
              help="Wave sizes in order: N, N%, or rest; optionally named (canary=2).")
@click.option("--select", help="Only these: id globs and/or owner=, format=, size_class=, priority=, queue=, state=, table=.")
@click.option("--gate", default="streak>=3,schedule_verified,no_open_waiver", show_default=True,
              help="Conditions every move into CUTOVER must meet when its wave executes.")
@click.option("--handoff-timeout", default="10m", show_default=True, help="How long to wait for an in-flight legacy run.")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), help="Save the plan as JSON here.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def plan(app: App, waves, select, gate, handoff_timeout, out, as_json) -> None:
    """Plan the next moves, wave by wave (like a Terraform plan). Changes nothing but --out."""
    p = C.plan(Workspace(app.settings), waves=waves, select=select, gate=gate, handoff_timeout=handoff_timeout, out=out)
    if as_json:
        app.json(p.as_dict())
    else:
        _show_plan(app, p)
    if out:
        app.info(f"saved plan {p.id} to {out}; next: cutover execute {out} --dry-run")


def _show_plan(app: App, p) -> None:
    app.echo(f"cutover plan {p.id} (gate for cut-over moves: {p.gate})")
    for w in p.waves:
        app.echo("")
        app.echo(f"wave {w.number}: {w.name}")
        for m in w.moves:
            sign = "~" if m.to_state == "CUTOVER" else "+"
            app.echo(f"  {sign} {m.ingestion_id}: {m.from_state} -> {m.to_state}")
            for s in m.steps:
                inv = s.inverse()
                app.echo(f"      {s.describe().split(': ', 1)[1]}" + (f"   (undo: {inv.describe().split(': ', 1)[1]})" if inv else ""))
    app.echo("")
    app.echo(p.summary_line())


@click.command()
@click.argument("plan_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--wave", "wave_no", type=int, help="Wave number (default: the next one not done).")
@click.option("--dry-run", is_flag=True, help="Show exactly the steps that would run; change nothing anywhere.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--reason", default="", help="Why (recorded in the audit log).")
@click.option("--accept-schedule-difference", "accepted", multiple=True, metavar="ID",
              help="Deploy ID even though its schedule is not proven equivalent (recorded in the audit log).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout (the steps go to stderr).")
@pass_app
def execute(app: App, plan_file, wave_no, dry_run, yes, reason, accepted, as_json) -> None:
    """Apply the next wave of a saved plan: journaled, resumable, behind the operator lock.

    A move that deploys a schedule `cutover schedules verify` does not prove equivalent is held
    unless named with --accept-schedule-difference.
    Exit 0 done, 1 stale plan / gate not met / locked, 3 a step failed (re-run to resume).
    """
    ws = Workspace(app.settings)
    chk = C.execute_check(ws, plan_file, wave_no, accept_schedule_difference=accepted)
    p, wave = chk.plan, chk.wave
    say = app.info if as_json else app.echo
    doc = {**chk.as_dict(), "dry_run": dry_run, "applied": [], "skipped": [], "done": False}
    say(f"plan {p.id}, wave {wave.number} ({wave.name}): {len(wave.moves)} ingestion(s)")
    if chk.gate_reasons:
        for iid, why in chk.gate_reasons.items():
            say(f"  gate NOT met for {iid}: {'; '.join(why)}")
        if not dry_run:
            say("nothing was changed")
            if as_json:
                app.json(doc)
            exit_with(chk.exit_code)
    if dry_run:
        res = C.execute(ws, chk, say, dry_run=True)
        say("Dry run: nothing was changed.")
        if as_json:
            app.json({**doc, "would_apply": list(res.applied), "skipped": list(res.skipped)})
        exit_with(chk.exit_code)
        return
    if not yes:
        click.confirm(f"apply wave {wave.number} ({wave.name})?", abort=True, err=as_json)
    res = C.execute(ws, chk, say, reason=reason)
    say(f"wave {wave.number} done: {len(res.applied)} step(s) applied, {len(res.skipped)} already done")
    if as_json:
        app.json({**doc, "applied": list(res.applied), "skipped": list(res.skipped), "done": True})


@click.command()
@click.option("--json", "as_json", is_flag=True)
@pass_app
def status(app: App, as_json: bool) -> None:
    """Per ingestion: state, live owner, schedule state on both sides, and the invariant.

    Exit 1 when an ingestion does not have exactly one live owner (outside an
    operator pause); 3 when a side could not be read.
    """
    res = C.status(Workspace(app.settings))
    st = res.as_dict()
    if as_json:
        app.json(st)
    else:
        if st["lock"]:
            h = st["lock"]
            app.echo(f"LOCKED by {h['holder']} (pid {h['pid']} on {h['host']}) since {iso_time(h['acquired_at'])}: {h['reason']} [lock {h['id']}]")
        if st["active_pause"]:
            app.echo(f"PAUSED by operator: snapshot {st['active_pause']['id']} ({st['active_pause']['reason']})")
        for e in st["errors"]:
            app.echo(f"cannot read: {e}")

        def inv(r):
            if r["invariant_ok"] is None:
                return "unknown"
            if not r["invariant_ok"]:
                return "VIOLATED: " + r["problem"]
            if r.get("operation_in_flight"):
                return f"OK, operation {r['operation_in_flight']} unfinished: re-run it"
            return "OK"

        app.table([(r["id"], r["state"], r["live_owner"], r["legacy"], r["prefect_live"], r["prefect_shadow"], inv(r))
                   for r in st["ingestions"]],
                  ("ingestion", "state", "live owner", "legacy", "prefect live", "prefect shadow", "invariant"))
    exit_with(res.exit_code)


@click.command("log")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def log_cmd(app: App, limit: int, as_json: bool) -> None:
    """The audit trail: every mutating action with who, when, why."""
    rows = C.log(Workspace(app.settings), limit=limit)
    if as_json:
        app.json(rows)
    elif not rows:
        app.echo("the audit log is empty")
    else:
        app.table([(r["at"], r["who"], r["action"], r["target"] or "", r["reason"] or "") for r in rows],
                  ("at", "who", "action", "target", "why"))


@click.command()
@click.argument("lock_id")
@click.option("--dry-run", is_flag=True)
@pass_app
def unlock(app: App, lock_id: str, dry_run: bool) -> None:
    """Break a stale operator lock (the holder is shown by `cutover status`)."""
    res = C.unlock(Workspace(app.settings), lock_id, dry_run=dry_run)
    h = res.holder
    if dry_run:
        app.echo(f"would break lock {lock_id} held by {h['holder']} (pid {h['pid']} on {h['host']})")
        return
    app.echo(f"broke lock {lock_id} held by {h['holder']} (pid {h['pid']} on {h['host']}, {h['reason']})")
