"""`cutover legacy run`: the batch orchestrator's verb, added to the APScheduler side's `legacy`
group by ``cutover.registry`` (loaded by name on use)."""

from __future__ import annotations

import click

from cutover.core.errors import EXIT_FAIL, EXIT_PARTIAL
from cutover.core.output import Output as App
from cutover.core.output import pass_output as pass_app
from cutover.core.workspace import Workspace
from legacy.batch.orchestrator import BatchOrchestrator, IngestionPaused


@click.command("run")
@click.argument("ingestion_ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Run every ingestion.")
@click.option("--trigger", type=click.Choice(["manual", "backfill", "scheduled"]), default="manual", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def run(app: App, ingestion_ids, all_: bool, trigger: str, as_json: bool) -> None:
    """Run ingestions now with the batch orchestrator (manual trigger).

    Exit 0 when every run succeeded, 3 when files or runs failed, 1 when an
    ingestion is paused and was not run.
    """
    ws = Workspace(app.settings)
    items = ws.ingestions.resolve(ingestion_ids, all_=all_)
    orch = BatchOrchestrator(ws)
    results, paused = [], []
    for ing in items:
        try:
            res = orch.run_ingestion(ing.id, trigger=trigger)
        except IngestionPaused as e:
            paused.append(ing.id)
            app.info(f"skipped {ing.id}: {e.one_line()}")
            continue
        results.append(res)
        if not as_json:
            app.echo(f"{ing.id}: {res.status} run {res.run_id[:12]}  discovered {res.discovered}, "
                     f"processed {res.files_processed}, failed {res.files_failed}, skipped {res.files_skipped}"
                     f"{f', recovered {res.files_recovered}' if res.files_recovered else ''}; "
                     f"{res.records_ingested} records, {res.bytes_read} bytes in {res.duration_s:.2f}s")
            for path, reason in res.failures:
                app.echo(f"  FAILED {path}: {reason}")
            if res.error and not res.failures:
                app.echo(f"  error: {res.error}")
    if as_json:
        app.json({"runs": [r.as_dict() for r in results], "paused": paused})
    if any(r.status != "SUCCESS" for r in results):
        raise click.exceptions.Exit(EXIT_PARTIAL)
    if paused:
        raise click.exceptions.Exit(EXIT_FAIL)
