"""Run records: one row per run of an ingestion by either orchestrator."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import Engine, select, update

from cutover.core.records.tables import runs as t_runs

RUNNING, SUCCESS, PARTIAL, FAILED, CRASHED, CANCELLED = "RUNNING", "SUCCESS", "PARTIAL", "FAILED", "CRASHED", "CANCELLED"
FINAL = (SUCCESS, PARTIAL, FAILED, CRASHED, CANCELLED)
ORCHESTRATORS = ("legacy", "prefect")
MODES = ("live", "shadow")
TRIGGERS = ("scheduled", "manual", "backfill")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _aware(dt):
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)
    return dt


@dataclass(frozen=True)
class RunRecord:
    id: str
    ingestion_id: str
    orchestrator: str
    mode: str
    trigger: str
    status: str
    started_at: datetime
    ended_at: datetime | None
    heartbeat_at: datetime | None
    files_processed: int
    files_failed: int
    files_skipped: int
    records_ingested: int
    bytes_read: int
    duration_s: float | None
    error: str | None
    external_id: str | None
    prefect_deployment_id: str | None
    host: str | None
    pid: int | None

    def as_dict(self) -> dict:
        d = self.__dict__.copy()
        for k in ("started_at", "ended_at", "heartbeat_at"):
            d[k] = d[k].isoformat() if d[k] else None
        return d


def _record(row) -> RunRecord:
    d = dict(row._mapping)
    for k in ("started_at", "ended_at", "heartbeat_at"):
        d[k] = _aware(d[k])
    return RunRecord(**d)


class RunStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def start(self, ingestion_id: str, *, orchestrator: str, mode: str, trigger: str,
              external_id: str | None = None, prefect_deployment_id: str | None = None,
              run_id: str | None = None) -> str:
        assert orchestrator in ORCHESTRATORS and mode in MODES and trigger in TRIGGERS
        run_id = run_id or uuid.uuid4().hex
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(t_runs.insert().values(
                id=run_id, ingestion_id=ingestion_id, orchestrator=orchestrator, mode=mode, trigger=trigger,
                status=RUNNING, started_at=now, heartbeat_at=now, external_id=external_id,
                prefect_deployment_id=prefect_deployment_id, host=socket.gethostname(), pid=os.getpid()))
        return run_id

    def heartbeat(self, run_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(t_runs).where(t_runs.c.id == run_id, t_runs.c.status == RUNNING)
                         .values(heartbeat_at=utcnow()))

    def add_skipped(self, run_id: str, n: int) -> None:
        if n:
            with self.engine.begin() as conn:
                conn.execute(update(t_runs).where(t_runs.c.id == run_id)
                             .values(files_skipped=t_runs.c.files_skipped + n))

    def finish(self, run_id: str, status: str, *, error: str | None = None) -> RunRecord:
        now = utcnow()
        rec = self.get(run_id)
        with self.engine.begin() as conn:
            conn.execute(update(t_runs).where(t_runs.c.id == run_id, t_runs.c.status == RUNNING).values(
                status=status, ended_at=now, heartbeat_at=now, error=error,
                duration_s=(now - rec.started_at).total_seconds()))
        return self.get(run_id)

    def get(self, run_id: str) -> RunRecord:
        with self.engine.connect() as conn:
            row = conn.execute(select(t_runs).where(t_runs.c.id == run_id)).first()
        if row is None:
            raise KeyError(run_id)
        return _record(row)

    def find(self, run_id: str) -> RunRecord | None:
        try:
            return self.get(run_id)
        except KeyError:
            return None

    def list(self, *, ingestion_id: str | None = None, since: datetime | None = None,
             orchestrator: str | None = None, mode: str | None = None, limit: int | None = None) -> list[RunRecord]:
        q = select(t_runs).order_by(t_runs.c.started_at.desc())
        if ingestion_id:
            q = q.where(t_runs.c.ingestion_id == ingestion_id)
        if since is not None:
            # SQLite keeps no offset: compare in UTC, which is what is stored
            q = q.where(t_runs.c.started_at >= (since.astimezone(timezone.utc) if since.tzinfo else since))
        if orchestrator:
            q = q.where(t_runs.c.orchestrator == orchestrator)
        if mode:
            q = q.where(t_runs.c.mode == mode)
        if limit:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [_record(r) for r in conn.execute(q)]

    def reap_stale(self, ingestion_id: str, timeout: float) -> list[str]:
        """Runs that stopped heartbeating (killed, host lost) become CRASHED."""
        cutoff = utcnow() - timedelta(seconds=timeout)
        with self.engine.begin() as conn:
            ids = [r.id for r in conn.execute(select(t_runs.c.id).where(
                t_runs.c.ingestion_id == ingestion_id, t_runs.c.status == RUNNING, t_runs.c.heartbeat_at < cutoff))]
            for rid in ids:
                conn.execute(update(t_runs).where(t_runs.c.id == rid, t_runs.c.status == RUNNING).values(
                    status=CRASHED, ended_at=t_runs.c.heartbeat_at,
                    error=f"no heartbeat for over {timeout:.0f}s: the run died; the next run takes over its claims"))
        return ids
