"""An in-memory orchestrator with failure injection, for unit tests.

It implements the whole writer protocol with the same semantics as the real
adapters (it passes the contract suite in ``tests/contract``)::

    fake = FakeOrchestrator()
    fake.ensure_job(ing)                        # "created"
    fake.fail_next("pause", OrchestratorError("boom"))
    fake.pause(ing.id)                          # raises boom, changes nothing
    fake.pause(ing.id)                          # True
    fake.unreachable = True                     # every call raises OrchestratorError

Runs started by ``trigger`` finish at once with ``trigger_status`` (SUCCESS by
default), or stay RUNNING with ``hold_runs = True`` until ``finish_run`` or
``cancel_running``. ``calls`` records every protocol call, in order.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Iterable

from cutover.protocol import CREATED, UNCHANGED, UPDATED, Health, JobInfo, OrchestratorError

if TYPE_CHECKING:  # pragma: no cover
    from cutover.core.records.ingestions import Ingestion
    from cutover.core.records.ledger import LedgerEntry
    from cutover.core.records.runs import RunRecord


def _now() -> datetime:
    return datetime.now(timezone.utc)


class FakePaused(OrchestratorError):
    """trigger() on a paused job."""


class FakeNotFound(OrchestratorError):
    """pause/resume/trigger of a job the fake does not have."""


@dataclass
class _Job:
    ingestion_id: str
    schedule: dict | None
    timezone: str
    paused: bool = False
    mode: str | None = None


class FakeOrchestrator:
    """In-memory ``OrchestratorWriter`` with failure injection."""

    removes_jobs = True

    def __init__(self, name: str = "fake", *, run_orchestrator: str = "legacy", ingestions: Iterable["Ingestion"] = (),
                 unreachable: bool = False, trigger_status: str = "SUCCESS", hold_runs: bool = False):
        self.name = name
        self.run_orchestrator = run_orchestrator  # the RunRecord.orchestrator of its runs: legacy | prefect
        self.unreachable = unreachable
        self.trigger_status = trigger_status
        self.hold_runs = hold_runs
        self.jobs: dict[str, _Job] = {}
        self.runs: list["RunRecord"] = []
        self.ledger: dict[tuple[str, str], list["LedgerEntry"]] = {}
        self.calls: list[tuple[str, tuple]] = []
        self._failures: dict[str, list[BaseException]] = {}
        self._lock = threading.RLock()
        for ing in ingestions:
            self._set_job(ing)

    # -- failure injection ---------------------------------------------------------------
    def fail_next(self, method: str, exc: BaseException | None = None, *, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` raise ``exc`` (default: OrchestratorError) and change nothing."""
        if not hasattr(self, method):
            raise AttributeError(f"FakeOrchestrator has no method {method!r}")
        exc = exc or OrchestratorError(f"injected failure in {method}")
        with self._lock:
            self._failures.setdefault(method, []).extend([exc] * times)

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def _enter(self, method: str, *args: Any) -> None:
        with self._lock:
            self.calls.append((method, args))
            if self.unreachable:
                raise OrchestratorError(f"{self.name} is unreachable (injected)")
            queue = self._failures.get(method)
            if queue:
                raise queue.pop(0)

    def call_count(self, method: str) -> int:
        return sum(1 for m, _ in self.calls if m == method)

    # -- test helpers (not part of the protocol) -----------------------------------------
    def _set_job(self, ing: "Ingestion") -> _Job:
        job = self.jobs.get(ing.id)
        if job is None:
            job = self.jobs[ing.id] = _Job(ing.id, ing.schedule, ing.timezone)
        else:
            job.schedule, job.timezone = ing.schedule, ing.timezone
        return job

    def add_run(self, ingestion_id: str, *, status: str = "SUCCESS", mode: str = "live", trigger: str = "manual",
                started_at: datetime | None = None, duration_s: float = 1.0, **fields: Any) -> "RunRecord":
        """Record a run as if this orchestrator had run it."""
        from cutover.core.records.runs import RunRecord

        start = started_at or _now()
        running = status == "RUNNING"
        rec = RunRecord(
            id=fields.pop("id", uuid.uuid4().hex), ingestion_id=ingestion_id, orchestrator=self.run_orchestrator,
            mode=mode, trigger=trigger, status=status, started_at=start,
            ended_at=None if running else start + timedelta(seconds=duration_s), heartbeat_at=start,
            files_processed=fields.pop("files_processed", 0), files_failed=fields.pop("files_failed", 0),
            files_skipped=fields.pop("files_skipped", 0), records_ingested=fields.pop("records_ingested", 0),
            bytes_read=fields.pop("bytes_read", 0), duration_s=None if running else duration_s,
            error=fields.pop("error", None), external_id=fields.pop("external_id", None),
            prefect_deployment_id=fields.pop("prefect_deployment_id", None), host="fake", pid=0, **fields)
        with self._lock:
            self.runs.append(rec)
        return rec

    def finish_run(self, run_id: str, status: str = "SUCCESS") -> "RunRecord":
        with self._lock:
            for i, r in enumerate(self.runs):
                if r.id == run_id:
                    now = _now()
                    self.runs[i] = replace(r, status=status, ended_at=now,
                                           duration_s=(now - r.started_at).total_seconds())
                    return self.runs[i]
        raise KeyError(run_id)

    def add_ledger_entry(self, ingestion_id: str, path: str, *, namespace: str = "live", status: str = "SUCCESS",
                         records: int = 0, size: int | None = None, run_id: str | None = None,
                         processed_at: datetime | None = None) -> "LedgerEntry":
        from cutover.core.records.ledger import LedgerEntry

        entry = LedgerEntry(ingestion_id=ingestion_id, namespace=namespace, path=path, status=status, size=size,
                            etag=None, run_id=run_id, records_ingested=records, bytes_read=size, error=None,
                            snapshot_id=None, attempts=1, claimed_at=None, claimed_by=None,
                            processed_at=processed_at or _now())
        with self._lock:
            self.ledger.setdefault((ingestion_id, namespace), []).append(entry)
        return entry

    # -- reader --------------------------------------------------------------------------
    def list_jobs(self) -> list[JobInfo]:
        self._enter("list_jobs")
        from cutover.core.schedule.triggers import describe

        with self._lock:
            return [JobInfo(ingestion_id=j.ingestion_id, orchestrator="fake", job_id=j.ingestion_id,
                            schedule=None if j.schedule is None else f"{describe(j.schedule)} {j.timezone}",
                            paused=j.paused, mode=j.mode)
                    for j in sorted(self.jobs.values(), key=lambda j: j.ingestion_id)]

    def read_runs(self, *, since: datetime | None = None, ingestion_id: str | None = None) -> list["RunRecord"]:
        self._enter("read_runs", since, ingestion_id)
        with self._lock:
            out = [r for r in self.runs
                   if (ingestion_id is None or r.ingestion_id == ingestion_id)
                   and (since is None or r.started_at >= since)]
        return sorted(out, key=lambda r: r.started_at, reverse=True)

    def read_ledger(self, ingestion_id: str, namespace: str, *, since: datetime | None = None) -> list["LedgerEntry"]:
        self._enter("read_ledger", ingestion_id, namespace, since)
        with self._lock:
            entries = list(self.ledger.get((ingestion_id, namespace), []))
        return sorted((e for e in entries if since is None or (e.processed_at and e.processed_at >= since)),
                      key=lambda e: e.path)

    def health(self) -> Health:
        try:
            self._enter("health")
        except OrchestratorError as e:
            return Health(False, str(e))
        return Health(True, f"{self.name}: {len(self.jobs)} job(s) in memory")

    # -- writer --------------------------------------------------------------------------
    def ensure_job(self, ingestion: "Ingestion") -> str:
        self._enter("ensure_job", ingestion.id)
        with self._lock:
            job = self.jobs.get(ingestion.id)
            if job is None:
                self._set_job(ingestion)
                return CREATED
            if (job.schedule, job.timezone) == (ingestion.schedule, ingestion.timezone):
                return UNCHANGED
            self._set_job(ingestion)  # paused stays paused
            return UPDATED

    def remove_job(self, ingestion_id: str) -> bool:
        self._enter("remove_job", ingestion_id)
        with self._lock:
            return self.jobs.pop(ingestion_id, None) is not None

    def _job(self, ingestion_id: str) -> _Job:
        job = self.jobs.get(ingestion_id)
        if job is None:
            raise FakeNotFound(f"{self.name} has no job for {ingestion_id}")
        return job

    def pause(self, ingestion_id: str) -> bool:
        self._enter("pause", ingestion_id)
        with self._lock:
            job = self._job(ingestion_id)
            changed, job.paused = not job.paused, True
            return changed

    def resume(self, ingestion_id: str) -> bool:
        self._enter("resume", ingestion_id)
        with self._lock:
            job = self._job(ingestion_id)
            changed, job.paused = job.paused, False
            return changed

    def trigger(self, ingestion_id: str) -> str:
        self._enter("trigger", ingestion_id)
        with self._lock:
            if self._job(ingestion_id).paused:
                raise FakePaused(f"{ingestion_id} is paused on {self.name}")
        status = "RUNNING" if self.hold_runs else self.trigger_status
        return self.add_run(ingestion_id, status=status, trigger="manual").id

    def cancel_running(self, ingestion_id: str) -> int:
        self._enter("cancel_running", ingestion_id)
        n = 0
        with self._lock:
            for r in list(self.runs):
                if r.ingestion_id == ingestion_id and r.status == "RUNNING":
                    self.finish_run(r.id, "CANCELLED")
                    n += 1
        return n
