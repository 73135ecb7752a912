"""The orchestrator protocol (DESIGN §3): how cutover talks to either side.

The read side is separate from the write side: checks and planners get only an
``OrchestratorReader``. Implementations: the batch orchestrator and APScheduler
(``legacy/batch/adapter.py``, ``legacy/apscheduler/adapters.py``), the crontab and RQ sides
(``legacy/cron``, ``legacy/rq``), Prefect (``flows/adapter.py``) and an in-memory fake
with failure injection (``cutover/testing/fake.py``). All pass one contract
suite (``tests/contract``).

Sides import only ``cutover.core`` and this module; ``cutover.registry`` composes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from cutover.core.errors import OrchestratorError  # noqa: F401 - part of the protocol (defined in core)

if TYPE_CHECKING:  # pragma: no cover
    from cutover.core.records.ingestions import Ingestion
    from cutover.core.records.ledger import LedgerEntry
    from cutover.core.records.runs import RunRecord

CREATED, UPDATED, UNCHANGED = "created", "updated", "unchanged"


@dataclass(frozen=True)
class JobInfo:
    """One schedulable unit on one side: an APScheduler job, a batch ingestion, a Prefect deployment."""

    ingestion_id: str
    orchestrator: str  # apscheduler | batch | prefect | fake
    job_id: str  # APScheduler job id, ingestion id, Prefect deployment id
    schedule: str | None  # human form; None = manual only
    paused: bool
    next_run_time: datetime | None = None
    mode: str | None = None  # live | shadow (Prefect deployments)

    def as_dict(self) -> dict:
        d = self.__dict__.copy()
        d["next_run_time"] = self.next_run_time.isoformat() if self.next_run_time else None
        return d


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str


@runtime_checkable
class OrchestratorReader(Protocol):
    name: str

    def list_jobs(self) -> list[JobInfo]: ...

    def read_runs(self, *, since: datetime | None = None, ingestion_id: str | None = None) -> list["RunRecord"]: ...

    def read_ledger(self, ingestion_id: str, namespace: str, *, since: datetime | None = None) -> list["LedgerEntry"]: ...

    def health(self) -> Health: ...


@runtime_checkable
class OrchestratorWriter(OrchestratorReader, Protocol):
    def ensure_job(self, ingestion: "Ingestion") -> str:
        """Create or update the job for an ingestion; idempotent. Returns created|updated|unchanged.
        Never un-pauses a paused job."""
        ...

    def remove_job(self, ingestion_id: str) -> bool: ...

    def pause(self, ingestion_id: str) -> bool:
        """Pause persistently; True if it changed anything."""
        ...

    def resume(self, ingestion_id: str) -> bool: ...

    def trigger(self, ingestion_id: str) -> str:
        """Start a run now; returns the run's id on that side."""
        ...

    def cancel_running(self, ingestion_id: str) -> int:
        """Cancel in-flight runs; returns how many."""
        ...


def run_legacy_now(side, iid: str, *, trigger: str = "manual") -> str:
    """Run ``iid`` now on the legacy ``side`` as its orchestrator runs it (``side.run_now``: the
    batch orchestrator, a crontab line's wrapper ...) and wait; returns the run id. A wrapping
    side without ``run_now`` hands the run to the side it wraps (``base``), down to the batch
    orchestrator of ``cutover.registry.LegacySide``."""
    s = side
    while not hasattr(s, "run_now"):
        s = getattr(s, "base", None)
        if s is None:
            raise TypeError(f"the legacy side {type(side).__name__} cannot run an ingestion now (no run_now)")
    return s.run_now(iid, trigger=trigger)
