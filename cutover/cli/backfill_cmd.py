"""`cutover backfill INGESTION --start D --end D [--chunk daily] [--mode live] [--dry-run] [--local]`.

Thin: the flow and its semantics are in ``flows/backfill.py``. prefect is imported
inside the command only.
"""

from __future__ import annotations

import time

import click

from cutover.cli.app import App, pass_app
from cutover.core.errors import EXIT_PARTIAL, InputError
from cutover.core.workspace import Workspace

CHUNKS = ("daily", "weekly", "monthly")


@click.command("backfill")
@click.argument("ingestion_id")
@click.option("--start", required=True, help="First date (YYYY-MM-DD, included).")
@click.option("--end", required=True, help="Last date (YYYY-MM-DD, included).")
@click.option("--chunk", type=click.Choice(CHUNKS), default="daily", show_default=True)
@click.option("--mode", type=click.Choice(["live", "shadow"]), default="live", show_default=True,
              help="live: main branch + live ledger; shadow: cutover-shadow branch + shadow ledger.")
@click.option("--dry-run", is_flag=True, help="Show the chunks, their files and what would run; change nothing.")
@click.option("--local", is_flag=True, help="Run the flow in this process (a flow call) instead of on a worker.")
@click.option("--no-wait", is_flag=True, help="With a worker: return once the flow run is created.")
@click.option("--timeout", default="1h", show_default=True, help="How long to wait for the worker's flow run.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def backfill(app: App, ingestion_id, start, end, chunk, mode, dry_run, local, no_wait, timeout, as_json) -> None:
    """Ingest the files of a date range chunk by chunk with the Prefect backfill flow.

    A file's date is the first date in its name (else in its path, else its mtime); each
    chunk is one run record (trigger backfill); files already in the ledger are skipped, so
    nothing is ingested twice. Chunks already done are skipped on a re-run: resumable.
    Exit 0 all chunks done, 3 some chunk failed (the summary lists them), 2 bad input.
    """
    from cutover.cli.prefect_cmd import _settings_env

    settings = _settings_env(app, dry_run=dry_run)
    from flows import backfill as B

    s, e = B.parse_date(start, "--start"), B.parse_date(end, "--end")
    B.chunk_ranges(s, e, chunk)  # validates the range before anything else
    ws = Workspace(settings)
    if dry_run:
        _dry_run(app, ws, B, ingestion_id, s, e, chunk, mode, as_json)
        return
    ing = ws.ingestions.get(ingestion_id)
    if local:
        summary = _local(app, ws, B, ingestion_id, s, e, chunk, mode)
    else:
        summary = _on_worker(app, ws, B, ing, s, e, chunk, mode, no_wait=no_wait, timeout=timeout)
        if summary is None:
            return
    if as_json:
        app.json(summary)
    else:
        app.echo(B.format_summary(summary))
    if summary.get("failed") or summary.get("flow_state") not in (None, "COMPLETED"):
        raise click.exceptions.Exit(EXIT_PARTIAL)


def _dry_run(app, ws, B, iid, s, e, chunk, mode, as_json) -> None:
    ing, chunks, undated = B.plan(ws, iid, s, e, chunk)
    recorded = B.Progress(ws.settings, iid, mode).chunks()
    ledger = ws.ledger(iid, mode)
    rows = []
    for c in chunks:
        st = recorded.get(c.key, {}).get("status")
        pending = ledger.diff(c.files) if c.files else []
        action = "skip (done)" if st in (B.DONE, B.EMPTY) else ("empty" if not c.files else "would run")
        rows.append({"chunk": c.key, "files": len(c.files), "pending": len(pending), "recorded": st or "-",
                     "action": action})
    if as_json:
        app.json({"ingestion_id": iid, "mode": mode, "chunks": rows, "undated_files": undated, "dry_run": True})
        return
    app.table([(r["chunk"], r["files"], r["pending"], r["recorded"], r["action"]) for r in rows],
              ["CHUNK", "FILES", "NOT IN LEDGER", "RECORDED", "ACTION"])
    if undated:
        app.echo(f"{len(undated)} file(s) without a date would be left out, e.g. {undated[0]}")
    app.echo("Dry run: nothing was changed.")


def _api_url(app, ws) -> str:
    from flows.local import api_url

    return api_url(ws.settings, echo=app.info)


def _local(app, ws, B, iid, s, e, chunk, mode) -> dict:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = _api_url(app, ws)
    with temporary_settings(updates={PREFECT_API_URL: url}):
        state = B.backfill(iid, s.isoformat(), e.isoformat(), chunk, mode, return_state=True)
    data = state.result(raise_on_failure=False)
    if isinstance(data, BaseException) or not isinstance(data, dict):
        raise InputError(f"the backfill flow ended {state.type.value}: {state.message or data}",
                         fix="see the flow run's logs")
    return {**data, "flow_state": state.type.value}


def _on_worker(app, ws, B, ing, s, e, chunk, mode, *, no_wait: bool, timeout: str) -> dict | None:
    from flows import local as pl
    from cutover.core.config import parse_duration

    url = _api_url(app, ws)
    wait_s = parse_duration(timeout, what="--timeout")
    with pl.client(url) as c:
        fr_id = B.submit(c, ws, ing, start=s.isoformat(), end=e.isoformat(), chunk=chunk, mode=mode)
        app.info(f"backfill flow run {fr_id} queued on work queue {ing.work_queue} of pool "
                 f"{ws.settings.prefect_work_pool}")
        if no_wait:
            app.echo(fr_id)
            return None
        deadline = time.monotonic() + wait_s
        while True:
            fr = c.read_flow_run(fr_id)
            if fr.state is not None and fr.state.is_final():
                break
            if time.monotonic() > deadline:
                raise InputError(f"flow run {fr_id} is not finished after {timeout} "
                                 f"({fr.state.type.value if fr.state else 'no state'})",
                                 fix="is a worker running for the pool? (`cutover prefect up`)")
            time.sleep(1.0)
    rows = B.status_of_range(B.Progress(ws.settings, ing.id, mode), s, e, chunk)
    failed = [r for r in rows if r["status"] not in (B.DONE, B.EMPTY)]
    return {"ingestion_id": ing.id, "mode": mode, "start": s.isoformat(), "end": e.isoformat(), "chunk": chunk,
            "chunks": len(rows), "done": sum(r["status"] == B.DONE for r in rows), "skipped": 0,
            "empty": sum(r["status"] == B.EMPTY for r in rows), "failed": len(failed),
            "failed_chunks": [{"chunk": r["chunk"], "error": r.get("error") or r["status"],
                               "failed_files": r.get("failed_files") or []} for r in failed],
            "progress_file": str(B.Progress(ws.settings, ing.id, mode).path), "flow_run_id": fr_id,
            "flow_state": fr.state.type.value}
