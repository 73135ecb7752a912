"""The Prefect 3 flow that runs an RQ workflow's DAG: the same steps, as tasks, parallel where the graph allows.

``run_workflow(ingestion_id, mode, trigger, steps)`` is the Prefect side of an ingestion whose
legacy side is an RQ workflow (``legacy/rq``). ``steps`` is the workflow's DAG in its parameter
form (``cutover.core.workflow.Workflow.steps_dicts()``: name, kind, depends_on, partition), set by
the deployment builder (``flows/deploy.py``) from rq.json, so the flow needs no Redis and the
DAG is visible (and diffed) on the deployment.

Each step is one task, submitted with ``wait_for`` = its upstream steps' futures, so steps
whose dependencies are done run at the same time on the task runner's threads (the ingest
partitions of ``discover -> [ingest-0 | ingest-1] -> publish`` run concurrently):

- ``discover``: (shadow: fork the branch first) list the source, diff the ledger of the mode's
  namespace: the pending files;
- ``ingest`` (partition i of n): ``process_files`` (in batches) for the pending files with
  ``crc32(path) % n == i`` -- claims, one Iceberg snapshot per file on the mode's branch;
- ``publish``: waits for every upstream step whatever its outcome (``allow_failure``) and
  closes the run record: SUCCESS / PARTIAL / FAILED from the counters, FAILED with the first
  step error when a step failed (claims it still held are released).

The run record (orchestrator ``prefect``, the mode, external id = the flow-run id) is created
before the DAG and heartbeated while it runs; ``mode="shadow"`` writes the branch
``cutover-shadow`` and the ``shadow`` ledger namespace only. The flow has the same name as the
plain ingestion flow (``cutover-ingest``): deployments keep their names
(``cutover-ingest/<ingestion>-<mode>``), only their entrypoint differs.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.futures import wait
from prefect.utilities.annotations import allow_failure

from cutover.core.autoloader.discovery import DiscoveredFile
from cutover.core.autoloader.service import Heartbeat, RunResult
from cutover.core.records import runs as R
from cutover.core.shadowfork import ensure_fork
from cutover.core.workflow import default_steps, partition_of, workflow_from_steps
from flows.ingest import (FLOW_NAME, STORAGE_TASK_OPTIONS, abandon_run, create_run_record, one_line, release_claims,
                          workspace)


@task(name="discover-pending", task_run_name="{step}", **STORAGE_TASK_OPTIONS)
def discover_step(ingestion_id: str, mode: str, step: str) -> list[dict[str, Any]]:
    """The files still to process in the mode's namespace (shadow: the branch is forked first)."""
    ws = workspace()
    ing = ws.ingestions.get(ingestion_id)
    if mode == "shadow":
        ensure_fork(ws, ing)
    files = ws.service.discover(ing)
    todo = ws.service.pending(ing, mode, files)
    get_run_logger().info("%d file(s) discovered, %d to process", len(files), len(todo))
    return [{"path": f.path, "size": f.size, "etag": f.etag, "mtime": f.mtime} for f in todo]


@task(name="ingest-partition", task_run_name="{step}", cache_policy=STORAGE_TASK_OPTIONS["cache_policy"], persist_result=False)
def ingest_step(ingestion_id: str, mode: str, step: str, run_id: str, files: list[dict[str, Any]],
                partition: list[int]) -> dict[str, Any]:
    """Claim and ingest the pending files of one partition, one after the other."""
    ws = workspace()
    ing = ws.ingestions.get(ingestion_id)
    idx, count = int(partition[0]), int(partition[1])
    mine = [DiscoveredFile(**f) for f in files if partition_of(f["path"], count) == idx]
    res = RunResult(run_id=run_id, ingestion_id=ingestion_id, status="RUNNING")
    counts: dict[str, Any] = {"files": len(mine), "processed": 0, "failed": 0, "skipped": 0, "recovered": 0}
    for outcome in ws.service.process_files(ing, mine, run_id=run_id, mode=mode, orchestrator="prefect",
                                            result=res).values():  # in batches: one commit each
        counts[outcome] = counts.get(outcome, 0) + 1
    counts["failures"] = [{"file": p, "reason": r} for p, r in res.failures]
    get_run_logger().info("partition %d/%d: %s", idx, count, {k: v for k, v in counts.items() if k != "failures"})
    return counts


@task(name="publish-run", task_run_name="{step}", cache_policy=STORAGE_TASK_OPTIONS["cache_policy"], persist_result=False)
def publish_step(ingestion_id: str, mode: str, step: str, run_id: str, error: str | None, skipped: int) -> dict:
    ws = workspace()
    if skipped:
        ws.runs.add_skipped(run_id, skipped)
    if error is not None:
        ws.ledger(ingestion_id, mode).release(run_id)
    rec = ws.service.finish_run(run_id, error=error)
    return rec.as_dict()


def _outcome(fut) -> tuple[Any, str | None]:
    """(result, None) of a finished task future, or (None, the error) when it failed."""
    state = fut.state
    if state.is_completed():
        return fut.result(), None
    try:
        fut.result(raise_on_failure=True)
    except BaseException as e:  # noqa: BLE001 - the task's own exception
        return None, one_line(e)
    return None, f"task ended {state.type.value}"


@flow(name=FLOW_NAME, flow_run_name="{ingestion_id}-{mode}-{trigger}", log_prints=False, persist_result=False,
      validate_parameters=True)
def run_workflow(ingestion_id: str, mode: str = "live", trigger: str = "scheduled",
                 steps: list[dict[str, Any]] | None = None):
    """Run an RQ workflow's DAG (live: main branch + live ledger; shadow: cutover-shadow + shadow ledger)."""
    from prefect.runtime import flow_run

    if mode not in R.MODES:
        raise ValueError(f"mode must be one of {R.MODES}, got {mode!r}")
    if trigger not in R.TRIGGERS:
        raise ValueError(f"trigger must be one of {R.TRIGGERS}, got {trigger!r}")
    wf = workflow_from_steps(ingestion_id, steps or [s.as_dict() for s in default_steps(1)],
                             where=f"parameter steps of {ingestion_id}")
    logger = get_run_logger()
    t0 = time.monotonic()
    ws = workspace()
    external_id = flow_run.id
    run_id = create_run_record(ingestion_id, mode, trigger, uuid.uuid4().hex, external_id)
    logger.info("run record %s (orchestrator prefect, mode %s, flow run %s): %s", run_id, mode, external_id,
                wf.describe())
    ledger = ws.ledger(ingestion_id, mode)
    hb = Heartbeat(ledger, ws.runs, run_id, interval=max(0.5, min(30.0, ws.settings.claim_timeout / 3)))
    hb.start()
    futures: dict[str, Any] = {}
    try:
        discover = next(s for s in wf.steps if s.kind == "discover")
        for s in wf.order():
            deps = [futures[d] for d in s.depends_on]
            if s.kind == "discover":
                futures[s.name] = discover_step.submit(ingestion_id, mode, s.name)
            elif s.kind == "ingest":
                futures[s.name] = ingest_step.submit(ingestion_id, mode, s.name, run_id, futures[discover.name],
                                                     list(s.partition), wait_for=deps)
            else:  # publish: after every upstream step, whatever its outcome
                ups = sorted(wf.upstream(s.name))
                wait([futures[u] for u in ups])
                error, skipped, failures = None, 0, []
                for u in wf.order():
                    if u.name not in ups:
                        continue
                    res, err = _outcome(futures[u.name])
                    if err is not None and error is None:
                        error = f"step {u.name}: {err}"
                    if isinstance(res, dict):
                        skipped += int(res.get("skipped") or 0)
                        failures += res.get("failures") or []
                futures[s.name] = publish_step.submit(ingestion_id, mode, s.name, run_id, error, skipped,
                                                      wait_for=[allow_failure(futures[u]) for u in ups])
        rec = futures[next(s.name for s in wf.steps if s.kind == "publish")].result()
    except BaseException as e:  # cancelled (TerminationSignal), interrupted, or the publish task itself failed
        if isinstance(e, Exception):
            release_claims(ledger, run_id, logger)
            ws.runs.finish(run_id, R.FAILED, error=one_line(e))
            raise
        abandon_run(ws, ledger, run_id, e, logger)
        raise
    finally:
        hb.stop()
    summary = {"run_id": run_id, "ingestion_id": ingestion_id, "mode": mode, "trigger": trigger,
               "flow_run_id": external_id, "status": rec["status"], "steps": wf.describe(),
               "files_processed": rec["files_processed"], "files_failed": rec["files_failed"],
               "records_ingested": rec["records_ingested"], "bytes_read": rec["bytes_read"], "error": rec["error"],
               "failures": failures, "duration_s": round(time.monotonic() - t0, 3)}
    logger.info("run %s %s: processed %d, failed %d; %d records", run_id, rec["status"], rec["files_processed"],
                rec["files_failed"], rec["records_ingested"])
    if rec["status"] == R.FAILED:
        from prefect.states import Failed

        return Failed(message=f"run {run_id} FAILED: {rec['error']}", data=summary)
    return summary
