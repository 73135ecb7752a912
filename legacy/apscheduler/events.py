"""The APScheduler process's event log: job errors and missed run times, one JSON line each.

APScheduler keeps no history: an ``EVENT_JOB_ERROR`` (the job function raised -- e.g. before the
ingestion service could write its run record) or an ``EVENT_JOB_MISSED`` (a run time passed
beyond ``misfire_grace_time``, nothing ran) is gone once the process has said it. The scheduler
process (:func:`legacy.apscheduler.process.run_foreground`) appends each to
``$CUTOVER_HOME/legacy/apscheduler-events.jsonl`` so that parity can find the runs that left no
run record (:func:`read_orphan_runs`, registered in ``cutover.registry.ORPHAN_RUN_READERS``).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cutover.core.redact import redact_text
from cutover.protocol import OrphanRun

ERROR, MISSED = "error", "missed"
# a run record started this long before the scheduled run time still belongs to it (clock skew)
SLACK = timedelta(seconds=5)


def event_log(settings) -> Path:
    return Path(settings.home) / "legacy" / "apscheduler-events.jsonl"


def record_event(settings, kind: str, *, job_id: str, scheduled_at: datetime | None, error: str | None = None,
                 at: datetime | None = None) -> None:
    """Append one event (one ``write`` of one line with O_APPEND: whole lines even with several writers)."""
    path = event_log(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"kind": kind, "job_id": job_id, "at": (at or datetime.now(timezone.utc)).isoformat(),
                       "scheduled_at": scheduled_at.isoformat() if scheduled_at else None,
                       "error": redact_text(error)[:500] if error else None}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read_events(settings, *, since: datetime | None = None) -> list[dict]:
    path = event_log(settings)
    if not path.exists():
        return []
    out = []
    with open(path, errors="replace") as fh:
        for raw in fh:
            try:
                d = json.loads(raw)
                d["at"] = datetime.fromisoformat(d["at"])
                d["scheduled_at"] = datetime.fromisoformat(d["scheduled_at"]) if d.get("scheduled_at") else None
            except (ValueError, KeyError, TypeError):
                continue  # a torn or foreign line
            if since is None or d["at"] >= since:
                out.append(d)
    return out


def read_orphan_runs(ws, *, since: datetime | None, ingestion_ids: list[str]) -> list[OrphanRun] | None:
    """Job errors with no legacy run record between their scheduled time and the error, and missed
    run times (`cutover.protocol.OrphanRun`). None when the scheduler never logged an event here."""
    if not event_log(ws.settings).exists():
        return None
    wanted = set(ingestion_ids)
    out = []
    runs: dict[str, list] = {}
    for ev in read_events(ws.settings, since=since):
        iid = ev["job_id"]
        if iid not in wanted:
            continue
        start = (ev["scheduled_at"] or ev["at"]) - SLACK
        if ev["kind"] == ERROR:
            if iid not in runs:
                runs[iid] = ws.runs.list(ingestion_id=iid, orchestrator="legacy", since=since - SLACK if since else None)
            if any(start <= r.started_at <= ev["at"] + SLACK for r in runs[iid]):
                continue  # the run wrote its record: the runs check judges it from there
            status, what = "FAILED", f"job {iid} raised {ev['error'] or 'an error'}"
        elif ev["kind"] == MISSED:
            status, what = "MISSED", f"job {iid} missed its run time (beyond misfire_grace_time): nothing ran"
        else:
            continue
        when = ev["scheduled_at"] or ev["at"]
        out.append(OrphanRun(ingestion_id=iid, orchestrator="apscheduler",
                             side_run_id=f"{iid}@{when.isoformat(timespec='seconds')}", status=status, at=when,
                             mode="live", detail=f"APScheduler {ev['kind']} event at {ev['at'].isoformat(timespec='seconds')}"
                                                 f" for the run due {when.isoformat(timespec='seconds')}: {what}"))
    return out
