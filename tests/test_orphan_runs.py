"""Runs that crashed before writing their run record, found from the orchestrators themselves
(cutover.registry.orphan_runs -> each side's reader -> parity's runs check, `run_crashed`), at once.

- Prefect (real server and worker, tests/prefect_fixtures.py): a shadow flow run that fails in the
  flow before its record (a bad parameter), and one the server marks CRASHED (its infrastructure
  died before the flow started); a normal flow run with its record is not one;
- the cron wrapper: a start with no end whose process is gone, and a FAILED end, with no run record;
- APScheduler: error and missed events of the scheduler process's event log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from checks.model import FAIL
from checks.runs import check_runs
from cutover.protocol import OrphanRun
from tests.helpers import add_ingestion, write_csv_files
from tests.prefect_fixtures import prefect_cleanup, prefect_env, prefect_server  # noqa: F401

UTC = timezone.utc


def test_check_runs_reports_orphans_at_once_and_notes_unread_sides():
    now = datetime.now(UTC)
    o = OrphanRun("orders", "prefect", "fr-1", "CRASHED", now - timedelta(seconds=5), mode="shadow",
                  detail="flow run orders-shadow (fr-1) Crashed")
    res = check_runs([], [], until=now, thresholds={"run_match_window": 900}, orphans=[o],
                     orphan_notes=["cron: not read (run log unreadable)"])
    assert res.verdict == FAIL and [f.kind for f in res.findings] == ["run_crashed"]
    f = res.findings[0]
    assert f.shadow["side_run_id"] == "fr-1" and f.legacy is None
    assert "prefect shadow run fr-1 CRASHED with no run record" in f.detail
    assert res.metrics["orphan_runs"] == 1 and res.metrics["orchestrators_not_read"] == ["cron: not read (run log unreadable)"]
    clean = check_runs([], [], until=now, thresholds={}, orphans=[])
    assert clean.findings == [] and clean.metrics["orphan_runs"] == 0


def test_apscheduler_error_and_missed_events(workspace_env, tmp_path):
    from cutover.core.workspace import Workspace
    from legacy.apscheduler import events

    ws = Workspace()
    ing = add_ingestion(ws, "aps", tmp_path / "src")
    assert events.read_orphan_runs(ws, since=None, ingestion_ids=["aps"]) is None  # no event log: not set up
    t = datetime.now(UTC) - timedelta(minutes=30)
    # an error after the run wrote its record: judged from the record, not an orphan
    rid = ws.runs.start(ing.id, orchestrator="legacy", mode="live", trigger="scheduled")
    ws.runs.finish(rid, "FAILED", error="boom")
    events.record_event(ws.settings, events.ERROR, job_id="aps", scheduled_at=datetime.now(UTC) - timedelta(seconds=1),
                        error="RuntimeError: after the record")
    # an error with no record (the job raised before the service wrote one), and a missed run time
    events.record_event(ws.settings, events.ERROR, job_id="aps", scheduled_at=t, at=t + timedelta(seconds=2),
                        error="OperationalError: database is locked")
    events.record_event(ws.settings, events.MISSED, job_id="aps", scheduled_at=t + timedelta(minutes=5),
                        at=t + timedelta(minutes=6))
    events.record_event(ws.settings, events.ERROR, job_id="other", scheduled_at=t, error="x")
    with open(events.event_log(ws.settings), "a") as fh:
        fh.write("{torn line\n")
    got = events.read_orphan_runs(ws, since=t - timedelta(minutes=1), ingestion_ids=["aps"])
    assert [(o.status, o.at) for o in got] == [("FAILED", t), ("MISSED", t + timedelta(minutes=5))]
    assert "database is locked" in got[0].detail and "nothing ran" in got[1].detail
    assert events.read_orphan_runs(ws, since=t + timedelta(minutes=10), ingestion_ids=["aps"]) == []


def test_cron_wrapper_start_without_end_and_no_record(workspace_env, tmp_path):
    from cutover.core.workspace import Workspace
    from legacy.cron.adapter import read_orphan_runs
    from legacy.cron.config import CronConfig

    ws = Workspace()
    add_ingestion(ws, "cr", tmp_path / "src")
    assert read_orphan_runs(ws, since=None, ingestion_ids=["cr"]) is None  # no crontab set up
    crontab = tmp_path / "crontab"
    crontab.write_text("")
    log = tmp_path / "runs.jsonl"
    CronConfig(crontab=str(crontab), run_log=str(log)).save(ws.settings)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that is gone
    t = datetime.now(UTC) - timedelta(minutes=10)
    host = os.uname().nodename
    rid_ok = ws.runs.start("cr", orchestrator="legacy", mode="live", trigger="scheduled")
    ws.runs.finish(rid_ok, "SUCCESS")
    lines = [
        {"run_id": "w-crashed", "job": "cr", "ingestion_id": "cr", "start": t.isoformat(), "end": None,
         "status": "RUNNING", "host": host, "pid": dead.pid},
        {"run_id": "w-failed", "job": "cr", "ingestion_id": "cr", "start": (t + timedelta(minutes=1)).isoformat(),
         "end": (t + timedelta(minutes=2)).isoformat(), "status": "FAILED", "error": "ImportError: no module x"},
        {"run_id": "w-alive", "job": "cr", "ingestion_id": "cr", "start": t.isoformat(), "end": None,
         "status": "RUNNING", "host": host, "pid": os.getpid()},  # still running: not judged
        {"run_id": rid_ok, "job": "cr", "ingestion_id": "cr", "start": t.isoformat(), "end": None,
         "status": "CRASHED", "host": host, "pid": dead.pid},  # has its run record: the runs check sees it
    ]
    log.write_text("".join(json.dumps(d) + "\n" for d in lines))
    got = read_orphan_runs(ws, since=t - timedelta(minutes=1), ingestion_ids=["cr"])
    assert sorted((o.side_run_id, o.status) for o in got) == [("w-crashed", "CRASHED"), ("w-failed", "FAILED")]
    crashed = [o for o in got if o.side_run_id == "w-crashed"][0]
    assert "no end" in crashed.detail and crashed.orchestrator == "cron"


@pytest.mark.slow
@pytest.mark.prefect
def test_prefect_flow_runs_that_died_before_their_record(prefect_server, prefect_env, prefect_cleanup, tmp_path):
    from prefect.states import Crashed

    from cutover.commands.verdicts import parity
    from cutover.core.state import states
    from cutover.core.workspace import Workspace
    from flows.adapter import PrefectAdapter, read_orphan_runs
    from tests.prefect_fixtures import wait_flow_run

    write_csv_files(tmp_path / "src", 2)
    ws = Workspace()
    iid = "pf-orphan"
    prefect_cleanup(iid)
    ing = add_ingestion(ws, iid, tmp_path / "src")
    assert ws.service.run(ing).status == "SUCCESS"  # the legacy side first: the shadow forks from it
    since = datetime.now(UTC) - timedelta(minutes=1)
    with PrefectAdapter(ws, prefect_server.url, mode="shadow", paused_on_create=False) as ad:
        assert ad.ensure_job(ws.ingestions.get(iid)) == "created"
        ok = ad.trigger(iid)  # a normal shadow run: it writes its record
        with ad.client() as c:
            dep = ad._deployment(c, iid)
            # fails in the flow before create-run-record (a bad parameter): FAILED, no record
            bad = c.create_flow_run_from_deployment(dep["id"], parameters={"trigger": "bogus"})
            # infrastructure died before the flow started: the server holds it CRASHED, no record
            gone = c.create_flow_run_from_deployment(dep["id"], parameters={"trigger": "manual"})
            c.set_flow_run_state(gone.id, Crashed(message="the worker's process exited -9"), force=True)
    assert wait_flow_run(prefect_server, ok).state.type.value == "COMPLETED"
    assert wait_flow_run(prefect_server, str(bad.id)).state.type.value == "FAILED"
    assert any(r.external_id == ok for r in ws.runs.list(ingestion_id=iid, orchestrator="prefect"))

    got = read_orphan_runs(ws, since=since, ingestion_ids=[iid])
    assert sorted((o.side_run_id, o.status, o.mode) for o in got) == sorted(
        [(str(bad.id), "FAILED", "shadow"), (str(gone.id), "CRASHED", "shadow")])
    assert read_orphan_runs(ws, since=since, ingestion_ids=["someone-else"]) == []

    # parity's runs check reports both at once, naming each flow run
    states.set_state(ws.state_engine, iid, states.SHADOW)
    rep = parity(ws, [iid], since="1h", checks="runs", store=False).report
    runs = rep.ingestions[0].checks[0]
    crashed = [f for f in runs.findings if f.kind == "run_crashed"]
    assert sorted(f.shadow["side_run_id"] for f in crashed) == sorted([str(bad.id), str(gone.id)])
    assert any("the worker's process exited -9" in f.detail for f in crashed)
    assert rep.verdict == FAIL and runs.metrics["orphan_runs"] == 2


def test_apscheduler_job_error_before_the_record_is_logged_by_the_scheduler(workspace_env, tmp_path, monkeypatch):
    """The real foreground scheduler: a job whose run raises before the ingestion service writes its
    record (the runs store refuses the insert) leaves an error event, found as an orphan run."""
    import time

    from cutover.core.config import load_settings
    from cutover.core.records.runs import RunStore
    from cutover.core.workspace import Workspace
    from legacy.apscheduler import events
    from tests.test_scheduler import Foreground, _add, _wait

    monkeypatch.setenv("CUTOVER_SCHEDULER_POLL_INTERVAL", "0.2")
    settings = load_settings()
    ws = Workspace(settings)
    _add(ws, tmp_path, "tick", {"trigger": "interval", "seconds": 1})

    def refuse(self, *a, **kw):
        raise RuntimeError("runs store unavailable (injected)")

    monkeypatch.setattr(RunStore, "start", refuse)
    t0 = datetime.now(UTC)
    with Foreground(settings) as fg:
        assert _wait(lambda: fg.result.get("errors") or events.event_log(settings).exists(), 15)
        time.sleep(0.3)
    assert ws.runs.list(ingestion_id="tick") == []  # no run record at all
    got = events.read_orphan_runs(ws, since=t0 - timedelta(seconds=1), ingestion_ids=["tick"])
    assert got and {o.status for o in got} == {"FAILED"} and {o.orchestrator for o in got} == {"apscheduler"}
    assert "runs store unavailable (injected)" in got[0].detail
