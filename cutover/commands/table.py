"""`cutover table maintain ID`: expire snapshots, remove orphan and old metadata files of an
ingestion's Iceberg table, safe while both sides ingest (see cutover.core.maintenance)."""

from __future__ import annotations

from cutover.core.config import parse_duration
from cutover.core.errors import InputError
from cutover.core.maintenance import MaintainResult
from cutover.core.maintenance import maintain as maintain_table


def maintain(ws, ingestion_id: str, *, retain: str = "24h", orphan_age: str = "1h",
             dry_run: bool = False) -> MaintainResult:
    ing = ws.ingestions.get(ingestion_id)
    if ws.catalog.find(ing.table) is None:
        raise InputError(f"table {ing.table} of {ingestion_id} does not exist yet",
                         fix=f"run the legacy side first (cutover legacy run {ingestion_id})")
    return maintain_table(ws.catalog, ing.table, retain_s=parse_duration(retain, what="--retain"),
                          orphan_age_s=parse_duration(orphan_age, what="--orphan-age"), dry_run=dry_run,
                          retries=ws.settings.commit_retries)
