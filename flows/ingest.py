"""The Prefect 3 flow that runs one ingestion with the legacy ingestion services.

``run_ingestion(ingestion_id, mode="live", trigger="scheduled")`` does what
``cutover.core.autoloader.service.IngestionService.run`` does, one task per step, so parity
differences are orchestration differences and never re-implementation bugs:

    create-run-record -> discover -> check-state (ledger diff) -> process-file (per file)
    -> complete-run (or fail-run)

- The run record is written with orchestrator ``prefect``, the mode and
  ``external_id`` = the Prefect flow-run id (dual tracking).
- ``mode="shadow"`` writes to the Iceberg branch ``cutover-shadow`` and the
  ledger namespace ``shadow`` (the service picks both from the mode). The branch
  is forked first if missing (``cutover.core.shadowfork.ensure_fork``); when the table
  does not exist yet the run fails without touching any file.
- Tasks that touch storage (source files, ledger, catalog) retry 3 times with
  2/5/10 s back-off; a lost claim or an input error is not retried.
- Final state: Failed when the run record says FAILED; Completed otherwise
  (PARTIAL = Completed, with the failed files in the returned summary).

The worker loads this file by path (entrypoint ``flows/ingest.py:run_ingestion``)
with the repository root as working directory; the workspace comes from the
environment (``CUTOVER_HOME`` etc., set in the deployment's job variables).

Credentials: ``credentials_block`` names the Prefect Secret block that holds the ingestion's
storage options (``flows/delivery.py`` writes it at deploy time); the flow loads it with
``Secret.load(name)`` and uses it instead of any stored copy. The value never appears in a
parameter, a task input or a log line.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed
from cutover.core.autoloader.service import Heartbeat, RunResult
from cutover.core.errors import CutoverError
from cutover.core.records import runs as R
from cutover.core.records.ledger import ClaimLost
from cutover.core.redact import redact_text
from cutover.core.shadowfork import ensure_fork
from cutover.core.workspace import Workspace, process_workspace
from flows.delivery import parse_secret_value

FLOW_NAME = "cutover-ingest"
STORAGE_RETRIES = 3
STORAGE_RETRY_DELAYS = [2, 5, 10]

_credentials: dict[str, dict] = {}  # ingestion id -> storage options loaded from its Secret block


def workspace() -> Workspace:
    """One Workspace per flow-run process (settings from the environment)."""
    return process_workspace()


def load_credentials(ingestion_id: str, block_name: str | None) -> None:
    """Load the ingestion's credentials from the Prefect Secret block ``block_name`` (this process only)."""
    if not block_name:
        _credentials.pop(ingestion_id, None)
        return
    from prefect.blocks.system import Secret

    try:
        value = parse_secret_value(Secret.load(block_name).get())
    except (TypeError, ValueError):
        raise CutoverError(f"Secret block {block_name!r} does not hold a mapping of storage options",
                           fix="re-deploy the ingestion (`cutover prefect deploy`) to rewrite the block") from None
    _credentials[ingestion_id] = value


def ingestion(ingestion_id: str):
    """The ingestion definition, with the credentials of its Secret block when the flow loaded one."""
    ing = workspace().ingestions.get(ingestion_id)
    if ingestion_id in _credentials:
        ing = replace(ing, credentials=dict(_credentials[ingestion_id]))
    return ing


def _retryable(_task, _task_run, state) -> bool:
    """Retry storage errors; never a lost claim (we were fenced) or bad input."""
    exc = getattr(state, "data", None)
    return not isinstance(exc, (ClaimLost, CutoverError))


STORAGE_TASK_OPTIONS = dict(retries=STORAGE_RETRIES, retry_delay_seconds=STORAGE_RETRY_DELAYS,
                            retry_condition_fn=_retryable, cache_policy=NO_CACHE, persist_result=False)


@task(name="create-run-record", **STORAGE_TASK_OPTIONS)
def create_run_record(ingestion_id: str, mode: str, trigger: str, run_id: str, external_id: str | None) -> str:
    ws = workspace()
    if ws.runs.find(run_id) is not None:  # a retry after a commit whose answer was lost
        return run_id
    ing = ingestion(ingestion_id)
    from prefect.runtime import deployment

    if deployment.id:  # the deployment that really started us (the ingestion records the last deployed one)
        ing = replace(ing, prefect_deployment_id=str(deployment.id))
    return ws.service.start_run(ing, orchestrator="prefect", mode=mode, trigger=trigger, external_id=external_id,
                                run_id=run_id)


@task(name="discover", **STORAGE_TASK_OPTIONS)
def discover(ingestion_id: str) -> list:
    ws = workspace()
    files = ws.service.discover(ingestion(ingestion_id))
    get_run_logger().info("discovered %d file(s)", len(files))
    return files


@task(name="check-state", **STORAGE_TASK_OPTIONS)
def check_state(ingestion_id: str, mode: str, files: list) -> list:
    """The ledger diff: files still to process in this namespace (shadow: fork the branch first)."""
    ws = workspace()
    ing = ingestion(ingestion_id)
    if mode == "shadow":
        fork = ensure_fork(ws, ing)
        get_run_logger().info("shadow branch of %s forked at snapshot %s", ing.table, fork)
    todo = ws.service.pending(ing, mode, files)
    get_run_logger().info("%d of %d file(s) to process", len(todo), len(files))
    return todo


@task(name="process-file", task_run_name="process {f.path}", **STORAGE_TASK_OPTIONS)
def process_file(ingestion_id: str, f, run_id: str, mode: str) -> tuple[str, str | None]:
    """Claim and ingest one file: (processed|failed|skipped|recovered, failure reason)."""
    ws = workspace()
    ing = ingestion(ingestion_id)
    res = RunResult(run_id=run_id, ingestion_id=ingestion_id, status="RUNNING")
    outcome = ws.service.process_file(ing, f, run_id=run_id, mode=mode, orchestrator="prefect", result=res)
    reason = res.failures[0][1] if res.failures else None
    if outcome == "failed":
        get_run_logger().warning("%s FAILED: %s", f.path, reason)
    return outcome, reason


@task(name="process-batch", task_run_name="process {n} file(s)", **STORAGE_TASK_OPTIONS)
def process_batch(ingestion_id: str, files: list, run_id: str, mode: str, n: int = 0) -> dict[str, Any]:
    """Claim and ingest a batch of files in one Iceberg commit (``[ingest] batch_files`` per task):
    {"outcomes": {path: processed|failed|skipped|recovered}, "failures": [{file, reason}]}."""
    ws = workspace()
    ing = ingestion(ingestion_id)
    res = RunResult(run_id=run_id, ingestion_id=ingestion_id, status="RUNNING")
    outcomes = ws.service.process_files(ing, files, run_id=run_id, mode=mode, orchestrator="prefect", result=res)
    for path, reason in res.failures:
        get_run_logger().warning("%s FAILED: %s", path, reason)
    return {"outcomes": outcomes, "failures": [{"file": p, "reason": r} for p, r in res.failures]}


@task(name="complete-run", **STORAGE_TASK_OPTIONS)
def complete_run(run_id: str, error: str | None) -> dict[str, Any]:
    """Close the run record: SUCCESS, PARTIAL or FAILED from its counters (or the error)."""
    rec = workspace().service.finish_run(run_id, error=error)
    return rec.as_dict()


def one_line(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".splitlines()[0]
    return redact_text(text)


def release_claims(ledger, run_id: str, logger) -> None:
    try:
        ledger.release(run_id)
    except Exception as e:  # noqa: BLE001 - the claims expire after the claim timeout anyway
        logger.warning("could not release the claims of run %s: %s", run_id, one_line(e))


def abandon_run(ws, ledger, run_id: str, exc: BaseException, logger) -> None:
    """The flow run is being cancelled or killed: give the files back and close the run record now
    (instead of leaving it RUNNING until the claim timeout reaps it as CRASHED)."""
    from prefect.exceptions import TerminationSignal

    status = R.CANCELLED if isinstance(exc, (TerminationSignal, KeyboardInterrupt)) else R.CRASHED
    release_claims(ledger, run_id, logger)
    try:
        ws.runs.finish(run_id, status, error=f"flow run {'cancelled' if status == R.CANCELLED else 'crashed'} "
                                             f"in Prefect ({type(exc).__name__})")
    except Exception as e:  # noqa: BLE001
        logger.warning("could not close run record %s: %s", run_id, one_line(e))


@flow(name=FLOW_NAME, flow_run_name="{ingestion_id}-{mode}-{trigger}", log_prints=False, persist_result=False,
      validate_parameters=True)
def run_ingestion(ingestion_id: str, mode: str = "live", trigger: str = "scheduled",
                  credentials_block: str | None = None):
    """Run one ingestion (live: main branch + live ledger; shadow: cutover-shadow branch + shadow ledger).

    ``credentials_block``: name of the Prefect Secret block with the ingestion's storage options."""
    import time

    from prefect.runtime import flow_run

    if mode not in R.MODES:
        raise ValueError(f"mode must be one of {R.MODES}, got {mode!r}")
    if trigger not in R.TRIGGERS:
        raise ValueError(f"trigger must be one of {R.TRIGGERS}, got {trigger!r}")
    logger = get_run_logger()
    t0 = time.monotonic()
    ws = workspace()
    load_credentials(ingestion_id, credentials_block)
    external_id = flow_run.id
    run_id = create_run_record(ingestion_id, mode, trigger, uuid.uuid4().hex, external_id)
    logger.info("run record %s (orchestrator prefect, mode %s, flow run %s)", run_id, mode, external_id)

    ledger = ws.ledger(ingestion_id, mode)
    hb = Heartbeat(ledger, ws.runs, run_id, interval=max(0.5, min(30.0, ws.settings.claim_timeout / 3)))
    hb.start()
    error: str | None = None
    counts = {"discovered": 0, "processed": 0, "failed": 0, "skipped": 0, "recovered": 0}
    failures: list[dict[str, str]] = []
    try:
        files = discover(ingestion_id)
        counts["discovered"] = len(files)
        todo = check_state(ingestion_id, mode, files)
        step = max(1, int(ws.settings.batch_files))  # one task, one Iceberg commit per batch
        for i in range(0, len(todo), step):
            chunk = todo[i:i + step]
            out = process_batch(ingestion_id, chunk, run_id, mode, n=len(chunk))
            for outcome in out["outcomes"].values():
                counts[outcome] = counts.get(outcome, 0) + 1
            failures.extend(out["failures"])
    except ClaimLost as e:
        error = f"{e}: this run was considered dead (no heartbeat within the claim timeout)"
    except Exception as e:  # noqa: BLE001 - recorded on the run record; the flow run fails below
        error = one_line(e)
        release_claims(ledger, run_id, logger)
    except BaseException as e:  # cancelled (SIGTERM from the worker: TerminationSignal), interrupted
        abandon_run(ws, ledger, run_id, e, logger)
        raise
    finally:
        hb.stop()
    if counts["skipped"]:
        ws.runs.add_skipped(run_id, counts["skipped"])
    rec = complete_run(run_id, error)
    summary = {
        "run_id": run_id,
        "ingestion_id": ingestion_id,
        "mode": mode,
        "trigger": trigger,
        "flow_run_id": external_id,
        "status": rec["status"],
        **counts,
        "files_processed": rec["files_processed"],
        "files_failed": rec["files_failed"],
        "records_ingested": rec["records_ingested"],
        "bytes_read": rec["bytes_read"],
        "error": rec["error"],
        "failures": failures,
        "duration_s": round(time.monotonic() - t0, 3),
    }
    logger.info("run %s %s: processed %d, failed %d, skipped %d; %d records",
                run_id, rec["status"], rec["files_processed"], rec["files_failed"], counts["skipped"],
                rec["records_ingested"])
    if rec["status"] == R.FAILED:
        return Failed(message=f"run {run_id} FAILED: {rec['error']}", data=summary)
    return summary


if __name__ == "__main__":  # pragma: no cover - manual use: python flows/ingest.py ID [MODE]
    import sys

    print(run_ingestion(sys.argv[1], *(sys.argv[2:3] or ["live"]), trigger="manual"))
