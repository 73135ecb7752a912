"""The legacy APScheduler 3 scheduler, for real: jobs in a SQLAlchemyJobStore fire in the
foreground scheduler, pause/resume from another process (another engine) take effect
within the poll interval and survive restarts, and trigger specs round-trip."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from cutover.core.config import load_settings
from cutover.core.db import make_engine
from cutover.core.workspace import Workspace
from cutover.core.schedule import triggers as sched
from cutover.core.records.ingestions import validate
from legacy.apscheduler.process import run_foreground
from legacy.apscheduler.scheduler import FUNC_REF, JobSync, run_scheduled

UTC = timezone.utc
START = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def home(workspace_env, monkeypatch):
    """An isolated workspace (tests/conftest.py) whose scheduler polls every 0.2 s."""
    monkeypatch.setenv("CUTOVER_SCHEDULER_POLL_INTERVAL", "0.2")
    return workspace_env


def _source(tmp_path: Path, name: str, n_files: int = 1) -> Path:
    src = tmp_path / "src" / name
    src.mkdir(parents=True, exist_ok=True)
    for i in range(n_files):
        (src / f"{name}-{i}.csv").write_text("id,amount\n" + "".join(f"{i * 10 + k},{k}.5\n" for k in range(3)))
    return src


def _add(ws: Workspace, tmp_path: Path, iid: str, schedule, tz: str = "UTC"):
    ing = validate({"id": iid, "source_uri": str(_source(tmp_path, iid)), "pattern": "*.csv", "format": "csv",
                    "table": f"sched.{iid}", "schedule": schedule, "timezone": tz})
    ws.ingestions.upsert([ing], replace_existing=True)
    return ing


def _scheduled_runs(ws: Workspace, iid: str):
    return [r for r in ws.runs.list(ingestion_id=iid) if r.trigger == "scheduled"]


def _wait(pred, timeout: float, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


class Foreground:
    """run_foreground in a thread, stoppable."""

    def __init__(self, settings):
        self.stop = threading.Event()
        self.started = threading.Event()
        self.result: dict = {}
        self.thread = threading.Thread(target=self._run, args=(settings,), daemon=True)

    def _run(self, settings):
        self.result = run_foreground(settings, stop_event=self.stop, started=self.started)

    def __enter__(self):
        self.thread.start()
        assert self.started.wait(20), "scheduler did not start"
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def test_interval_job_really_fires_in_the_foreground_scheduler(home, tmp_path):
    settings = load_settings()
    ws = Workspace(settings)
    _add(ws, tmp_path, "ticks", {"trigger": "interval", "seconds": 1})
    with Foreground(settings) as fg:
        runs = _wait(lambda: [r for r in _scheduled_runs(ws, "ticks") if r.status != "RUNNING"], 10)
    assert runs, "the interval job never fired"
    run = runs[-1]
    assert run.orchestrator == "legacy" and run.mode == "live" and run.trigger == "scheduled"
    assert run.external_id == "ticks"  # the APScheduler job id
    assert run.status == "SUCCESS", run.error
    assert fg.result["executed"] >= 1 and fg.result["errors"] == 0
    assert [e.status for e in ws.ledger("ticks").entries()] == ["SUCCESS"]
    assert [j.ingestion_id for j in JobSync(settings).jobs()] == ["ticks"]


@pytest.mark.slow
def test_pause_from_another_process_takes_effect_and_survives_restart(home, tmp_path):
    settings = load_settings()
    ws = Workspace(settings)
    _add(ws, tmp_path, "ticks", {"trigger": "interval", "seconds": 1})
    # "another process": its own engine on the same job store
    other = JobSync(settings, engine=make_engine(settings.jobstore_url))
    poll = settings.scheduler_poll_interval
    with Foreground(settings):
        assert _wait(lambda: _scheduled_runs(ws, "ticks"), 10), "never fired"
        assert other.pause("ticks") is True
        time.sleep(poll + 0.3)  # a run picked up just before the pause may still start
        n = len(_scheduled_runs(ws, "ticks"))
        time.sleep(2.5)
        assert len(_scheduled_runs(ws, "ticks")) == n, "the job kept firing after the pause"
    # a restart (which syncs the jobs first) keeps it paused
    with Foreground(settings):
        time.sleep(2.0)
        assert len(_scheduled_runs(ws, "ticks")) == n, "the job fired after a restart while paused"
        assert JobSync(settings).jobs()[0].paused
        assert other.resume("ticks") is True
        assert _wait(lambda: len(_scheduled_runs(ws, "ticks")) > n, poll + 1 + 5), "resume did not take effect"
    other.engine.dispose()


def test_concurrent_pause_is_not_overwritten_by_the_scheduler(home, tmp_path):
    """The scheduler read a due job, another process paused it, then the scheduler
    wrote the job's next run time: the pause must win, and the run is skipped."""
    from apscheduler.schedulers.background import BackgroundScheduler

    from legacy.apscheduler.process import make_store as _make_store

    settings = load_settings()
    ws = Workspace(settings)
    ing = _add(ws, tmp_path, "raced", {"trigger": "interval", "seconds": 1})
    assert JobSync(settings).ensure(ing) == "created"
    store = _make_store(make_engine(settings.jobstore_url), settings.jobstore_table)
    store.start(BackgroundScheduler(timezone=UTC), "default")
    (job,) = store.get_due_jobs(datetime(2100, 1, 1, tzinfo=UTC))
    assert JobSync(settings, engine=make_engine(settings.jobstore_url)).pause("raced") is True
    job._modify(next_run_time=datetime(2099, 1, 1, tzinfo=UTC))
    store.update_job(job)  # must not un-pause
    assert JobSync(settings).is_paused("raced") is True
    assert run_scheduled("raced") is None  # the job function re-checks the pause
    assert ws.runs.list(ingestion_id="raced") == []
    store.shutdown()


def test_run_scheduled_honours_the_batch_flag(home, tmp_path):
    settings = load_settings()
    ws = Workspace(settings)
    _add(ws, tmp_path, "flagged", "daily 02:00")
    ws.ingestions.set_batch_paused("flagged", True)
    assert run_scheduled("flagged") is None
    assert ws.runs.list(ingestion_id="flagged") == []
    ws.ingestions.set_batch_paused("flagged", False)
    rid = run_scheduled("flagged")
    rec = ws.runs.get(rid)
    assert (rec.trigger, rec.external_id, rec.status) == ("scheduled", "flagged", "SUCCESS")


SPECS = [
    {"trigger": "cron", "day": "last", "hour": 2, "minute": 15, "second": 30, "jitter": 60},
    {"trigger": "cron", "day_of_week": "mon-fri", "hour": "*/4", "minute": 5, "second": "15",
     "timezone": "Europe/Berlin"},
    {"trigger": "cron", "month": "1,4,7,10", "day": "1st mon", "hour": 6},
    {"trigger": "interval", "hours": 6, "start_date": "2026-01-01T00:30:00"},
    {"trigger": "interval", "minutes": 90, "start_date": "2026-01-01T00:10:00", "jitter": 30,
     "timezone": "America/New_York"},
    {"cron": "0 2 * * 1-5"},
    {"frequency": "weekly", "day": "fri", "at": "18:45"},
]


def _fires(trigger, n=30):
    t = copy.copy(trigger)
    t.jitter = None
    return sched.next_fire_times(t, START, n)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: sched.describe(s))
def test_trigger_specs_are_accepted_stored_and_round_trip(home, tmp_path, spec):
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    settings = load_settings()
    ws = Workspace(settings)
    norm = sched.normalize_schedule(spec)
    ing = _add(ws, tmp_path, "rt", norm, tz="Asia/Tokyo")
    original = sched.build_trigger(ing.schedule, ing.timezone)
    js = JobSync(settings)
    assert js.ensure(ing) == "created"
    assert js.ensure(ing) == "unchanged"

    # APScheduler itself restores the job we wrote
    aps = BackgroundScheduler(jobstores={"default": SQLAlchemyJobStore(url=settings.jobstore_url,
                                                                       tablename=settings.jobstore_table)},
                              timezone=UTC)
    aps.start(paused=True)
    try:
        job = aps.get_job("rt")
        assert job.func is run_scheduled and job.func_ref == FUNC_REF
        assert job.kwargs == {"ingestion_id": "rt"} and job.coalesce and job.max_instances == 1
        assert job.misfire_grace_time == int(settings.misfire_grace_time)
        stored = job.trigger
    finally:
        aps.shutdown(wait=False)

    spec2, tz2 = sched.trigger_to_spec(stored)
    rebuilt = sched.build_trigger(sched.normalize_schedule(spec2), tz2)
    assert _fires(rebuilt) == _fires(stored) == _fires(original)
    assert (rebuilt.jitter or None) == (stored.jitter or None) == (spec.get("jitter") or None)
    assert str(rebuilt.timezone) == str(original.timezone) == sched.schedule_timezone(norm, "Asia/Tokyo")


def test_ensure_is_idempotent_updates_and_never_unpauses(home, tmp_path):
    settings = load_settings()
    ws = Workspace(settings)
    js = JobSync(settings)
    ing = _add(ws, tmp_path, "orders", {"trigger": "interval", "hours": 1})  # no start_date: phase kept
    assert js.ensure(ing) == "created"
    nrt = js.jobs()[0].next_run_time
    time.sleep(0.01)
    assert js.ensure(ing) == "unchanged"
    assert js.jobs()[0].next_run_time == nrt
    assert js.pause("orders") is True
    ing2 = _add(ws, tmp_path, "orders", "daily 03:00")
    assert js.ensure(ing2) == "updated"
    (job,) = js.jobs()
    assert job.paused and job.next_run_time is None and "hour='3'" in job.schedule
    assert js.resume("orders") is True
    (job,) = js.jobs()
    assert not job.paused and (job.next_run_time.hour, job.next_run_time.minute) == (3, 0)
    assert js.remove("orders") is True and js.remove("orders") is False
    assert js.pause("orders") is False and js.resume("orders") is False


def test_sync_and_dry_run_change_nothing_not_even_the_table(home, tmp_path, monkeypatch):
    store = tmp_path / "jobs.db"
    monkeypatch.setenv("CUTOVER_SCHEDULER_JOBSTORE_URL", f"sqlite:///{store}")
    settings = load_settings()
    ws = Workspace(settings)
    _add(ws, tmp_path, "a", "daily 01:00")
    _add(ws, tmp_path, "b", "hourly :30")
    _add(ws, tmp_path, "manual", None)
    js = JobSync(settings)
    assert js.sync(ws.ingestions.list(), dry_run=True) == [("created", "a"), ("created", "b")]
    assert not store.exists()
    assert js.sync(ws.ingestions.list()) == [("created", "a"), ("created", "b")]
    assert js.sync(ws.ingestions.list()) == [("unchanged", "a"), ("unchanged", "b")]
    js.pause("b")
    _add(ws, tmp_path, "a", None)  # lost its schedule
    ws.ingestions.upsert([validate({**ws.ingestions.get("b").definition(), "credentials": None,
                                    "schedule": {"frequency": "hourly", "at": ":45"}})], replace_existing=True)
    planned = js.sync(ws.ingestions.list(), dry_run=True)
    assert planned == [("updated", "b"), ("removed", "a")]
    assert [j.ingestion_id for j in js.jobs()] == ["a", "b"]
    assert js.sync(ws.ingestions.list()) == planned
    (b,) = js.jobs()
    assert b.ingestion_id == "b" and b.paused


# -- the CLI ------------------------------------------------------------------------------------


def invoke(args, **env):
    import logging

    from cutover.cli import cli
    from cutover.cli.app import run_main

    runner = CliRunner()
    with runner.isolation(env=env or None) as (out, err, _):
        code = run_main(cli, list(args))
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_cutover", False):
            root.removeHandler(h)
    return code, out.getvalue().decode(), err.getvalue().decode()


def test_cli_sync_jobs_pause_resume(home, tmp_path):
    ws = Workspace(load_settings())
    _add(ws, tmp_path, "orders", "daily 02:00", tz="Europe/Berlin")
    _add(ws, tmp_path, "adhoc", None)

    code, out, _ = invoke(["legacy", "sync", "--dry-run"])
    assert code == 0 and "would create: orders" in out
    assert JobSync(ws.settings).jobs() == []
    code, out, _ = invoke(["legacy", "sync"])
    assert code == 0 and "created: orders" in out

    code, out, _ = invoke(["legacy", "pause", "--all", "--dry-run"])
    assert code == 0 and "would pause orders" in out and "would pause adhoc" in out
    assert not JobSync(ws.settings).jobs()[0].paused and not ws.ingestions.get("orders").batch_paused

    code, out, _ = invoke(["legacy", "pause", "orders"])
    assert code == 0 and "paused orders: APScheduler job paused, batch flag set" in out
    assert JobSync(ws.settings).jobs()[0].paused and ws.ingestions.get("orders").batch_paused
    code, out, _ = invoke(["legacy", "pause", "orders"])
    assert code == 0 and "unchanged orders" in out

    code, out, _ = invoke(["legacy", "jobs", "--json"])
    assert code == 0
    import json

    rows = {r["ingestion_id"]: r for r in json.loads(out)["jobs"]}
    assert rows["orders"]["job"] == "paused" and rows["orders"]["batch"] == "paused"
    assert rows["adhoc"]["job"] == "none"

    code, out, _ = invoke(["legacy", "resume", "--all"])
    assert code == 0 and "resumed orders: APScheduler job resumed, batch flag cleared" in out
    code, out, _ = invoke(["legacy", "jobs"])
    assert code == 0 and ("+01:00" in out or "+02:00" in out)  # next fire time in the ingestion's zone (ISO, offset)
    assert "orders" in out and "active" in out

    code, _, err = invoke(["legacy", "pause", "nope"])
    assert code == 2 and "no ingestion 'nope'" in err
    code, _, err = invoke(["legacy", "resume"])
    assert code == 2 and "--all" in err


def test_cli_dry_runs_on_a_fresh_workspace_create_nothing(home):
    for args in (["legacy", "sync", "--dry-run"], ["legacy", "pause", "--all", "--dry-run"],
                 ["legacy", "resume", "--all", "--dry-run"]):
        code, out, err = invoke(args)
        assert code == 0, err
    assert not home.exists()


def test_cli_scheduler_once_for(home, tmp_path):
    ws = Workspace(load_settings())
    _add(ws, tmp_path, "ticks", {"trigger": "interval", "seconds": 1})
    code, _, err = invoke(["legacy", "scheduler", "--once-for", "2.5"])
    assert code == 0, err
    assert "scheduler running: 1 job(s)" in err and "scheduler stopped" in err
    assert _scheduled_runs(ws, "ticks")


@pytest.mark.slow
def test_scheduler_process_stops_gracefully_on_sigterm(home, tmp_path):
    ws = Workspace(load_settings())
    _add(ws, tmp_path, "ticks", {"trigger": "interval", "seconds": 1})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "cutover", "legacy", "scheduler"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait(lambda: _scheduled_runs(ws, "ticks"), 20), "the scheduler process never fired"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "received SIGTERM" in err and "scheduler stopped" in err
    assert all(r.status != "RUNNING" for r in ws.runs.list(ingestion_id="ticks")), "a run was left RUNNING"


@pytest.mark.postgres
def test_job_store_on_postgres(home, tmp_path, monkeypatch, pg_url):
    from apscheduler.schedulers.background import BackgroundScheduler

    from legacy.apscheduler.process import make_store as _make_store

    monkeypatch.setenv("CUTOVER_SCHEDULER_JOBSTORE_URL", pg_url)
    settings = load_settings()
    ws = Workspace(settings)
    _add(ws, tmp_path, "pgticks", {"trigger": "interval", "seconds": 1})
    js = JobSync(settings)
    assert js.sync(ws.ingestions.list(), dry_run=True) == [("created", "pgticks")]
    assert not js.exists(), "a dry run created the table"
    with Foreground(settings):
        runs = _wait(lambda: [r for r in _scheduled_runs(ws, "pgticks") if r.status != "RUNNING"], 15)
        assert runs and runs[0].external_id == "pgticks"
        assert js.pause("pgticks") is True and js.pause("pgticks") is False
    assert js.sync(ws.ingestions.list()) == [("unchanged", "pgticks")]
    assert js.jobs()[0].paused

    # the scheduler's compare-and-swap write does not undo another process's resume
    store = _make_store(make_engine(pg_url), settings.jobstore_table)
    store.start(BackgroundScheduler(timezone=UTC), "default")
    assert store.get_due_jobs(datetime(2100, 1, 1, tzinfo=UTC)) == []  # paused: never due
    assert JobSync(settings, engine=make_engine(pg_url)).resume("pgticks") is True
    (job,) = store.get_due_jobs(datetime(2100, 1, 1, tzinfo=UTC))
    assert JobSync(settings, engine=make_engine(pg_url)).pause("pgticks") is True
    job._modify(next_run_time=datetime(2099, 1, 1, tzinfo=UTC))
    store.update_job(job)
    assert js.is_paused("pgticks") is True
    store.shutdown()


def test_a_foreign_job_under_an_ingestion_id_is_a_problem_not_a_takeover(home, tmp_path):
    """Someone else's job in the table under an ingestion's id is never overwritten;
    the other ingestions are still synced (and the scheduler still starts)."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    settings = load_settings()
    ws = Workspace(settings)
    _add(ws, tmp_path, "mine", "daily 01:00")
    _add(ws, tmp_path, "taken", "daily 02:00")
    JobSync(settings).prepare()
    aps = BackgroundScheduler(jobstores={"default": SQLAlchemyJobStore(url=settings.jobstore_url)}, timezone=UTC)
    aps.start(paused=True)
    aps.add_job("json:dumps", "cron", hour=5, id="taken", args=[{}])
    aps.shutdown(wait=False)

    code, out, err = invoke(["legacy", "sync"])
    assert code == 3, out + err
    assert "created: mine" in out and "problem: APScheduler job taken belongs to another application" in out
    assert [j.ingestion_id for j in JobSync(settings).jobs()] == ["mine"]
    code, out, err = invoke(["legacy", "sync", "--dry-run"])
    assert code == 2 and "unchanged: mine" in out
    code, _, err = invoke(["legacy", "scheduler", "--once-for", "0.3"])
    assert code == 0 and "problem: APScheduler job taken" in err and "scheduler running" in err
