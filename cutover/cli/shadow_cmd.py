"""shadow start | stop | run --once"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import click

from cutover.cli.app import App, pass_app
from cutover.core.errors import EXIT_FAIL, EXIT_PARTIAL, InputError
from cutover.core.workspace import Workspace


@click.group()
def shadow() -> None:
    """Shadow runs: Prefect writes the cutover-shadow branch and the shadow ledger; legacy stays live."""


def _moves(ws, ids, all_, *, to: str):
    from cutover.core.state import states
    from cutover.engine.plan import Move, Step, _args, steps_for

    items = ws.ingestions.resolve(ids, all_=all_)
    cur = states.get_states(ws.state_engine)
    moves, already = [], []
    for ing in items:
        st = cur.get(ing.id, states.LEGACY)
        if to == states.SHADOW:
            if st == states.SHADOW:
                already.append(ing.id)
                continue
            if st not in (states.LEGACY, states.ROLLED_BACK):
                raise InputError(f"{ing.id} is {st}: only LEGACY or ROLLED_BACK ingestions start a shadow",
                                 fix="see `cutover status`")
            moves.append(Move(ing.id, st, states.SHADOW, steps_for(ing.id, st, states.SHADOW, handoff_timeout=0)))
        else:
            if st != states.SHADOW:
                already.append(ing.id)
                continue
            moves.append(Move(ing.id, st, states.LEGACY, (
                Step("pause_prefect", ing.id, _args(mode="shadow")),
                Step("set_state", ing.id, _args(from_state=states.SHADOW, to_state=states.LEGACY)),
            )))
    return moves, already


@shadow.command("start")
@click.argument("ingestion_ids", nargs=-1)
@click.option("--all", "all_", is_flag=True)
@click.option("--dry-run", is_flag=True, help="Show the steps; change nothing.")
@click.option("--reason", default="")
@pass_app
def start(app: App, ingestion_ids, all_, dry_run, reason) -> None:
    """Fork cutover-shadow, seed the shadow ledger, deploy the Prefect shadow deployment on the legacy schedule."""
    from cutover.engine.execute import operation
    from cutover.registry import LiveSides

    ws = Workspace(app.settings)
    moves, already = _moves(ws, ingestion_ids, all_, to="SHADOW")
    for iid in already:
        app.echo(f"{iid}: already in SHADOW")
    if not moves:
        return
    operation(ws, "shadow-start", moves, LiveSides(ws), app.echo, dry_run=dry_run, reason=reason)


@shadow.command("stop")
@click.argument("ingestion_ids", nargs=-1)
@click.option("--all", "all_", is_flag=True)
@click.option("--dry-run", is_flag=True)
@click.option("--reason", default="")
@pass_app
def stop(app: App, ingestion_ids, all_, dry_run, reason) -> None:
    """Pause the shadow deployments and go back to LEGACY (branch and shadow ledger are kept)."""
    from cutover.engine.execute import operation
    from cutover.registry import LiveSides

    ws = Workspace(app.settings)
    moves, already = _moves(ws, ingestion_ids, all_, to="LEGACY")
    for iid in already:
        app.echo(f"{iid}: not in SHADOW, nothing to stop")
    if not moves:
        return
    operation(ws, "shadow-stop", moves, LiveSides(ws), app.echo, dry_run=dry_run, reason=reason)


def wait_flow_run(adapter, flow_run_id: str, timeout: float, poll: float = 1.0) -> str:
    """Wait for a flow run to reach a final state; returns the state type name."""
    from uuid import UUID

    deadline = time.monotonic() + timeout
    while True:
        with adapter.client() as c:
            fr = c.read_flow_run(UUID(flow_run_id))
        st = fr.state
        if st is not None and st.is_final():
            return st.type.value
        if time.monotonic() > deadline:
            return f"TIMEOUT ({st.type.value if st else 'no state'})"
        time.sleep(poll)


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

    Needs the shadow started (`cutover shadow start`) and a Prefect worker
    (`cutover prefect up` starts the local one). Exit 0 pass, 1 fail, 3 a run could not complete.
    """
    from checks.model import PASS
    from checks.parity import run_parity
    from checks.report import render_json, render_md, render_text
    from cutover.core.state import states
    from cutover.core.config import parse_duration
    from cutover.registry import LiveSides, run_legacy_now

    ws = Workspace(app.settings)
    items = ws.ingestions.resolve(ingestion_ids, all_=all_)
    cur = states.get_states(ws.state_engine)
    not_shadow = [i.id for i in items if cur.get(i.id, states.LEGACY) != states.SHADOW]
    if not_shadow:
        raise InputError(f"not in SHADOW: {', '.join(not_shadow)}", fix=f"start it first: cutover shadow start {' '.join(not_shadow)}")
    wait_s = parse_duration(timeout, what="--timeout")
    started = datetime.now(timezone.utc) - timedelta(seconds=1)
    sides = LiveSides(ws)
    prefect = sides.prefect("shadow")
    flow_runs = {i.id: prefect.trigger(i.id) for i in items}  # queued first: the worker starts while legacy runs
    for iid, fr in flow_runs.items():
        app.info(f"{iid}: Prefect shadow flow run {fr} queued")
    legacy_results, errors = {}, []

    def legacy_side():
        # each ingestion as its legacy orchestrator runs it: the batch orchestrator, or the
        # crontab line's command (the wrapper) for a crontab ingestion (cutover.registry / legacy.cron.side)
        legacy = sides.legacy()
        for ing in items:
            try:
                run_id = run_legacy_now(legacy, ing.id, trigger="manual")
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(f"{ing.id} legacy: {e}")
                continue
            rec = ws.runs.find(run_id)
            if rec is None:
                errors.append(f"{ing.id} legacy: run {run_id[:12]} left no run record")
            else:
                legacy_results[ing.id] = rec

    legacy_side()  # meanwhile the Prefect worker runs the shadow flow runs
    for iid, rec in legacy_results.items():
        via = f" via {rec.external_id}" if rec.external_id else ""
        app.info(f"{iid}: legacy run {rec.id[:12]}{via} {rec.status} ({rec.files_processed} file(s), "
                 f"{rec.records_ingested} records)")
    incomplete = []
    for iid, fr in flow_runs.items():
        state = wait_flow_run(prefect, fr, wait_s)
        app.info(f"{iid}: Prefect shadow flow run {fr} {state}")
        if state not in ("COMPLETED", "FAILED"):
            incomplete.append(f"{iid}: {state}")
    for e in errors:
        app.echo(f"error: {e}")
    report = run_parity(ws, items, since=started, store=not no_store)
    d = report.as_dict()
    renderer = {"text": render_text, "json": render_json, "md": render_md}.get(fmt)
    if renderer is None:
        raise InputError(f"--format {fmt} is not one of text, json, md", fix="use cutover parity for html/junit reports")
    app.echo(renderer(d))
    if incomplete or errors:
        app.echo("incomplete: " + "; ".join(incomplete + errors))
        raise click.exceptions.Exit(EXIT_PARTIAL)
    if report.verdict != PASS:
        raise click.exceptions.Exit(EXIT_FAIL)
