"""APScheduler as an orchestrator adapter (DESIGN §3): ``APSchedulerAdapter``, APScheduler 3 jobs
in the SQLAlchemyJobStore (``legacy.apscheduler.scheduler.JobSync``); pause = ``next_run_time``
NULL, persisted. The batch orchestrator's adapter is ``legacy.batch.adapter.BatchAdapter``.

It reads the legacy-side records every legacy adapter reads (``cutover.core.records.reader``):
run records with orchestrator ``legacy`` and the processed-file ledger.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from cutover.core.errors import IngestionPaused, NotFound
from cutover.core.records.reader import LegacyReader, unreachable
from cutover.protocol import UNCHANGED, UPDATED, Health, JobInfo
from legacy.apscheduler.jobstore import utcnow
from legacy.apscheduler.scheduler import JobSync

if TYPE_CHECKING:  # pragma: no cover
    from cutover.core.workspace import Workspace
    from cutover.core.records.ingestions import Ingestion


class APSchedulerAdapter(LegacyReader):
    """APScheduler 3 jobs in the SQLAlchemyJobStore; needs `cutover legacy scheduler` running to fire."""

    name = "apscheduler"
    removes_jobs = True

    def __init__(self, workspace: "Workspace", *, jobsync=None):
        super().__init__(workspace)
        if jobsync is None:
            jobsync = JobSync(workspace.settings)
        self.jobs = jobsync

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SQLAlchemyError as e:
            raise unreachable("the APScheduler job store", e) from None

    def list_jobs(self) -> list[JobInfo]:
        return self._call(self.jobs.jobs)

    def health(self) -> Health:
        try:
            jobs = self.jobs.jobs()
            one_offs = self.jobs.pending_one_offs()
        except SQLAlchemyError as e:
            return Health(False, str(unreachable("the APScheduler job store", e)))
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
        ing = self.ws.ingestions.get(ingestion_id)
        if ing.batch_paused or self._call(self.jobs.is_paused, ingestion_id):
            raise IngestionPaused(f"ingestion {ingestion_id} is paused on the legacy side",
                                  fix=f"resume it with `cutover legacy resume {ingestion_id}`")
        return self._call(self.jobs.run_once, ingestion_id)
