"""The manual-trigger batch orchestrator as an orchestrator adapter (DESIGN §3).

It has no schedule; its "job" is the ingestion itself and "paused" is the ingestion's
``batch_paused`` flag, which the trigger path (:class:`legacy.batch.orchestrator.BatchOrchestrator`)
honours. It reads the legacy-side records every legacy adapter reads (``cutover.core.records.reader``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from cutover.core.records.reader import LegacyReader, unreachable
from cutover.protocol import CREATED, UNCHANGED, UPDATED, Health, JobInfo
from legacy.batch.orchestrator import BatchOrchestrator

if TYPE_CHECKING:  # pragma: no cover
    from cutover.core.records.ingestions import Ingestion


class BatchAdapter(LegacyReader):
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
            raise unreachable("the autoloader DB", e) from None
        return [JobInfo(ingestion_id=i.id, orchestrator="batch", job_id=i.id, schedule=None, paused=i.batch_paused)
                for i in items]

    def health(self) -> Health:
        try:
            with self.ws.autoloader_engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            n = len(self.ws.ingestions.list())
        except SQLAlchemyError as e:
            return Health(False, str(unreachable("the autoloader DB", e)))
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
        return BatchOrchestrator(self.ws).run_ingestion(ingestion_id, trigger="manual").run_id
