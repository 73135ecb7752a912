"""The orchestrator contract (DESIGN §3): every adapter behaves the same.

Parametrized over the harnesses of ``conftest.py`` (fake, batch, apscheduler;
Prefect plugs in there). Semantics checked:

- ensure_job is idempotent (created -> unchanged; updated -> unchanged);
- pause is persistent and visible in list_jobs; pausing twice is a no-op (False);
- resume restores; resuming twice is a no-op;
- ensure_job on a paused job keeps it paused, even when the schedule changes;
- remove_job removes (or, for the batch side, retires) the job; twice is a no-op;
- trigger produces a run readable via read_runs (and ledger entries);
- health is ok; cancel_running returns a count.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from cutover.protocol import CREATED, UNCHANGED, UPDATED, Health, JobInfo, OrchestratorError, OrchestratorWriter

from .conftest import OTHER_SCHEDULE


def _job(h, iid) -> JobInfo | None:
    jobs = [j for j in h.adapter.list_jobs() if j.ingestion_id == iid]
    assert len(jobs) <= 1, f"{h.name}: more than one job for {iid}: {jobs}"
    return jobs[0] if jobs else None


def test_implements_the_protocol(harness):
    assert isinstance(harness.adapter, OrchestratorWriter)
    assert isinstance(harness.adapter.name, str) and harness.adapter.name


def test_health_ok(harness):
    h = harness.adapter.health()
    assert isinstance(h, Health)
    assert h.ok, h.detail


def test_list_jobs_one_per_ingestion(harness):
    jobs = harness.adapter.list_jobs()
    assert all(isinstance(j, JobInfo) for j in jobs)
    ids = sorted(j.ingestion_id for j in jobs)
    assert ids == sorted(harness.cw.ingestions)
    for j in jobs:
        assert not j.paused
        assert j.job_id
        if harness.has_schedules:
            assert j.schedule


def test_ensure_job_is_idempotent(harness):
    fresh = harness.cw.fresh
    harness.register(fresh)
    assert harness.adapter.ensure_job(fresh) == CREATED
    assert harness.adapter.ensure_job(fresh) == UNCHANGED
    before = _job(harness, fresh.id)
    assert before is not None and not before.paused

    changed = harness.cw.with_schedule(fresh, OTHER_SCHEDULE)
    assert harness.adapter.ensure_job(changed) == UPDATED
    assert harness.adapter.ensure_job(changed) == UNCHANGED
    after = _job(harness, fresh.id)
    assert after is not None and not after.paused
    if harness.has_schedules:
        assert after.schedule != before.schedule


def test_pause_is_visible_and_pausing_twice_is_a_noop(harness):
    a = harness.adapter
    assert a.pause("orders") is True
    assert _job(harness, "orders").paused
    assert not _job(harness, "customers").paused, "pause must not touch other jobs"
    assert a.pause("orders") is False
    assert _job(harness, "orders").paused


def test_resume_restores(harness):
    a = harness.adapter
    before = _job(harness, "orders")
    a.pause("orders")
    assert a.resume("orders") is True
    after = _job(harness, "orders")
    assert not after.paused
    assert after.schedule == before.schedule
    if before.next_run_time is not None:
        assert after.next_run_time is not None
    assert a.resume("orders") is False
    assert not _job(harness, "orders").paused


def test_ensure_job_keeps_a_paused_job_paused(harness):
    a = harness.adapter
    ing = harness.cw.ingestions["orders"]
    a.pause(ing.id)
    assert a.ensure_job(ing) == UNCHANGED
    assert _job(harness, ing.id).paused
    assert a.ensure_job(harness.cw.with_schedule(ing, OTHER_SCHEDULE)) == UPDATED
    job = _job(harness, ing.id)
    assert job.paused, "ensure_job must never un-pause"
    assert job.next_run_time is None


def test_remove_job(harness):
    a = harness.adapter
    assert a.remove_job("customers") is True
    job = _job(harness, "customers")
    if harness.removes_jobs:
        assert job is None
    else:
        assert job is None or job.paused, "a retired job must not be runnable"
    assert _job(harness, "orders") is not None, "remove_job must not touch other jobs"
    assert a.remove_job("customers") is False


def test_trigger_produces_a_run(harness):
    a = harness.adapter
    t0 = datetime.now(timezone.utc) - timedelta(seconds=1)
    ref = a.trigger("orders")
    assert isinstance(ref, str) and ref
    run = harness.wait_for_run("orders", ref)
    assert run.ingestion_id == "orders"
    assert run.status == "SUCCESS", run.error
    assert run.orchestrator == harness.run_orchestrator
    assert run.mode == "live"
    assert run.started_at >= t0
    assert run.id in [r.id for r in a.read_runs(since=t0)]
    tokyo = t0.astimezone(ZoneInfo("Asia/Tokyo"))  # the same instant in another zone
    assert run.id in [r.id for r in a.read_runs(since=tokyo)]
    assert run.id not in [r.id for r in a.read_runs(since=datetime.now(ZoneInfo("America/Los_Angeles"))
                                                      + timedelta(minutes=10))]
    assert a.read_runs(since=datetime.now(timezone.utc) + timedelta(hours=1)) == []
    assert all(r.ingestion_id == "orders" for r in a.read_runs(ingestion_id="orders"))

    entries = a.read_ledger("orders", "live")
    assert isinstance(entries, list)
    if harness.writes_ledger:
        assert sorted(e.path for e in entries) == sorted(harness.cw.files["orders"])
        assert {e.status for e in entries} == {"SUCCESS"}
        assert sum(e.records_ingested for e in entries) == run.records_ingested == 5
        assert a.read_ledger("orders", "shadow") == []
        assert a.read_ledger("customers", "live") == []


def test_cancel_running_returns_a_count(harness):
    n = harness.adapter.cancel_running("orders")
    assert isinstance(n, int) and n >= 0


# -- the fake's own failure injection (maintained code, used by unit tests) --------------------


def test_fake_fail_next_raises_once_and_changes_nothing(contract_ws):
    from cutover.testing import FakeOrchestrator

    fake = FakeOrchestrator(ingestions=contract_ws.ingestions.values())
    fake.fail_next("pause", OrchestratorError("boom"))
    with pytest.raises(OrchestratorError, match="boom"):
        fake.pause("orders")
    assert not [j for j in fake.list_jobs() if j.ingestion_id == "orders"][0].paused
    assert fake.pause("orders") is True
    fake.fail_next("resume", times=2)
    for _ in range(2):
        with pytest.raises(OrchestratorError):
            fake.resume("orders")
    assert fake.resume("orders") is True
    assert fake.call_count("resume") == 3


def test_fake_unreachable(contract_ws):
    from cutover.testing import FakeOrchestrator

    fake = FakeOrchestrator(ingestions=contract_ws.ingestions.values(), unreachable=True)
    for call in (fake.list_jobs, lambda: fake.pause("orders"), lambda: fake.trigger("orders"),
                 lambda: fake.read_runs(), lambda: fake.ensure_job(contract_ws.fresh)):
        with pytest.raises(OrchestratorError):
            call()
    assert not fake.health().ok
    fake.unreachable = False
    assert fake.health().ok


def test_fake_held_runs_are_cancelled(contract_ws):
    from cutover.testing import FakeOrchestrator

    fake = FakeOrchestrator(ingestions=contract_ws.ingestions.values(), hold_runs=True)
    rid = fake.trigger("orders")
    assert [r.status for r in fake.read_runs(ingestion_id="orders")] == ["RUNNING"]
    assert fake.cancel_running("orders") == 1
    assert fake.read_runs(ingestion_id="orders")[0].status == "CANCELLED"
    assert fake.read_runs()[0].id == rid
    fake.pause("orders")
    with pytest.raises(OrchestratorError):
        fake.trigger("orders")
