"""An in-memory orchestrator with failure injection, for unit tests.

It implements the whole reader and writer protocol (``cutover.protocol``) with the same
semantics as the real adapters (it passes the contract suite in ``tests/contract``)::

    fake = FakeOrchestrator()
    fake.ensure_job(ing)                        # "created"
    fake.fail_next("pause", OrchestratorError("boom"))
    fake.pause(ing.id)                          # raises boom, changes nothing
    fake.pause(ing.id)                          # True

Failure injection (every kind is one-shot unless said otherwise, and counts only protocol calls):

- ``fail_next(method, exc, times=1)``: the next calls of ``method`` raise before changing anything;
- ``fail_at(n, exc)``: the n-th protocol call from now (1 = the next one), whatever its method;
- ``down = True`` (alias ``unreachable``): every call raises ``OrchestratorError("... unreachable")``
  and ``health()`` is not ok, until set back to False;
- ``delay = 0.5``: every call takes that long (a slow API);
- ``crash_after(method=..., call=n, ingestion_id=...)``: the matching call does its side effect,
  then raises :class:`SimulatedCrash` -- a ``BaseException``, like the process being killed right
  after the orchestrator applied the change and before the caller could record it. The engine does
  not catch it (it catches ``Exception``), so its journal keeps the step RUNNING, as after a kill.

``calls`` records every protocol call, in order; ``effects`` every call that changed something
(``(method, ingestion_id)``), so a test can assert that each side effect happened exactly once
across a crash and a re-run. ``state()`` is the comparable state of the jobs.

Runs started by ``trigger`` finish at once with ``trigger_status`` (SUCCESS by
default), or stay RUNNING with ``hold_runs = True`` until ``finish_run`` or
``cancel_running``.

:class:`FakeSides` is the engine's ``Sides`` (``legacy()``, ``prefect(mode)``) over three fakes.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Iterable

from cutover.protocol import CREATED, UNCHANGED, UPDATED, Health, JobInfo, OrchestratorError
from cutover.core.records.runs import RunRecord
from cutover.core.records.ledger import LedgerEntry
from cutover.core.schedule.triggers import describe

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


class SimulatedCrash(BaseException):
    """The process was killed right after a side effect (not an ``Exception``: nothing in the engine
    handles it; the test catches it and runs the operation again)."""


@dataclass
class _Crash:
    method: str | None
    call: int | None  # absolute call number (1-based, over the fake's life)
    ingestion_id: str | None

    def matches(self, n: int, method: str, ingestion_id: str | None) -> bool:
        return ((self.call is None or self.call == n) and (self.method is None or self.method == method)
                and (self.ingestion_id is None or self.ingestion_id == ingestion_id))


@dataclass
class _Job:
    ingestion_id: str
    schedule: dict | None
    timezone: str
    paused: bool = False


class FakeOrchestrator:
    """In-memory ``OrchestratorWriter`` with failure injection."""

    removes_jobs = True

    def __init__(self, name: str = "fake", *, run_orchestrator: str = "legacy", ingestions: Iterable["Ingestion"] = (),
                 unreachable: bool = False, trigger_status: str = "SUCCESS", hold_runs: bool = False,
                 mode: str | None = None, delay: float = 0.0, missing_job_raises: bool = True):
        self.name = name
        # pause/resume of a job it does not have: raise FakeNotFound (APScheduler, batch) or answer
        # False, "nothing changed" (Prefect: PrefectAdapter.pause/resume of an absent deployment)
        self.missing_job_raises = missing_job_raises
        self.run_orchestrator = run_orchestrator  # the RunRecord.orchestrator of its runs: legacy | prefect
        self.mode = mode  # JobInfo.mode of its jobs (a Prefect side: live | shadow)
        self.unreachable = unreachable
        self.delay = delay
        self.trigger_status = trigger_status
        self.hold_runs = hold_runs
        self.jobs: dict[str, _Job] = {}
        self.runs: list["RunRecord"] = []
        self.ledger: dict[tuple[str, str], list["LedgerEntry"]] = {}
        self.calls: list[tuple[str, tuple]] = []
        self.effects: list[tuple[str, str]] = []
        self._failures: dict[str, list[BaseException]] = {}
        self._fail_at: dict[int, BaseException] = {}
        self._crashes: list[_Crash] = []
        self._lock = threading.RLock()
        for ing in ingestions:
            self._set_job(ing)

    # -- failure injection ---------------------------------------------------------------
    @property
    def down(self) -> bool:
        return self.unreachable

    @down.setter
    def down(self, value: bool) -> None:
        self.unreachable = value

    def fail_next(self, method: str, exc: BaseException | None = None, *, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` raise ``exc`` (default: OrchestratorError) and change nothing."""
        self._check_method(method)
        exc = exc or OrchestratorError(f"injected failure in {method}")
        with self._lock:
            self._failures.setdefault(method, []).extend([exc] * times)

    def fail_at(self, n: int, exc: BaseException | None = None) -> None:
        """The n-th protocol call from now (1: the next one) raises ``exc`` and changes nothing."""
        with self._lock:
            self._fail_at[len(self.calls) + n] = exc or OrchestratorError(f"injected failure at call {n}")

    def crash_after(self, method: str | None = None, *, call: int | None = None,
                    ingestion_id: str | None = None) -> None:
        """The next call matching ``method`` / ``ingestion_id`` (or the n-th call from now with
        ``call=n``) does its side effect, then raises :class:`SimulatedCrash`. One-shot."""
        if method is not None:
            self._check_method(method)
        with self._lock:
            self._crashes.append(_Crash(method, None if call is None else len(self.calls) + call, ingestion_id))

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()
            self._fail_at.clear()
            self._crashes.clear()

    def _check_method(self, method: str) -> None:
        if method.startswith("_") or not callable(getattr(self, method, None)):
            raise AttributeError(f"FakeOrchestrator has no method {method!r}")

    def _enter(self, method: str, *args: Any) -> None:
        with self._lock:
            self.calls.append((method, args))
            n = len(self.calls)
            exc = self._fail_at.pop(n, None)
            if exc is not None:
                raise exc
            if self.unreachable:
                raise OrchestratorError(f"{self.name} is unreachable (injected)")
            queue = self._failures.get(method)
            if queue:
                raise queue.pop(0)
        if self.delay:
            time.sleep(self.delay)

    def _leave(self, method: str, ingestion_id: str | None, result: Any, changed: bool) -> Any:
        """After the side effect: record it, then crash if a crash was armed for this call."""
        with self._lock:
            if changed:
                self.effects.append((method, ingestion_id or ""))
            n = len(self.calls)
            for c in self._crashes:
                if c.matches(n, method, ingestion_id):
                    self._crashes.remove(c)
                    raise SimulatedCrash(f"{self.name}: killed after {method}({ingestion_id}) (call {n})")
        return result

    def effect_count(self, method: str, ingestion_id: str | None = None) -> int:
        return sum(1 for m, i in self.effects if m == method and (ingestion_id is None or i == ingestion_id))

    def state(self) -> dict[str, tuple]:
        """The jobs as comparable values: {ingestion id: (paused, schedule, timezone)}."""
        with self._lock:
            return {i: (j.paused, json.dumps(j.schedule, sort_keys=True, default=str), j.timezone)
                    for i, j in sorted(self.jobs.items())}

    def call_count(self, method: str) -> int:
        return sum(1 for m, _ in self.calls if m == method)

    # -- test helpers (not part of the protocol) -----------------------------------------
    def clone(self) -> "FakeOrchestrator":
        """A fake with the same settings, jobs, runs and ledger; no calls, effects or armed failures."""
        c = FakeOrchestrator(self.name, run_orchestrator=self.run_orchestrator, unreachable=self.unreachable,
                             trigger_status=self.trigger_status, hold_runs=self.hold_runs, mode=self.mode,
                             delay=self.delay, missing_job_raises=self.missing_job_raises)
        with self._lock:
            c.jobs = {k: replace(j) for k, j in self.jobs.items()}
            c.runs = list(self.runs)
            c.ledger = {k: list(v) for k, v in self.ledger.items()}
        return c

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

        with self._lock:
            out = [JobInfo(ingestion_id=j.ingestion_id, orchestrator="fake", job_id=j.ingestion_id,
                           schedule=None if j.schedule is None else f"{describe(j.schedule)} {j.timezone}",
                           paused=j.paused, mode=self.mode)
                   for j in sorted(self.jobs.values(), key=lambda j: j.ingestion_id)]
        return self._leave("list_jobs", None, out, False)

    def read_runs(self, *, since: datetime | None = None, ingestion_id: str | None = None) -> list["RunRecord"]:
        self._enter("read_runs", since, ingestion_id)
        with self._lock:
            out = [r for r in self.runs
                   if (ingestion_id is None or r.ingestion_id == ingestion_id)
                   and (since is None or r.started_at >= since)]
        return self._leave("read_runs", ingestion_id, sorted(out, key=lambda r: r.started_at, reverse=True), False)

    def read_ledger(self, ingestion_id: str, namespace: str, *, since: datetime | None = None) -> list["LedgerEntry"]:
        self._enter("read_ledger", ingestion_id, namespace, since)
        with self._lock:
            entries = list(self.ledger.get((ingestion_id, namespace), []))
        out = sorted((e for e in entries if since is None or (e.processed_at and e.processed_at >= since)),
                     key=lambda e: e.path)
        return self._leave("read_ledger", ingestion_id, out, False)

    def health(self) -> Health:
        try:
            self._enter("health")
        except OrchestratorError as e:
            return Health(False, str(e))
        return self._leave("health", None, Health(True, f"{self.name}: {len(self.jobs)} job(s) in memory"), False)

    # -- writer --------------------------------------------------------------------------
    def ensure_job(self, ingestion: "Ingestion") -> str:
        self._enter("ensure_job", ingestion.id)
        with self._lock:
            job = self.jobs.get(ingestion.id)
            if job is None:
                self._set_job(ingestion)
                res = CREATED
            elif (job.schedule, job.timezone) == (ingestion.schedule, ingestion.timezone):
                res = UNCHANGED
            else:
                self._set_job(ingestion)  # paused stays paused
                res = UPDATED
        return self._leave("ensure_job", ingestion.id, res, res != UNCHANGED)

    def remove_job(self, ingestion_id: str) -> bool:
        self._enter("remove_job", ingestion_id)
        with self._lock:
            changed = self.jobs.pop(ingestion_id, None) is not None
        return self._leave("remove_job", ingestion_id, changed, changed)

    def _job(self, ingestion_id: str) -> _Job:
        job = self.jobs.get(ingestion_id)
        if job is None:
            raise FakeNotFound(f"{self.name} has no job for {ingestion_id}")
        return job

    def pause(self, ingestion_id: str) -> bool:
        self._enter("pause", ingestion_id)
        with self._lock:
            changed = False
            if ingestion_id in self.jobs or self.missing_job_raises:
                job = self._job(ingestion_id)
                changed, job.paused = not job.paused, True
        return self._leave("pause", ingestion_id, changed, changed)

    def resume(self, ingestion_id: str) -> bool:
        self._enter("resume", ingestion_id)
        with self._lock:
            changed = False
            if ingestion_id in self.jobs or self.missing_job_raises:
                job = self._job(ingestion_id)
                changed, job.paused = job.paused, False
        return self._leave("resume", ingestion_id, changed, changed)

    def trigger(self, ingestion_id: str) -> str:
        self._enter("trigger", ingestion_id)
        with self._lock:
            if self._job(ingestion_id).paused:
                raise FakePaused(f"{ingestion_id} is paused on {self.name}")
        status = "RUNNING" if self.hold_runs else self.trigger_status
        run_id = self.add_run(ingestion_id, status=status, trigger="manual").id
        return self._leave("trigger", ingestion_id, run_id, True)

    def cancel_running(self, ingestion_id: str) -> int:
        self._enter("cancel_running", ingestion_id)
        n = 0
        with self._lock:
            for r in list(self.runs):
                if r.ingestion_id == ingestion_id and r.status == "RUNNING":
                    self.finish_run(r.id, "CANCELLED")
                    n += 1
        return self._leave("cancel_running", ingestion_id, n, n > 0)

    # -- beyond the protocol: what the engine asks of a Prefect side and of the legacy side ------
    def flow_run_state(self, run_id: str) -> str | None:
        """The state of a run by its id or external id (Prefect's flow run state type), None if unknown."""
        self._enter("flow_run_state", run_id)
        with self._lock:
            run = next((r for r in self.runs if run_id in (r.id, r.external_id)), None)
        state = None if run is None else {"SUCCESS": "COMPLETED", "PARTIAL": "COMPLETED"}.get(run.status, run.status)
        return self._leave("flow_run_state", None if run is None else run.ingestion_id, state, False)

    def run_now(self, ingestion_id: str, *, trigger: str = "manual") -> str:
        """Run now and wait (the legacy side's ``run_now``); returns the run id."""
        run_id = self.trigger(ingestion_id)
        return run_id


class FakeSides:
    """The engine's ``Sides`` (cutover.engine.execute.Sides) over fakes: one legacy side and one
    Prefect side per mode (``live``, ``shadow``), each a :class:`FakeOrchestrator`."""

    def __init__(self, ingestions: Iterable["Ingestion"] = (), *, delay: float = 0.0):
        ings = list(ingestions)
        self.legacy_fake = FakeOrchestrator("legacy", ingestions=ings, delay=delay)
        self.prefect_fakes = {mode: FakeOrchestrator(f"prefect-{mode}", run_orchestrator="prefect", mode=mode,
                                                     delay=delay, missing_job_raises=False)
                              for mode in ("live", "shadow")}

    def clone(self) -> "FakeSides":
        """The same sides (jobs, runs) as independent fakes with fresh call and effect records."""
        c = FakeSides.__new__(FakeSides)
        c.legacy_fake = self.legacy_fake.clone()
        c.prefect_fakes = {m: f.clone() for m, f in self.prefect_fakes.items()}
        return c

    def legacy(self) -> FakeOrchestrator:
        return self.legacy_fake

    def prefect(self, mode: str) -> FakeOrchestrator:
        return self.prefect_fakes[mode]

    @property
    def fakes(self) -> dict[str, FakeOrchestrator]:
        return {"legacy": self.legacy_fake, **{f"prefect-{m}": f for m, f in self.prefect_fakes.items()}}

    def state(self) -> dict[str, dict]:
        return {name: f.state() for name, f in self.fakes.items()}

    def effects(self) -> dict[str, list[tuple[str, str]]]:
        return {name: sorted(f.effects) for name, f in self.fakes.items()}
