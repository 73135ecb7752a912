"""The legacy side's records as an orchestrator reader: run records with orchestrator ``legacy``
and the processed-file ledger, whichever legacy orchestrator (APScheduler, batch, cron, RQ) ran them.

The legacy adapters (``legacy/*``) subclass :class:`LegacyReader`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from cutover.core.errors import OrchestratorError
from cutover.core.redact import redact_text

if TYPE_CHECKING:  # pragma: no cover
    from cutover.core.records.ledger import LedgerEntry
    from cutover.core.records.runs import RunRecord
    from cutover.core.workspace import Workspace


def unreachable(what: str, e: Exception) -> OrchestratorError:
    """The OrchestratorError for a store that did not answer (first line of the cause, redacted)."""
    first = redact_text(str(getattr(e, "orig", None) or e)).splitlines()
    return OrchestratorError(f"{what} is not reachable ({type(e).__name__}: {first[0] if first else ''})")


def as_utc(dt: datetime | None) -> datetime | None:
    """Times are stored in UTC (SQLite keeps no offset): compare in UTC; naive means UTC."""
    if dt is None:
        return None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


class LegacyReader:
    """Run records and ledger entries of the legacy side."""

    name = "legacy"

    def __init__(self, workspace: "Workspace"):
        self.ws = workspace

    def read_runs(self, *, since: datetime | None = None, ingestion_id: str | None = None) -> list["RunRecord"]:
        try:
            return self.ws.runs.list(orchestrator="legacy", since=as_utc(since), ingestion_id=ingestion_id)
        except SQLAlchemyError as e:
            raise unreachable("the autoloader DB", e) from None

    def read_ledger(self, ingestion_id: str, namespace: str, *, since: datetime | None = None) -> list["LedgerEntry"]:
        try:
            return self.ws.ledger(ingestion_id, namespace).entries(since=as_utc(since))
        except SQLAlchemyError as e:
            raise unreachable("the autoloader DB", e) from None

    def cancel_running(self, ingestion_id: str) -> int:
        """Legacy runs are threads or processes of their own that cannot be interrupted
        safely from here; the handoff waits for them to end (the ledger fences overlap)."""
        return 0
