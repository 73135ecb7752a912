"""Issue #15: a team's APScheduler records its runs into the legacy run table through cutover's
listeners (EVENT_JOB_SUBMITTED/EXECUTED/ERROR/MISSED), with a real BackgroundScheduler on the team's
own job store."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

from tests.test_team_import import invoke

UTC = timezone.utc


def test_listeners_record_executed_error_and_missed_runs(workspace_env, tmp_path):
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.date import DateTrigger

    from cutover.core.records.jobruns import FAILED, MISSED, SUCCESS, JobRunStore
    from cutover.core.workspace import Workspace
    from legacy.apscheduler.teamside import record_runs

    url = f"sqlite:///{tmp_path / 'team.db'}"
    s = BackgroundScheduler(jobstores={"default": SQLAlchemyJobStore(url=url)}, timezone=UTC)
    s.start(paused=True)
    soon = datetime.now(UTC) + timedelta(seconds=2)
    s.add_job("tests.team_funcs:load_orders", DateTrigger(run_date=soon), id="ok", args=["eu"])
    s.add_job("tests.team_funcs:fail", DateTrigger(run_date=soon), id="boom")
    s.add_job("tests.team_funcs:sync", CronTrigger(hour=3), id="late", misfire_grace_time=1)
    s.add_job("tests.team_funcs:sync", CronTrigger(hour=4), id="other")  # not imported: never recorded
    s.shutdown(wait=False)
    from legacy.apscheduler.teamside import TeamStore

    team = TeamStore(url)  # overdue by an hour while the scheduler was down: missed when it starts
    team.set_next_run_time("late", datetime.now(UTC) - timedelta(hours=1))
    team.close()
    code, out, err = invoke("legacy", "import", "--jobstore", url, "--jobs", "--json", "--verify-days", "0")
    assert code == 0, err
    ws = Workspace()
    ws.jobs.remove("other")

    s = BackgroundScheduler(jobstores={"default": SQLAlchemyJobStore(url=url)}, timezone=UTC)
    record_runs(s, home=str(workspace_env))
    s.start()
    store = JobRunStore(ws.autoloader_engine)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            runs = {r.run.ingestion_id: r for r in store.list()}
            if {"ok", "boom", "late"} <= set(runs) and all(r.run.status != "RUNNING" for r in runs.values()):
                break
            time.sleep(0.2)
    finally:
        s.shutdown(wait=True)
    runs = {r.run.ingestion_id: r for r in store.list()}
    assert set(runs) == {"ok", "boom", "late"}
    ok, boom, late = runs["ok"], runs["boom"], runs["late"]
    assert ok.run.status == SUCCESS and "'rows': 3" in ok.output_tail and ok.run.duration_s >= 0
    assert ok.run.external_id == "ok" and ok.run.orchestrator == "legacy" and ok.run.mode == "live"
    assert boom.run.status == FAILED and "RuntimeError: upstream refused" in boom.run.error
    assert "Traceback" in boom.output_tail and "hunter2" not in boom.output_tail + boom.run.error
    assert late.run.status == MISSED and late.run.duration_s is None
    code, out, _ = invoke("ingestion", "list", "--json")
    assert {d["id"]: d["kind"] for d in json.loads(out)} == {"ok": "callable", "boom": "callable", "late": "callable"}
