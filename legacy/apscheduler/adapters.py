"""Adapters of the legacy orchestrators to the orchestrator protocol (DESIGN §3).

- ``BatchAdapter``: the manual-trigger batch orchestrator. It has no schedule;
  its "job" is the ingestion itself and "paused" is the ingestion's
  ``batch_paused`` flag, which the trigger path honours.
- ``APSchedulerAdapter``: APScheduler 3 jobs in the SQLAlchemyJobStore
  (``legacy.apscheduler.scheduler.JobSync``); pause = ``next_run_time`` NULL, persisted.

Both read the same legacy-side records: run records with orchestrator
``legacy`` and the processed-file ledger.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from cutover.core.errors import NotFound
from cutover.protocol import CREATED, UNCHANGED, UPDATED, Health, JobInfo, OrchestratorError
from cutover.core.redact import redact_text

if TYPE_CHECKING:  # pragma: no cover
    from cutover.core.workspace import Workspace
    from cutover.core.records.ingestions import Ingestion
    from cutover.core.records.ledger import LedgerEntry
    from cutover.core.records.runs import RunRecord


def _unreachable(what: str, e: Exception) -> OrchestratorError:
    first = redact_text(str(getattr(e, "orig", None) or e)).splitlines()
    return OrchestratorError(f"{what} is not reachable ({type(e).__name__}: {first[0] if first else ''})")


def _utc(dt: datetime | None) -> datetime | None:
    """Times are stored in UTC (SQLite keeps no offset): compare in UTC; naive means UTC."""
    if dt is None:
        return None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


class _LegacyReader:
    """Run records and ledger entries of the legacy side."""

    name = "legacy"

    def __init__(self, workspace: "Workspace"):
        self.ws = workspace

    def read_runs(self, *, since: datetime | None = None, ingestion_id: str | None = None) -> list["RunRecord"]:
        try:
            return self.ws.runs.list(orchestrator="legacy", since=_utc(since), ingestion_id=ingestion_id)
        except SQLAlchemyError as e:
            raise _unreachable("the autoloader DB", e) from None

    def read_ledger(self, ingestion_id: str, namespace: str, *, since: datetime | None = None) -> list["LedgerEntry"]:
        try:
            return self.ws.ledger(ingestion_id, namespace).entries(since=_utc(since))
        except SQLAlchemyError as e:
            raise _unreachable("the autoloader DB", e) from None

    def cancel_running(self, ingestion_id: str) -> int:
        """Legacy runs are threads or processes of their own that cannot be interrupted
        safely from here; the handoff waits for them to end (the ledger fences overlap)."""
        return 0


class BatchAdapter(_LegacyReader):
    """The manual batch orchestrator. Its job is the ingestion definition itself.

    ``remove_job`` cannot delete that definition, because the Prefect side runs
    the very same ingestion: it retires the ingestion from the batch side by
    pausing it (the trigger path refuses paused ingestions), and returns whether
    that changed anything. Delete ingestions with ``cutover ingestion remove``.
    """

    name = "batch"
    removes_jobs = False

    def list_jobs(self) -> list[JobInfo]:
        try:
            items = self.ws.ingestions.list()
        except SQLAlchemyError as e:
            raise _unreachable("the autoloader DB", e) from None
        return [JobInfo(ingestion_id=i.id, orchestrator="batch", job_id=i.id, schedule=None, paused=i.batch_paused)
                for i in items]

    def health(self) -> Health:
        try:
            with self.ws.autoloader_engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            n = len(self.ws.ingestions.list())
        except SQLAlchemyError as e:
            return Health(False, str(_unreachable("the autoloader DB", e)))
        return Health(True, f"batch orchestrator: {n} ingestion(s)")

    def ensure_job(self, ingestion: "Ingestion") -> str:
        """Create or update the ingestion definition (the batch flag is left as it is)."""
        (action, _), = self.ws.ingestions.upsert([ingestion], replace_existing=True)
        return {"create": CREATED, "update": UPDATED}.get(action, UNCHANGED)

    def remove_job(self, ingestion_id: str) -> bool:
        if self.ws.ingestions.find(ingestion_id) is None:
            return False
        return self.ws.ingestions.set_batch_paused(ingestion_id, True)

    def pause(self, ingestion_id: str) -> bool:
        return self.ws.ingestions.set_batch_paused(ingestion_id, True)

    def resume(self, ingestion_id: str) -> bool:
        return self.ws.ingestions.set_batch_paused(ingestion_id, False)

    def trigger(self, ingestion_id: str) -> str:
        """Run the ingestion now, synchronously; returns the run id (raises IngestionPaused when paused)."""
        from legacy.batch.orchestrator import BatchOrchestrator

        return BatchOrchestrator(self.ws).run_ingestion(ingestion_id, trigger="manual").run_id


class APSchedulerAdapter(_LegacyReader):
    """APScheduler 3 jobs in the SQLAlchemyJobStore; needs `cutover legacy scheduler` running to fire."""

    name = "apscheduler"
    removes_jobs = True

    def __init__(self, workspace: "Workspace", *, jobsync=None):
        super().__init__(workspace)
        if jobsync is None:
            from legacy.apscheduler.scheduler import JobSync

            jobsync = JobSync(workspace.settings)
        self.jobs = jobsync

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SQLAlchemyError as e:
            raise _unreachable("the APScheduler job store", e) from None

    def list_jobs(self) -> list[JobInfo]:
        return self._call(self.jobs.jobs)

    def health(self) -> Health:
        from datetime import timedelta

        from legacy.apscheduler.scheduler import utcnow

        try:
            jobs = self.jobs.jobs()
            one_offs = self.jobs.pending_one_offs()
        except SQLAlchemyError as e:
            return Health(False, str(_unreachable("the APScheduler job store", e)))
        s = self.ws.settings
        late_after = timedelta(seconds=s.misfire_grace_time + 3 * s.scheduler_poll_interval)
        now = utcnow()
        overdue = [j.ingestion_id for j in jobs if j.next_run_time is not None and now - j.next_run_time > late_after]
        paused = sum(1 for j in jobs if j.paused)
        detail = f"apscheduler: {len(jobs)} job(s), {paused} paused, {len(one_offs)} one-off run(s) queued"
        if overdue:
            return Health(False, f"{detail}; overdue beyond misfire_grace_time: {', '.join(overdue[:5])} "
                                 "(is `cutover legacy scheduler` running?)")
        return Health(True, detail)

    def ensure_job(self, ingestion: "Ingestion") -> str:
        """Create/update the job from the ingestion's schedule. An ingestion without a schedule
        has no job: an existing one is removed ("updated"), else "unchanged"."""
        if ingestion.schedule is None:
            return UPDATED if self._call(self.jobs.remove, ingestion.id) else UNCHANGED
        return self._call(self.jobs.ensure, ingestion)

    def remove_job(self, ingestion_id: str) -> bool:
        return self._call(self.jobs.remove, ingestion_id)

    def _require(self, ingestion_id: str) -> None:
        if self._call(self.jobs.is_paused, ingestion_id) is None:
            raise NotFound(f"ingestion {ingestion_id} has no APScheduler job",
                           fix="create it with `cutover legacy sync` (it needs a schedule)")

    def pause(self, ingestion_id: str) -> bool:
        self._require(ingestion_id)
        return self._call(self.jobs.pause, ingestion_id)

    def resume(self, ingestion_id: str) -> bool:
        self._require(ingestion_id)
        return self._call(self.jobs.resume, ingestion_id)

    def trigger(self, ingestion_id: str) -> str:
        """Queue a run now as a one-off job (the scheduler process runs it within its poll
        interval); the job's own schedule and phase are untouched. Returns the one-off job id,
        which is the run record's ``external_id``. Refused while the ingestion is paused."""
        from legacy.batch.orchestrator import IngestionPaused

        ing = self.ws.ingestions.get(ingestion_id)
        if ing.batch_paused or self._call(self.jobs.is_paused, ingestion_id):
            raise IngestionPaused(f"ingestion {ingestion_id} is paused on the legacy side",
                                  fix=f"resume it with `cutover legacy resume {ingestion_id}`")
        return self._call(self.jobs.run_once, ingestion_id)
