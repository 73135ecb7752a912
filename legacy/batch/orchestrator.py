"""The manual-trigger batch orchestrator: no schedule; "paused" is a flag the
trigger path honours (persisted on the ingestion row)."""

from __future__ import annotations

from cutover.core.errors import IngestionPaused
from cutover.core.state.fence import legacy_fence

__all__ = ["BatchOrchestrator", "IngestionPaused"]


class BatchOrchestrator:
    name = "batch"

    def __init__(self, workspace):
        self.ws = workspace

    def run_ingestion(self, ingestion_id: str, *, trigger: str = "manual", external_id: str | None = None):
        ing = self.ws.ingestions.get(ingestion_id)
        if ing.batch_paused:
            raise IngestionPaused(f"ingestion {ing.id} is paused on the legacy side",
                                  fix=f"resume it with `cutover legacy resume {ing.id}`")
        fenced = legacy_fence(self.ws, ing.id)
        if fenced:
            raise IngestionPaused(f"ingestion {ing.id} is not run: {fenced}",
                                  fix="the incident pause is still in force: see `cutover pause list`; "
                                      "`cutover resume --snapshot ID` ends it")
        return self.ws.service.run(ing, orchestrator="legacy", mode="live", trigger=trigger, external_id=external_id)

    def pause(self, ingestion_id: str) -> bool:
        return self.ws.ingestions.set_batch_paused(ingestion_id, True)

    def resume(self, ingestion_id: str) -> bool:
        return self.ws.ingestions.set_batch_paused(ingestion_id, False)

    def is_paused(self, ingestion_id: str) -> bool:
        return self.ws.ingestions.get(ingestion_id).batch_paused
