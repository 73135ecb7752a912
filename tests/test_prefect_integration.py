"""The Prefect side against a real Prefect server and a real process worker.

One server + worker for the whole session (tests/prefect_fixtures.py); every test
has its own CUTOVER_HOME and unique ingestion ids, and deletes its deployments.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from tests.helpers import ROOT, add_ingestion, batch_snapshots, ledger_rows, write_csv_files
from tests.prefect_fixtures import prefect_cleanup, prefect_env, prefect_server, wait_flow_run  # noqa: F401
from tests.helpers import invoke_cli as _cli

pytestmark = [pytest.mark.slow, pytest.mark.prefect]


def _workspace():
    from cutover.core.workspace import Workspace

    return Workspace()


def _adapter(ws, server, mode: str, **kw):
    from flows.adapter import PrefectAdapter

    return PrefectAdapter(ws, server.url, mode=mode, **kw)


def _prefect_record(ws, iid: str, flow_run_id: str):
    recs = [r for r in ws.runs.list(ingestion_id=iid, orchestrator="prefect") if r.external_id == flow_run_id]
    assert len(recs) == 1, recs
    return recs[0]


def test_cli_does_not_import_prefect():
    code = ("import sys, cutover.cli, flows.cli, flows.local, flows; "
            "sys.exit(1 if 'prefect' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_live_run_end_to_end(prefect_server, prefect_env, prefect_cleanup, tmp_path, capsys):
    """(a) deploy, trigger, Completed; run record, ledger and Iceberg snapshots of orchestrator prefect."""
    files = write_csv_files(tmp_path / "src", 4)
    ws = _workspace()
    iid = "pf-live"
    prefect_cleanup(iid)
    add_ingestion(ws, iid, tmp_path / "src")

    code, out, err = _cli(capsys, "prefect", "deploy", iid, "--mode", "live", "--active")
    assert code == 0, err
    assert f"create: {iid} -> cutover-ingest/{iid}-live" in out
    ing = ws.ingestions.get(iid)
    assert ing.prefect_deployment_id and ing.prefect_flow_id

    with _adapter(ws, prefect_server, "live") as ad:
        jobs = [j for j in ad.list_jobs() if j.ingestion_id == iid]
        assert [(j.job_id, j.mode, j.paused, j.schedule) for j in jobs] == [(ing.prefect_deployment_id, "live",
                                                                             False, None)]
        flow_run_id = ad.trigger(iid)
    fr = wait_flow_run(prefect_server, flow_run_id)
    assert fr.state.type.value == "COMPLETED", fr.state
    assert fr.parameters["trigger"] == "manual" and fr.parameters["mode"] == "live"

    rec = _prefect_record(ws, iid, flow_run_id)
    assert (rec.orchestrator, rec.mode, rec.trigger, rec.status) == ("prefect", "live", "manual", "SUCCESS")
    assert rec.files_processed == 4 and rec.records_ingested == sum(files.values())
    assert rec.prefect_deployment_id == ing.prefect_deployment_id

    rows = ledger_rows(ws.autoloader_engine, iid, "live")
    assert sorted(r.path for r in rows) == sorted(files) and {r.status for r in rows} == {"SUCCESS"}
    assert {r.run_id for r in rows} == {rec.id}

    snaps = batch_snapshots(ws.catalog, ing.table, "main")
    assert len(snaps) == 1  # the 4 files in one batch commit
    assert {s.properties["cutover.orchestrator"] for s in snaps} == {"prefect"}
    assert {s.properties["cutover.run-id"] for s in snaps} == {rec.id}
    assert sum(s.added_records for s in snaps) == sum(files.values())

    # the same run again: nothing new to do, still a Completed flow run and a SUCCESS record
    with _adapter(ws, prefect_server, "live") as ad:
        again = ad.trigger(iid)
    assert wait_flow_run(prefect_server, again).state.type.value == "COMPLETED"
    assert _prefect_record(ws, iid, again).files_processed == 0
    assert len(batch_snapshots(ws.catalog, ing.table, "main")) == 1


def test_failed_and_partial_runs(prefect_server, prefect_env, prefect_cleanup, tmp_path):
    """Final flow state follows the run record: FAILED -> Failed, PARTIAL -> Completed."""
    src = tmp_path / "src"
    write_csv_files(src, 1)
    (src / "zz-bad.csv").write_bytes(b"\xff\xfe\x00garbage,,,\n\x00\x00")
    ws = _workspace()
    prefect_cleanup("pf-failed")
    prefect_cleanup("pf-partial")
    add_ingestion(ws, "pf-failed", src, fmt="parquet", pattern="*.csv")  # no file parses: FAILED
    add_ingestion(ws, "pf-partial", src)  # one good csv, one bad: PARTIAL
    with _adapter(ws, prefect_server, "live", paused_on_create=False) as ad:
        assert ad.ensure_job(ws.ingestions.get("pf-failed")) == "created"
        assert ad.ensure_job(ws.ingestions.get("pf-partial")) == "created"
        failed_id = ad.trigger("pf-failed")
        partial_id = ad.trigger("pf-partial")

    fr = wait_flow_run(prefect_server, failed_id)
    assert fr.state.type.value == "FAILED", fr.state
    assert "FAILED" in (fr.state.message or "")
    rec = _prefect_record(ws, "pf-failed", failed_id)
    assert rec.status == "FAILED" and rec.files_failed == 2 and rec.files_processed == 0

    fr = wait_flow_run(prefect_server, partial_id)
    assert fr.state.type.value == "COMPLETED", fr.state
    rec = _prefect_record(ws, "pf-partial", partial_id)
    assert rec.status == "PARTIAL" and rec.files_processed == 1 and rec.files_failed == 1, rec


def test_shadow_run(prefect_server, prefect_env, prefect_cleanup, tmp_path, capsys):
    """(b) legacy live run first, then a Prefect shadow run: branch + shadow ledger, main untouched, fork recorded."""
    from cutover.core.state.models import shadow_forks
    from cutover.core.iceberg import SHADOW_BRANCH, Catalog

    files = write_csv_files(tmp_path / "src", 3)
    ws = _workspace()
    iid = "pf-shadow"
    prefect_cleanup(iid)
    ing = add_ingestion(ws, iid, tmp_path / "src")

    # before the legacy side ever ran there is nothing to fork
    code, _out, err = _cli(capsys, "prefect", "deploy", iid, "--mode", "shadow")
    assert code == 2 and "run the legacy side first" in err

    legacy = ws.service.run(ing)
    assert legacy.status == "SUCCESS"
    tbl = ws.catalog.load(ing.table)
    main_head = Catalog.head(tbl)

    code, out, err = _cli(capsys, "prefect", "deploy", iid, "--mode", "shadow")
    assert code == 0, err
    with ws.state_engine.connect() as conn:
        forks = conn.execute(select(shadow_forks).where(shadow_forks.c.ingestion_id == iid)).all()
    assert [(f.table_name, f.branch, f.fork_snapshot_id) for f in forks] == [(ing.table, SHADOW_BRANCH, main_head)]

    with _adapter(ws, prefect_server, "shadow") as ad:
        flow_run_id = ad.trigger(iid)
    fr = wait_flow_run(prefect_server, flow_run_id)
    assert fr.state.type.value == "COMPLETED", fr.state

    rec = _prefect_record(ws, iid, flow_run_id)
    assert (rec.mode, rec.status, rec.files_processed) == ("shadow", "SUCCESS", 3)
    shadow_rows = ledger_rows(ws.autoloader_engine, iid, "shadow")
    assert sorted(r.path for r in shadow_rows) == sorted(files) and {r.status for r in shadow_rows} == {"SUCCESS"}
    live_rows = ledger_rows(ws.autoloader_engine, iid, "live")
    assert {r.run_id for r in live_rows} == {legacy.run_id}  # live ledger: only the legacy run

    tbl = ws.catalog.load(ing.table)
    assert Catalog.head(tbl) == main_head  # main untouched
    branch_snaps = [s for s in Catalog.ancestry(tbl, SHADOW_BRANCH, stop_at=main_head)]
    assert len(branch_snaps) == 1  # the 3 files in one batch commit
    assert {(s.properties["cutover.orchestrator"], s.properties["cutover.mode"]) for s in branch_snaps} == {
        ("prefect", "shadow")}
    assert sum(s.added_records for s in branch_snaps) == sum(files.values())

    # deploying again keeps the fork (idempotent), and says unchanged
    code, out, _ = _cli(capsys, "prefect", "deploy", iid, "--mode", "shadow")
    assert code == 0 and f"unchanged: {iid}" in out
    with ws.state_engine.connect() as conn:
        assert conn.execute(select(shadow_forks.c.fork_snapshot_id)
                            .where(shadow_forks.c.ingestion_id == iid)).scalar_one() == main_head


def test_scheduled_runs_are_created(prefect_server, prefect_env, prefect_cleanup, tmp_path):
    """(c) the server's scheduler really creates Scheduled runs for a deployed schedule (in its timezone)."""
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    write_csv_files(tmp_path / "src", 1)
    ws = _workspace()
    iid = "pf-sched"
    prefect_cleanup(iid)
    ing = add_ingestion(ws, iid, tmp_path / "src", schedule={"frequency": "daily", "at": "02:30"},
                        timezone="Europe/Berlin", size_class="large")
    with _adapter(ws, prefect_server, "live", paused_on_create=False) as ad:
        assert ad.ensure_job(ing) == "created"
        job = [j for j in ad.list_jobs() if j.ingestion_id == iid][0]
    assert job.schedule and "Europe/Berlin" in job.schedule and not job.paused

    with prefect_server.client() as c:
        dep = c.read_deployment(job.job_id)
        assert dep.work_queue_name == "high-memory" and dep.work_pool_name == prefect_server.work_pool
        deadline = time.monotonic() + 30
        runs = []
        while time.monotonic() < deadline and not runs:
            runs = c.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))), limit=10,
                sort=FlowRunSort.EXPECTED_START_TIME_ASC)
            if not runs:
                time.sleep(1)
    assert runs, "the Prefect scheduler created no scheduled run within 30 s (see FACTS: SQLAlchemy 2.1)"
    now = datetime.now(timezone.utc)
    for fr in runs:
        local = fr.expected_start_time.astimezone(ZoneInfo("Europe/Berlin"))
        assert (local.hour, local.minute) == (2, 30), local
        assert now < fr.expected_start_time < now + timedelta(days=101)
        assert fr.parameters == {"ingestion_id": iid, "mode": "live", "trigger": "scheduled"}


def test_deploy_idempotent_and_paused_stays_paused(prefect_server, prefect_env, prefect_cleanup, tmp_path, capsys):
    """(d) second deploy: unchanged; a paused deployment stays paused through updates and re-deploys."""
    write_csv_files(tmp_path / "src", 1)
    ws = _workspace()
    iid = "pf-idem"
    prefect_cleanup(iid)
    add_ingestion(ws, iid, tmp_path / "src", schedule={"frequency": "hourly", "at": ":15"})

    code, out, err = _cli(capsys, "prefect", "deploy", iid, "--mode", "live", "--active")
    assert code == 0 and f"create: {iid}" in out, err
    before = ws.ingestions.get(iid)
    raw_before = _raw_ingestion(ws, iid)
    with prefect_server.client() as c:
        dep0 = c.read_deployment(before.prefect_deployment_id)
    code, out, _ = _cli(capsys, "prefect", "deploy", iid, "--mode", "live")
    assert code == 0 and f"unchanged: {iid}" in out and "0 to create, 0 to update, 1 unchanged" in out
    with prefect_server.client() as c:
        dep1 = c.read_deployment(before.prefect_deployment_id)
    assert dep1.updated == dep0.updated  # nothing was written
    assert _raw_ingestion(ws, iid) == raw_before  # ids not rewritten either

    with _adapter(ws, prefect_server, "live") as ad:
        assert ad.pause(iid) is True
        assert ad.pause(iid) is False  # idempotent
        # a changed definition (schedule + queue) is an update ... that keeps the pause
        ing = add_ingestion(ws, iid, tmp_path / "src", schedule={"frequency": "daily", "at": "04:00"},
                            priority="high")
        assert ad.ensure_job(ing) == "updated"
        assert ad.is_paused(iid) is True
        assert ad.ensure_job(ing) == "unchanged"
        jobs = [j for j in ad.list_jobs() if j.ingestion_id == iid]
        assert len(jobs) == 1 and jobs[0].paused and "0 4 * * *" in (jobs[0].schedule or "")
    code, out, _ = _cli(capsys, "prefect", "deploy", iid, "--mode", "live", "--active")
    assert code == 0 and f"unchanged: {iid}" in out
    with prefect_server.client() as c:
        dep = c.read_deployment(before.prefect_deployment_id)
    assert dep.paused and dep.work_queue_name == "priority"
    with _adapter(ws, prefect_server, "live") as ad:
        assert ad.resume(iid) is True and ad.resume(iid) is False
        assert ad.is_paused(iid) is False
        assert ad.cancel_running(iid) >= 0
        assert ad.remove_job(iid) is True and ad.remove_job(iid) is False
    assert ws.ingestions.get(iid).prefect_deployment_id is None


def _raw_ingestion(ws, iid):
    from cutover.core.records.tables import ingestions as t

    with ws.autoloader_engine.connect() as conn:
        return tuple(conn.execute(select(t).where(t.c.id == iid)).one())


def test_dry_run_changes_nothing(prefect_server, prefect_env, prefect_cleanup, tmp_path, capsys):
    """(e) --dry-run: no deployment created or updated, no ingestion row touched, no fork."""
    from cutover.core.state.models import shadow_forks
    from cutover.core.iceberg import SHADOW_BRANCH

    write_csv_files(tmp_path / "src", 1)
    ws = _workspace()
    for iid in ("pf-dry-a", "pf-dry-b"):
        prefect_cleanup(iid)
        add_ingestion(ws, iid, tmp_path / "src", table="raw.pf_dry")
    ws.service.run(ws.ingestions.get("pf-dry-a"))
    code, _, err = _cli(capsys, "prefect", "deploy", "pf-dry-a", "--mode", "live")
    assert code == 0, err
    add_ingestion(ws, "pf-dry-a", tmp_path / "src", table="raw.pf_dry", size_class="large")  # now an update

    from prefect.client.schemas.sorting import DeploymentSort

    def snapshot():
        with prefect_server.client() as c:  # (the sync client needs an explicit sort)
            deps = sorted((str(d.id), d.updated.isoformat(), d.work_queue_name, d.paused)
                          for d in c.read_deployments(limit=200, sort=DeploymentSort.NAME_ASC))
        return deps, [_raw_ingestion(ws, i) for i in ("pf-dry-a", "pf-dry-b")]

    before = snapshot()
    for mode in ("live", "shadow"):
        code, out, err = _cli(capsys, "prefect", "deploy", "--all", "--mode", mode, "--dry-run")
        assert code == 0, err
        assert "would update: pf-dry-a" in out or mode == "shadow"
        assert "would create: pf-dry-b" in out
    assert snapshot() == before
    with ws.state_engine.connect() as conn:
        assert conn.execute(select(shadow_forks)).all() == []
    assert SHADOW_BRANCH not in ws.catalog.load("raw.pf_dry").metadata.refs


def test_adapter_health_and_unreachable(prefect_server, prefect_env):
    from cutover.protocol import OrchestratorError
    from flows.adapter import PrefectAdapter

    ws = _workspace()
    ad = PrefectAdapter(ws, prefect_server.url)
    assert ad.health().ok
    dead = PrefectAdapter(ws, "http://127.0.0.1:9/api", mode="live")
    h = dead.health()
    assert not h.ok and "unreachable" in h.detail
    t0 = time.monotonic()
    with pytest.raises(OrchestratorError, match="unreachable"):
        dead.list_jobs()
    assert time.monotonic() - t0 < 10


def test_cancel_running_cancels_the_flow_run_and_closes_the_record(prefect_server, prefect_env, prefect_cleanup,
                                                                   tmp_path):
    """cancel_running: the worker kills the flow run; the run record is closed CANCELLED, no claim is left."""
    write_csv_files(tmp_path / "src", 400)
    home = Path(os.environ["CUTOVER_HOME"])  # the deployment's workspace: batches of 10, cancelled between two
    home.mkdir(parents=True, exist_ok=True)
    (home / "cutover.toml").write_text("[ingest]\nbatch_files = 10\n")
    ws = _workspace()
    iid = "pf-cancel"
    prefect_cleanup(iid)
    # each batch commit sleeps 1 s in the flow run (40 batches): the cancel lands mid-run even on a
    # loaded machine where the worker notices it late (it passed SUCCESS once when all 400 went by)
    add_ingestion(ws, iid, tmp_path / "src", deploy={"env": {"CUTOVER_TEST_SLOW_AT": "after-commit:1"}})
    with _adapter(ws, prefect_server, "live", paused_on_create=False) as ad:
        ad.ensure_job(ws.ingestions.get(iid))
        flow_run_id = ad.trigger(iid)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until it is really working on files
            if any(r.status == "SUCCESS" for r in ledger_rows(ws.autoloader_engine, iid, "live")):
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the flow run never processed a file")
        assert ad.cancel_running(iid) == 1
    fr = wait_flow_run(prefect_server, flow_run_id, timeout=60)
    assert fr.state.type.value == "CANCELLED", fr.state
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        rec = _prefect_record(ws, iid, flow_run_id)
        if rec.status != "RUNNING":
            break
        time.sleep(0.2)
    assert rec.status == "CANCELLED", rec
    rows = ledger_rows(ws.autoloader_engine, iid, "live")
    assert 0 < len(rows) < 400 and {r.status for r in rows} == {"SUCCESS"}, {r.status for r in rows}
    assert rec.files_processed == len(rows)


def test_cli_status_and_down_without_a_local_server(prefect_server, prefect_env, capsys, monkeypatch):
    code, out, _ = _cli(capsys, "prefect", "status")
    assert code == 0 and "mode:    external" in out and "health:  ok" in out
    monkeypatch.delenv("PREFECT_API_URL")
    code, out, _ = _cli(capsys, "prefect", "status", "--json")
    assert code == 1 and '"healthy": false' in out  # nothing started by asking
    for _ in range(2):  # idempotent
        code, out, _ = _cli(capsys, "prefect", "down")
        assert code == 0 and "server: not running" in out
