"""cutover.sdk: a team's job made shadow-safe and parity-visible (issue #15, item 5).

Real ledger (SQLite) and real Iceberg (SQL catalog): the same job function runs live (no
CUTOVER_* variables, as its legacy scheduler runs it) and in shadow (the variables the Prefect
shadow flow sets); parity's ledger and counts checks then read it like a reference ingestion.
"""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.csv as pcsv
import pytest

from checks.counts import check_counts
from checks.ledger import check_ledger
from cutover import sdk
from cutover.core import jobenv
from cutover.core.errors import InputError
from cutover.core.iceberg import MAIN, SHADOW_BRANCH
from cutover.core.records import runs as R
from cutover.core.workspace import Workspace
from cutover.engine.baseline import seed_baseline
from tests.helpers import write_csv_files

JOB = "acme-orders"
TABLE = "acme.orders"


def load(src, ws):
    """What a team's job looks like with the sdk: files it has not seen, claimed, appended."""
    with sdk.Run(JOB, workspace=ws) as run:
        for f in run.files(str(src), "*.csv"):
            if run.claim(f):
                run.append(TABLE, pcsv.read_csv(f.path), file=f)
    return run.summary


def shadow_env(monkeypatch, home):
    for k, v in jobenv.env_for("shadow", job_id=JOB, output_prefix=str(home / "shadow-out"),
                               orchestrator="prefect").items():
        monkeypatch.setenv(k, v)


def test_live_then_shadow_gives_ledger_and_count_parity(workspace_env, tmp_path, monkeypatch):
    src = tmp_path / "src"
    files = write_csv_files(src, 3)
    ws = Workspace()
    live = load(src, ws)
    assert (live.processed, live.records, live.mode) == (3, sum(files.values()), "live")
    rec = ws.runs.get(live.run_id)
    assert (rec.orchestrator, rec.mode, rec.status, rec.files_processed) == ("legacy", "live", R.SUCCESS, 3)
    again = load(src, ws)  # the ledger is the fence: nothing twice
    assert again.processed == 0 and ws.catalog.total_records(TABLE) == sum(files.values())

    # the shadow: fork the branch at main's head (what `cutover shadow start` does for the job's table)
    tbl = ws.catalog.load(TABLE)
    fork = ws.catalog.head(tbl, MAIN)
    ws.catalog.create_branch(TABLE, SHADOW_BRANCH, fork)
    new = write_csv_files(src, 2, start=3)
    live2 = load(src, ws)  # legacy live run of the new files
    assert live2.processed == 2
    main_before = ws.catalog.head(ws.catalog.load(TABLE), MAIN)

    seed_baseline(ws, SimpleNamespace(id=JOB, table=TABLE), fork)  # what `shadow start` seeds
    shadow_env(monkeypatch, workspace_env)
    assert (sdk.mode(), sdk.branch(), sdk.ledger_namespace()) == ("shadow", SHADOW_BRANCH, "shadow")
    sh = load(src, ws)
    assert (sh.processed, sh.records, sh.mode) == (2, sum(new.values()), "shadow")
    tbl = ws.catalog.load(TABLE)
    assert ws.catalog.head(tbl, MAIN) == main_before, "a shadow run wrote main"
    snap = tbl.metadata.snapshot_by_id(ws.catalog.head(tbl, SHADOW_BRANCH))
    props = snap.summary.additional_properties
    assert props["cutover.run-id"] == sh.run_id and props["cutover.orchestrator"] == "prefect"
    assert props["cutover.mode"] == "shadow" and props["cutover.batch"]
    assert ws.runs.get(sh.run_id).orchestrator == "prefect"

    counts = check_counts(tbl, fork_snapshot_id=fork, ingestion_id=JOB, live=ws.ledger(JOB, "live").entries(),
                          shadow=ws.ledger(JOB, "shadow").entries())
    assert counts.verdict == "pass", counts.findings
    assert counts.metrics["main_added_records"] == counts.metrics["shadow_added_records"] == sum(new.values())
    ledger = check_ledger(ws.autoloader_engine, JOB, since=None, until=datetime.now(timezone.utc))
    assert ledger.verdict == "pass", ledger.findings

    # a divergence is seen: a file only the live side processed
    write_csv_files(src, 1, start=9)
    monkeypatch.delenv(jobenv.MODE)
    for k in (jobenv.BRANCH, jobenv.NAMESPACE, jobenv.OUTPUT_PREFIX, jobenv.ORCHESTRATOR, jobenv.JOB_ID):
        monkeypatch.delenv(k)
    assert load(src, ws).processed == 1
    tbl = ws.catalog.load(TABLE)
    counts = check_counts(tbl, fork_snapshot_id=fork, ingestion_id=JOB, live=ws.ledger(JOB, "live").entries(),
                          shadow=ws.ledger(JOB, "shadow").entries())
    assert counts.verdict == "fail"
    assert check_ledger(ws.autoloader_engine, JOB, since=None, until=datetime.now(timezone.utc)).verdict == "fail"


def test_shadow_never_writes_production(workspace_env, tmp_path, monkeypatch):
    src = tmp_path / "src"
    write_csv_files(src, 2)
    ws = Workspace()
    shadow_env(monkeypatch, workspace_env)
    with pytest.raises(InputError, match="never creates it"):  # no table yet: shadow never creates one
        load(src, ws)
    assert not ws.catalog.table_exists(TABLE)
    assert ws.ledger(JOB, "shadow").entries() == [] and ws.ledger(JOB, "live").entries() == []
    monkeypatch.setenv(jobenv.BRANCH, MAIN)  # contradictory variables are refused before anything is opened
    with pytest.raises(InputError, match="never writes production"):
        sdk.Run(JOB, workspace=ws)
    monkeypatch.setenv(jobenv.BRANCH, SHADOW_BRANCH)
    assert sdk.output_path("/srv/reports/x.csv") == workspace_env / "shadow-out" / "srv/reports/x.csv"


def test_a_failing_job_gives_its_claims_back(workspace_env, tmp_path):
    src = tmp_path / "src"
    write_csv_files(src, 2)
    ws = Workspace()
    with pytest.raises(RuntimeError):
        with sdk.Run(JOB, workspace=ws) as run:
            for f in run.files(str(src), "*.csv"):
                assert run.claim(f)
                run.append(TABLE, pcsv.read_csv(f.path), file=f)
            raise RuntimeError("upstream API down")
    assert ws.ledger(JOB, "live").entries() == []  # nothing staged: the files are new again
    assert ws.runs.get(run.run_id).status == R.FAILED
    assert not ws.catalog.table_exists(TABLE)
    assert load(src, ws).processed == 2


def test_bad_rows_fail_one_file_only(workspace_env, tmp_path):
    src = tmp_path / "src"
    files = write_csv_files(src, 2)
    ws = Workspace()
    assert load(src, ws).processed == 2
    bad = src / "part-99999.csv"
    bad.write_text("id,extra\n1,x\n")
    good = write_csv_files(src, 1, start=5)
    s = load(src, ws)
    assert (s.processed, s.failed) == (1, 1)
    entry = next(e for e in ws.ledger(JOB, "live").entries() if e.path == str(bad))
    assert entry.status == "FAILED" and "extra" in entry.error
    assert ws.catalog.total_records(TABLE) == sum(files.values()) + sum(good.values())
    assert ws.runs.get(s.run_id).status == R.PARTIAL
    with pytest.raises(InputError, match="not claimed"):
        sdk.Run(JOB, workspace=ws).append(TABLE, pa.table({"id": [1]}), file=bad)


def test_a_legacy_run_record_is_attached_not_doubled(workspace_env, tmp_path, monkeypatch):
    """Under APScheduler's run listener (same process) or `cutover cron exec` (the parent process)
    the job's files count on that run's record; no second legacy record is opened."""
    import threading
    import time

    from cutover.core.records.jobruns import JobRunStore

    src = tmp_path / "src"
    write_csv_files(src, 2)
    ws = Workspace()
    store = JobRunStore(ws.autoloader_engine)
    monkeypatch.setenv(jobenv.RECORDER, "apscheduler")
    # the listener hears of the submission a moment after the job started
    threading.Timer(0.3, lambda: store.start(JOB, trigger="scheduled", run_id="listener-run")).start()
    t0 = time.monotonic()
    s = load(src, ws)
    assert s.run_id == "listener-run" and time.monotonic() - t0 < 5
    recs = ws.runs.list(ingestion_id=JOB)
    assert [r.id for r in recs] == ["listener-run"]
    assert (recs[0].files_processed, recs[0].status) == (2, R.RUNNING)  # the listener closes it
