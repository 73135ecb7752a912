"""What the RQ workers run: the kickoff of a scheduled workflow and each step of a workflow run.

Every step calls the shared ingestion service (``cutover/core/autoloader/service.py``), so the ledger claims,
the one-snapshot-per-file Iceberg appends with their ``cutover.*`` tags and the run record
are exactly what the other legacy orchestrators and the Prefect flows produce:

- ``discover``: refuses to start the run (the run becomes SKIPPED, no run record) when the
  ingestion is held (RQ pause), batch-paused, fenced by an incident pause, or the run was
  cancelled; else creates the run record (id = the workflow run id, orchestrator ``legacy``,
  mode ``live``, external id ``rq:<discover job id>``), lists the source, diffs the ledger and
  records the pending files in the run state;
- ``ingest`` (partition i of n): claims and ingests the pending files whose
  ``crc32(path) % n == i``, heartbeating the run and its claims; stops between files when the
  run is cancelled; a step whose upstream failed does nothing;
- ``publish``: closes the run record -- SUCCESS/PARTIAL/FAILED from the counters, FAILED with
  the first step error when a step failed (the claims the failed step still held are released:
  the files are new again, and a file whose rows were committed is recognised by its snapshot
  on the next run), CANCELLED when cancelled.

A step that fails raises, so RQ records it in the FailedJobRegistry (with the traceback) --
and the next steps still run (``allow_failure``) to close the run.

The workspace of the job is the one the definition recorded (``CUTOVER_HOME`` and the
non-secret ``CUTOVER_*`` overrides of the process that synced it, as Prefect deployments carry
it), over the worker's own environment: one worker pool can serve several workspaces, and
secrets come from the worker's environment or ``cutover.toml``, never from Redis.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timezone

from cutover.core.autoloader.discovery import DiscoveredFile
from cutover.core.autoloader.service import Heartbeat, RunResult
from cutover.core.config import load_settings
from cutover.core.records import runs as R
from cutover.core.records.ledger import ClaimLost
from cutover.core.redact import redact_text
from cutover.core.state.fence import legacy_fence
from cutover.core.workspace import Workspace
from legacy.rq.model import partition_of, workflow_from_steps
from legacy.rq.store import Store

log = logging.getLogger("cutover.rq.jobs")
UTC = timezone.utc
_WORKSPACES: dict[str, object] = {}


def _store(prefix: str):
    from rq import get_current_job

    job = get_current_job()
    if job is None:  # pragma: no cover - only ever run by a worker
        raise RuntimeError("this function runs inside an RQ job")
    return Store(job.connection, prefix), job


def workspace(env: dict[str, str] | None):
    """The cutover workspace of a job: the definition's env over the worker's environment."""
    merged = {**os.environ, **(env or {})}
    key = repr(sorted((k, v) for k, v in merged.items() if k.startswith("CUTOVER_")))
    ws = _WORKSPACES.get(key)
    if ws is None:
        ws = Workspace(load_settings(merged))
        _WORKSPACES[key] = ws
    return ws


def _one_line(e: BaseException) -> str:
    return redact_text(f"{type(e).__name__}: {e}".splitlines()[0])[:500]


# -- the schedule ------------------------------------------------------------------------------


def kickoff(prefix: str, ingestion_id: str, fire_ts: int) -> dict:
    """A scheduled fire time has come: place the next kickoff, then enqueue the workflow run
    (unless held, or later than the misfire grace time: such a run is skipped, not run late)."""
    store, job = _store(prefix)
    fire = datetime.fromtimestamp(fire_ts, UTC)
    d = store.read_def(ingestion_id)
    if d is None:
        log.warning("kickoff of %s: no RQ definition any more (removed): nothing to do", ingestion_id)
        return {"status": "no-definition"}
    nxt = store.next_fire(d, after=fire)
    if nxt is not None:  # first, so that nothing below can break the chain
        store.place_kickoff(d, nxt)
    late = (datetime.now(UTC) - fire).total_seconds()
    out = {"fire_time": fire.isoformat(), "next": nxt.isoformat() if nxt else None}
    if store.is_held(ingestion_id):
        log.info("kickoff of %s at %s skipped: held (paused)", ingestion_id, fire.isoformat())
        return {**out, "status": "held"}
    grace = d.opt("misfire_s", 300)
    if late > grace:
        log.warning("kickoff of %s for %s skipped: %.0fs late (misfire grace %ss)", ingestion_id, fire.isoformat(),
                    late, grace)
        return {**out, "status": "misfired", "late_s": round(late, 1)}
    run_id = store.enqueue_run(d, trigger="scheduled")
    return {**out, "status": "enqueued", "run_id": run_id}


# -- the steps -----------------------------------------------------------------------------------


def run_step(prefix: str, run_id: str, step: str) -> dict:
    store, job = _store(prefix)
    run = store.read_run(run_id)
    if run is None:
        raise RuntimeError(f"workflow run {run_id} has no state in Redis (expired after run_ttl?)")
    wf = workflow_from_steps(run["ingestion_id"], run["workflow"], where=f"run {run_id}")
    s = wf.step(step)
    fn = {"discover": _discover, "ingest": _ingest, "publish": _publish}[s.kind]
    return fn(store, job, run, wf, s)


def _discover(store, job, run, wf, s) -> dict:
    run_id, iid = run["run_id"], run["ingestion_id"]
    ws = workspace(run.get("env"))

    def skip(why: str, status: str = "SKIPPED") -> dict:
        store.set_run(run_id, status=status, reason=why, ended_at=datetime.now(UTC).isoformat())
        store.mark_step(run_id, s.name, "skipped")
        log.info("workflow run %s of %s not started: %s", run_id, iid, why)
        return {"status": status, "reason": why}

    if run.get("cancel"):
        return skip("cancelled before it started", "CANCELLED")
    ing = ws.ingestions.find(iid)
    if ing is None:
        store.set_run(run_id, status="FAILED", ended_at=datetime.now(UTC).isoformat())
        store.mark_step(run_id, s.name, "failed", f"ingestion {iid} is not in the inventory")
        raise RuntimeError(f"ingestion {iid} is not in the inventory of {ws.settings.home}")
    held = store.hold_info(iid)
    if held is not None:
        return skip(f"held (paused) since {str(held.get('at'))[:19]}")
    if ing.batch_paused:
        return skip("the ingestion is paused on the legacy side (batch flag)")
    fenced = legacy_fence(ws, iid)
    if fenced:
        return skip(fenced)
    if ws.runs.find(run_id) is None:
        ws.service.start_run(ing, orchestrator="legacy", mode="live", trigger=run.get("trigger") or "scheduled",
                             external_id=f"rq:{job.id}", run_id=run_id)
    store.set_run(run_id, status="RUNNING", record="1", started_at=datetime.now(UTC).isoformat())
    try:
        files = ws.service.discover(ing)
        todo = ws.service.pending(ing, "live", files)
    except Exception as e:  # noqa: BLE001 - the run is failed by publish with this error; RQ keeps the traceback
        store.mark_step(run_id, s.name, "failed", _one_line(e))
        raise
    store.set_run(run_id, files=[{"path": f.path, "size": f.size, "etag": f.etag, "mtime": f.mtime} for f in todo],
                  discovered=len(files))
    store.mark_step(run_id, s.name, "done")
    return {"status": "done", "discovered": len(files), "pending": len(todo)}


def _upstream_failed(store, run, wf, s) -> str | None:
    """Why this step must not run: an upstream step failed (in cutover's state or in RQ)."""
    for dep in sorted(wf.upstream(s.name)):
        outcome = run.get(f"step:{dep}")
        if outcome in ("failed", "upstream_failed"):
            return f"step {dep} {outcome.replace('_', ' ')}"
    ids = {run["jobs"][d]: d for d in s.depends_on}
    for jid, st in store.job_statuses(ids).items():
        if st in ("failed", "stopped", "canceled"):
            return f"step {ids[jid]} {st} in RQ"
    return None


def _ingest(store, job, run, wf, s) -> dict:
    run_id, iid = run["run_id"], run["ingestion_id"]
    if run.get("status") != "RUNNING":
        store.mark_step(run_id, s.name, "skipped")
        return {"status": "skipped", "reason": f"run {run.get('status', '?').lower()}"}
    why = _upstream_failed(store, run, wf, s)
    if why:
        store.mark_step(run_id, s.name, "upstream_failed")
        return {"status": "upstream_failed", "reason": why}
    idx, count = s.partition
    files = [DiscoveredFile(**f) for f in run.get("files") or [] if partition_of(f["path"], count) == idx]
    ws = workspace(run.get("env"))
    ing = ws.ingestions.get(iid)
    ledger = ws.ledger(iid, "live")
    hb = Heartbeat(ledger, ws.runs, run_id, interval=max(0.5, min(30.0, ws.settings.claim_timeout / 3)))
    hb.start()
    counts = {"processed": 0, "failed": 0, "skipped": 0, "recovered": 0}
    res = RunResult(run_id=run_id, ingestion_id=iid, status="RUNNING")
    try:
        step = max(1, int(ws.settings.batch_files))
        for i in range(0, len(files), step):  # a cancel is honoured between batches (one commit each)
            if store.conn.hexists(store.k_run(run_id), "cancel"):
                store.mark_step(run_id, s.name, "cancelled")
                return {"status": "cancelled", **counts}
            for outcome in ws.service.process_files(ing, files[i:i + step], run_id=run_id, mode="live",
                                                    orchestrator="legacy", result=res).values():
                counts[outcome] = counts.get(outcome, 0) + 1
    except ClaimLost as e:
        store.mark_step(run_id, s.name, "failed", f"{e}: this run was considered dead (no heartbeat within the "
                                                  f"claim timeout)")
        raise
    except Exception as e:  # noqa: BLE001 - recorded for publish; re-raised for RQ's FailedJobRegistry
        store.mark_step(run_id, s.name, "failed", _one_line(e))
        raise
    finally:
        hb.stop()
        store.incr(run_id, "skipped", counts["skipped"])
        store.incr(run_id, "recovered", counts["recovered"])
    store.mark_step(run_id, s.name, "done")
    return {"status": "done", "files": len(files), **counts}


def _publish(store, job, run, wf, s) -> dict:
    run_id, iid = run["run_id"], run["ingestion_id"]
    if run.get("status") != "RUNNING" or not run.get("record"):
        store.mark_step(run_id, s.name, "skipped")
        return {"status": "skipped", "reason": f"run {run.get('status', '?').lower()}"}
    ws = workspace(run.get("env"))
    error = run.get("error")
    if error is None:  # a step that died without a word (worker killed: AbandonedJobError, timeout)
        others = {run["jobs"][n]: n for n in run["jobs"] if n != s.name}
        bad = {jid: st for jid, st in store.job_statuses(others).items() if st in ("failed", "stopped", "canceled")}
        if bad:
            errs = store.job_errors(bad)
            jid = sorted(bad)[0]
            error = f"step {others[jid]} {bad[jid]} in RQ: {errs.get(jid, '')}".rstrip(": ")
    skipped = int(run.get("skipped") or 0)
    if skipped:
        ws.runs.add_skipped(run_id, skipped)
    if run.get("cancel") and error is None:
        released = ws.ledger(iid, "live").release(run_id)
        rec = ws.runs.finish(run_id, R.CANCELLED, error=f"cancelled (cutover rq cancel); {released} claim(s) released")
    else:
        if error is not None:
            ws.ledger(iid, "live").release(run_id)  # claims a dead step still held: the files are new again
        rec = ws.service.finish_run(run_id, error=error)
    store.set_run(run_id, status=rec.status, ended_at=datetime.now(UTC).isoformat())
    store.mark_step(run_id, s.name, "done")
    log.info("workflow run %s of %s %s: %d file(s), %d record(s)", run_id, iid, rec.status, rec.files_processed,
             rec.records_ingested)
    return {"status": rec.status, "files_processed": rec.files_processed, "files_failed": rec.files_failed,
            "records": rec.records_ingested, "error": rec.error}


def wait_for(store, run_id: str, *, timeout: float, poll: float = 0.2) -> dict:
    """Poll the run state until the run has ended (SKIPPED, CANCELLED, or closed by publish) and
    no worker still executes one of its jobs: publish closes the record from inside its job, and
    RQ marks that job finished only once the function has returned, so "ended" without the second
    wait could be seen while RQ still shows the step as started."""
    deadline = time.monotonic() + timeout
    while True:
        run = store.read_run(run_id) or {}
        if run.get("status") not in (None, "PENDING", "RUNNING"):
            job_ids = list((run.get("jobs") or {}).values())
            if "started" not in store.job_statuses(job_ids).values():
                return run
        if time.monotonic() >= deadline:
            return run
        time.sleep(poll)
