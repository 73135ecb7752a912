"""Cancelling an ingestion's in-flight Prefect flow runs and seeing their claims released
(the ``cancel_prefect`` step of `cutover rollback --cancel-running`)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from cutover.core.records import runs as R


def cancel_in_flight(ws, sides, iid: str, *, timeout: float = 120.0, poll: float = 1.0) -> str:
    """Cancel the ingestion's in-flight Prefect flow runs (both modes) and see their claims released.

    ``PrefectAdapter.cancel_running`` sets Running/Pending runs Cancelling (the worker kills
    the process: the flow then releases its claims and closes its run record CANCELLED) and
    Scheduled ones Cancelled. Then, up to ``timeout``, wait for the ingestion's Prefect run
    records to leave RUNNING. A record still RUNNING whose process is gone (heartbeat older
    than the claim timeout, or its flow run final in Prefect) is closed here: its PROCESSING
    claims deleted (``Ledger.release``) and the record ended CANCELLED. The files become new
    again; a file whose rows had already been committed is recognised by its snapshot
    properties on the next run and never appended twice. Raises TimeoutError when a run is
    still alive after ``timeout`` (the step is then retried by the next run of the command).
    """
    n = 0
    for mode in ("live", "shadow"):
        n += sides.prefect(mode).cancel_running(iid)
    deadline = time.monotonic() + timeout
    closed = released = 0
    while True:
        running = [r for r in ws.runs.list(ingestion_id=iid, orchestrator="prefect", limit=100)
                   if r.status == R.RUNNING]
        if not running:
            break
        stale_before = datetime.now(timezone.utc) - timedelta(seconds=ws.settings.claim_timeout)
        late = time.monotonic() >= deadline
        still = []
        for r in running:
            gone = r.heartbeat_at is None or r.heartbeat_at < stale_before
            if not gone and late and r.external_id:
                state = _flow_run_state(sides, r.mode, r.external_id)
                gone = state is not None and state in ("CANCELLED", "CRASHED", "FAILED", "COMPLETED")
            if gone:
                released += ws.ledger(iid, r.mode).release(r.id)
                ws.runs.finish(r.id, R.CANCELLED, error="cancelled by cutover rollback: the flow run process was "
                                                        "gone, its claims were released")
                closed += 1
            else:
                still.append(r)
        if not still:
            break
        if late:
            raise TimeoutError(f"{len(still)} Prefect run(s) of {iid} still running {timeout:.0f}s after the "
                               f"cancellation (flow run {still[0].external_id})")
        time.sleep(poll)
    return (f"{n} flow run(s) cancelled" + (f", {closed} run record(s) closed by cutover ({released} claim(s) released)"
                                            if closed else ""))


def _flow_run_state(sides, mode: str, flow_run_id: str) -> str | None:
    try:
        return sides.prefect(mode if mode in ("live", "shadow") else "live").flow_run_state(flow_run_id)
    except Exception:  # noqa: BLE001 - unknown: treated as alive
        return None
