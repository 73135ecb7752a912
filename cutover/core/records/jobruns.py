"""Run records of generic jobs (issue #15): a row of the ``runs`` table per run (``ingestion_id`` is
the job id: ingestions and jobs share ids), plus ``job_run_output`` for what a run table row has no
column for -- exit code, signal, the command (redacted) and the tail of the output (redacted).

Written by the legacy sides' recorders: ``cutover cron exec`` (legacy/cron/jobexec.py), the
APScheduler event listener (legacy/apscheduler/teamstore.py), the RQ registries reader. A run
whose start was recorded and whose end never was (the wrapper was killed) stays ``RUNNING`` with
its pid; readers show it as ``CRASHED`` once that process is gone (:func:`effective_status`).

``MISSED``: APScheduler skipped a fire time (EVENT_JOB_MISSED, after ``misfire_grace_time``); the
record has ``started_at`` = ``ended_at`` = the scheduled time and no duration.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

from sqlalchemy import Engine, insert, select, update

from cutover.core.osutil import pid_alive
from cutover.core.redact import MASK, is_secret_key, redact_text
from cutover.core.records.runs import CRASHED, FAILED, RUNNING, SUCCESS, RunRecord, RunStore
from cutover.core.records.tables import job_run_output as t_out
from cutover.core.records.tables import runs as t_runs

MISSED = "MISSED"
TAIL_BYTES = 4096
_ASSIGN = re.compile(r"(?i)\b([\w.-]*(?:pass(?:word|wd)?|secret|token|api[_-]?key|access[_-]?key|credential)"
                     r"[\w.-]*)(\s*[=:]\s*|\s+)(\"[^\"]*\"|'[^']*'|\S+)")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def redact_output(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with secrets masked: the given secret values wherever they appear, URL passwords,
    ``password=...`` / ``token: ...`` style assignments and bearer tokens."""
    if not text:
        return text
    for s in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(s, MASK)
    text = redact_text(text)
    text = _ASSIGN.sub(lambda m: f"{m[1]}{m[2]}{MASK}", text)
    return _BEARER.sub(lambda m: f"{m[1]} {MASK}", text)


def secret_values(env: dict[str, str] | None) -> list[str]:
    """The values of secret-looking variables (``DB_PASSWORD``, ``API_TOKEN`` ...) of an environment."""
    return [v for k, v in (env or {}).items() if is_secret_key(k) and v]


def tail(data: bytes, limit: int = TAIL_BYTES) -> str:
    """The last ``limit`` bytes as text (cut at a line start when one is near)."""
    if len(data) > limit:
        data = data[-limit:]
        nl = data.find(b"\n")
        if 0 <= nl < 200:
            data = data[nl + 1:]
    return data.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class JobRun:
    """A run record with its output row."""

    run: RunRecord
    exit_code: int | None
    signal: int | None
    output_tail: str | None
    command: str | None

    def as_dict(self) -> dict:
        return {**self.run.as_dict(), "exit_code": self.exit_code, "signal": self.signal,
                "output_tail": self.output_tail, "command": self.command}


def effective_status(run: RunRecord) -> str:
    """``CRASHED`` for a RUNNING run of this host whose process is gone, else the recorded status."""
    if run.status == RUNNING and run.host == socket.gethostname() and not pid_alive(run.pid):
        return CRASHED
    return run.status


class JobRunStore:
    """Start, finish and read the runs of generic jobs."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.runs = RunStore(engine)

    def start(self, job_id: str, *, trigger: str = "scheduled", mode: str = "live", external_id: str | None = None,
              command: str | None = None, run_id: str | None = None, pid: int | None = None,
              started_at: datetime | None = None) -> str:
        """Record a start (status RUNNING); ``pid``: the process to watch (default: this one)."""
        rid = run_id or uuid.uuid4().hex
        now = started_at or utcnow()
        with self.engine.begin() as conn:
            conn.execute(insert(t_runs).values(
                id=rid, ingestion_id=job_id, orchestrator="legacy", mode=mode, trigger=trigger, status=RUNNING,
                started_at=now, heartbeat_at=now, external_id=external_id, host=socket.gethostname(),
                pid=pid or os.getpid()))
            conn.execute(insert(t_out).values(run_id=rid, job_id=job_id, command=command))
        return rid

    def finish(self, run_id: str, status: str, *, exit_code: int | None = None, signal: int | None = None,
               output_tail: str | None = None, error: str | None = None, ended_at: datetime | None = None) -> None:
        """Record the end (only of a RUNNING run: a second finish changes nothing)."""
        rec = self.runs.get(run_id)
        now = ended_at or utcnow()
        with self.engine.begin() as conn:
            res = conn.execute(update(t_runs).where(t_runs.c.id == run_id, t_runs.c.status == RUNNING).values(
                status=status, ended_at=now, heartbeat_at=now, error=error,
                duration_s=max(0.0, (now - rec.started_at).total_seconds())))
            if res.rowcount:
                conn.execute(update(t_out).where(t_out.c.run_id == run_id).values(
                    exit_code=exit_code, signal=signal, output_tail=output_tail))

    def record(self, job_id: str, status: str, *, started_at: datetime, ended_at: datetime | None,
               trigger: str = "scheduled", external_id: str | None = None, error: str | None = None,
               run_id: str | None = None, exit_code: int | None = None, output_tail: str | None = None) -> str:
        """A whole run at once (events that arrive after the fact: APScheduler missed runs, RQ
        registries). Idempotent on ``run_id``: a run already recorded is left as it is."""
        rid = run_id or uuid.uuid4().hex
        with self.engine.begin() as conn:
            if conn.execute(select(t_runs.c.id).where(t_runs.c.id == rid)).first() is not None:
                return rid
            dur = (ended_at - started_at).total_seconds() if ended_at is not None and status != MISSED else None
            conn.execute(insert(t_runs).values(
                id=rid, ingestion_id=job_id, orchestrator="legacy", mode="live", trigger=trigger, status=status,
                started_at=started_at, ended_at=ended_at, heartbeat_at=ended_at or started_at, duration_s=dur,
                error=error, external_id=external_id, host=socket.gethostname(), pid=None))
            conn.execute(insert(t_out).values(run_id=rid, job_id=job_id, exit_code=exit_code, output_tail=output_tail))
        return rid

    def list(self, *, job_id: str | None = None, since: datetime | None = None,
             job_ids: Iterable[str] | None = None) -> list[JobRun]:
        """Runs of generic jobs with their output rows, newest first (``job_ids``: only these)."""
        q = select(t_runs, t_out.c.exit_code, t_out.c.signal, t_out.c.output_tail, t_out.c.command) \
            .join(t_out, t_out.c.run_id == t_runs.c.id).order_by(t_runs.c.started_at.desc())
        if job_id:
            q = q.where(t_runs.c.ingestion_id == job_id)
        if job_ids is not None:
            q = q.where(t_runs.c.ingestion_id.in_(list(job_ids)))
        if since is not None:
            q = q.where(t_runs.c.started_at >= since.astimezone(timezone.utc))
        out = []
        with self.engine.connect() as conn:
            for row in conn.execute(q):
                m = dict(row._mapping)
                extra = {k: m.pop(k) for k in ("exit_code", "signal", "output_tail", "command")}
                out.append(JobRun(_as_record(m), **extra))
        return out


def _as_record(m: dict) -> RunRecord:
    for k in ("started_at", "ended_at", "heartbeat_at"):
        v = m.get(k)
        if v is not None and v.tzinfo is None:
            m[k] = v.replace(tzinfo=timezone.utc)
    return RunRecord(**m)


__all__ = ["CRASHED", "FAILED", "MISSED", "RUNNING", "SUCCESS", "JobRun", "JobRunStore", "effective_status",
           "redact_output", "secret_values", "tail"]
