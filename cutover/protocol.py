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

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Callable, Protocol, runtime_checkable

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


@dataclass(frozen=True)
class OrphanRun:
    """A run an orchestrator started that left no cutover run record: it crashed (or failed) before
    the ingestion service could write one, so the runs table alone cannot see it. Read from the
    orchestrator itself: a Prefect flow run CRASHED/FAILED whose id no run record carries, a cron
    wrapper start with no end whose process is gone ... Parity reports each as ``run_crashed``
    at once (no match window to wait for)."""

    ingestion_id: str
    orchestrator: str  # prefect | cron | apscheduler ...
    side_run_id: str  # the orchestrator's own id of the run (flow run id, wrapper run id ...)
    status: str  # CRASHED | FAILED | MISSED, as the orchestrator says
    at: datetime | None
    mode: str = "live"  # live | shadow
    detail: str = ""

    def as_dict(self) -> dict:
        d = self.__dict__.copy()
        d["at"] = self.at.isoformat() if self.at else None
        return d


@runtime_checkable
class OrphanRunReader(Protocol):
    """A side that can say which of its runs left no run record (registered by name in
    ``cutover.registry.ORPHAN_RUN_READERS`` as a function ``(ws, *, since, ingestion_ids)`` returning
    a list of :class:`OrphanRun`, or None when the side is not set up in this workspace; it raises
    OrchestratorError when the side does not answer)."""

    def orphan_runs(self, *, since: datetime | None, ingestion_ids: list[str]) -> list[OrphanRun]: ...


def run_legacy_now(side, iid: str, *, trigger: str = "manual") -> str:
    """Run ``iid`` now on the legacy ``side`` as its orchestrator runs it (``side.run_now``: the
    batch orchestrator, a crontab line's wrapper ...) and wait; returns the run id. A wrapping
    side without ``run_now`` hands the run to the side it wraps (``base``), down to the batch
    orchestrator of ``cutover.registry.sides.LegacySide``."""
    s = side
    while not hasattr(s, "run_now"):
        s = getattr(s, "base", None)
        if s is None:
            raise TypeError(f"the legacy side {type(side).__name__} cannot run an ingestion now (no run_now)")
    return s.run_now(iid, trigger=trigger)

# -- incident control (`cutover pause` / `cutover resume`) -------------------------------------------
#
# Each side that can stop its runs implements it next to its orchestrator code:
# ``legacy/apscheduler/incident.py`` (APScheduler jobs, batch flags, the legacy fence row),
# ``legacy/rq/incident.py`` (RQ holds, worker suspension), ``flows/incident.py`` (Prefect
# deployments, the work pool fence, late runs). The engine (``cutover/engine/pause.py``,
# ``resume.py``) gets them by name from ``cutover.registry.incident_controls`` and iterates
# over them; it knows nothing of what a side's state holds.
#
# Every state a side hands over is JSON-serialisable: the engine stores it, as is, in the pause
# snapshot (``pause_snapshots.body``: ``sides[name]`` and ``fences[name]``), before anything it
# covers changes, and gives it back to the same side on resume / drift.


class FenceHeld(Exception):
    """Another pause snapshot holds this side's fence (one pause at a time)."""


@dataclass
class Restored:
    """What :meth:`IncidentWriter.restore` did: counts by kind, notes (things gone since the
    snapshot), errors (not restored; the resume is re-run to retry them)."""

    changes: dict
    notes: list[str]
    errors: list[str]


@runtime_checkable
class IncidentReader(Protocol):
    """The read half of a side's incident control: used by dry runs and by `cutover status`."""

    name: str  # the side's key in the snapshot (legacy, rq, prefect, ...)
    label: str  # human name in messages and journal steps
    # the fence: a switch that stops every new run of the side whatever the count. None: the side has none.
    fence_label: str | None
    # True: fence(ids=...) can be limited to a selection (then it goes up for --select too);
    # False: a global switch, raised only for --all / --fence-pool
    fence_selective: bool

    def read_fence(self) -> dict:
        """The fence target's state now (stored before :meth:`IncidentWriter.fence` changes it)."""
        ...

    def read(self, ids: list[str]) -> dict:
        """The schedule state of every job of these ingestions on this side (the snapshot part)."""
        ...

    def counts(self, state: dict | None) -> dict:
        """Counts of a snapshot part for reports (``state`` None: not read); flat, JSON."""
        ...

    def describe_pause(self, state: dict, *, fence: bool) -> list[str]:
        """What :meth:`IncidentWriter.pause_many` (and the fence, when ``fence``) would change, one line each."""
        ...

    def describe_restore(self, state: dict, fence_before: dict | None) -> tuple[list[str], list[str]]:
        """(lines, notes): what :meth:`IncidentWriter.restore` would change now."""
        ...

    def drift(self, state: dict | None, *, snapshot_id: str, fence_before: dict | None) -> list[dict]:
        """What differs now from the snapshot, among what the pause changed: items un-paused
        (``state``: the part as paused durably, None when not durable yet) and the fence lifted
        (``fence_before``: None when this side was not fenced). Each item:
        {"kind", "ingestion_id" (None: side-wide), "item", "detail"}. Unreadable side: []."""
        ...


@runtime_checkable
class IncidentWriter(IncidentReader, Protocol):
    """The write half. Every method is idempotent: a pause or resume cut short is completed by running it again."""

    def fence(self, snapshot_id: str, *, ids: list[str] | None, reason: str | None) -> None:
        """Raise the fence (O(1)) for ``snapshot_id``; ``ids`` None: every ingestion. Raises
        FenceHeld when another snapshot holds it, OrchestratorError when the side does not answer."""
        ...

    def unfence(self, snapshot_id: str, before: dict) -> dict:
        """Put the fence target back as ``before`` recorded it (a switch that was on stays on);
        returns changes for the report."""
        ...

    def pause_many(self, ids: list[str], state: dict | None, *, store: Callable[[dict], None],
                   progress_stream=None) -> int:
        """Pause every job of these ingestions durably; returns how many changed.

        ``state`` is this side's snapshot part so far (None: not read yet). The side reads what
        it does not hold yet and calls ``store(part)`` with it BEFORE changing any item it covers
        (page by page for large sides); items already in ``state`` keep their recorded state.
        The part stored last must say it is complete (:meth:`complete`)."""
        ...

    def complete(self, state: dict | None) -> bool:
        """Whether the snapshot part covers every job of the selection."""
        ...

    def restore(self, state: dict, *, progress_stream=None) -> Restored:
        """Every job back to the snapshot part exactly (what was paused before stays paused)."""
        ...

    def close(self) -> None: ...


class UnfencedIncident(ABC):
    """What every incident control WITHOUT a fence shares -- a team's own scheduler (APScheduler
    job store, crontab, RQ schedules) checks no cutover switch, so the durable pause is the stop.
    A subclass implements ``read``, ``counts``, ``describe_pause``, ``describe_restore``,
    ``restore``, and the two halves below: :meth:`pause_state` (pause what ``state`` recorded as
    not paused) and :meth:`drift_items` (append what was resumed by someone else)."""

    fence_label: str | None = None
    fence_selective = False

    def read_fence(self) -> dict:
        return {}

    def fence(self, snapshot_id: str, *, ids: list[str] | None, reason: str | None) -> None:
        return None  # no fence

    def unfence(self, snapshot_id: str, before: dict) -> dict:
        return {}

    def pause_many(self, ids: list[str], state: dict | None, *, store: Callable[[dict], None],
                   progress_stream=None) -> int:
        if state is None:
            state = self.read(ids)
            store(state)  # stored before anything changes
        return self.pause_state(state)

    @abstractmethod
    def read(self, ids: list[str]) -> dict:
        """The snapshot part of these jobs (stored before anything changes)."""

    @abstractmethod
    def pause_state(self, state: dict) -> int:
        """Pause every item ``state`` recorded as not paused; returns how many changed."""

    def complete(self, state: dict | None) -> bool:
        return state is not None

    def drift(self, state: dict | None, *, snapshot_id: str, fence_before: dict | None) -> list[dict]:
        out: list[dict] = []
        if not state:
            return out
        try:
            self.drift_items(state, out)
        except Exception:  # noqa: BLE001 - an unreadable side is left out of the drift (what was read stays)
            pass
        return out

    @abstractmethod
    def drift_items(self, state: dict, out: list[dict]) -> None:
        """Append to ``out`` each item this pause paused that someone resumed since."""

    def close(self) -> None:
        return None


@runtime_checkable
class LateRunHandler(Protocol):
    """A side that queues runs behind its fence (Prefect's work pool): what to do with them on resume."""

    def late_runs(self, fence_before: dict, *, since: datetime, policy: str, apply: bool,
                  message: str) -> dict:
        """Runs queued behind the fence that became due after ``since``: ``policy`` "skip" cancels
        them all, "run-once" keeps the newest per job. ``apply`` False: only say which.
        Returns {"cancelled": [run id], "kept": [run id]}."""
        ...
