"""Crash safety: a run SIGKILLed midway loses and duplicates nothing.

Crash points (the service's test hook ``CUTOVER_TEST_CRASH_AT``):
- ``after-commit:N``: killed right after the Nth Iceberg commit, before the
  ledger is marked: the file is committed but its claim is still PROCESSING;
- ``after-file:N``: killed after the Nth file is fully done;
- an external SIGKILL at whatever point the run has reached.

Then:
- a run started before the claim timeout passed leaves the dead run's claims
  alone (the file is not pending for it) and does not reap the dead run;
- a run started after the claim timeout (1 s, slept past) marks the dead run
  CRASHED, finishes the remaining files, and completes the committed-but-not-marked
  file from its snapshot (recovered, not appended twice).
The end state is checked like the concurrency test: every file SUCCESS once in the
ledger, one snapshot per file, total-records == the source's rows, runs' counts add up.
"""

from __future__ import annotations

import signal
import time

import pytest
from sqlalchemy import func, select

from cutover.core.config import load_settings
from cutover.core.workspace import Workspace
from cutover.core.records.tables import processed_files as t_pf
from tests.helpers import (
    add_ingestion,
    check_exactly_once,
    cutover_env,
    file_snapshots,
    finish,
    kill_group,
    ledger_rows,
    start_service_run,
    use_backend,
    write_csv_files,
)

N_FILES = 24
SHORT_TIMEOUT = 1.0
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _setup(tmp_path, request, monkeypatch, backend: str, n: int = N_FILES, pad: int = 0):
    overrides = use_backend(backend, request, monkeypatch)
    files = write_csv_files(tmp_path / "src", n, pad=pad)
    ws = Workspace()
    ing = add_ingestion(ws, "orders", tmp_path / "src", table="raw.orders")
    return ws, ing, files, overrides


def _workspace(monkeypatch, claim_timeout: str) -> Workspace:
    """A workspace in this process whose runs use ``claim_timeout``."""
    monkeypatch.setenv("CUTOVER_INGEST_CLAIM_TIMEOUT", claim_timeout)
    return Workspace(load_settings())


def _crashed_run(ws, ing, env) -> str:
    """Run in a subprocess that must die by SIGKILL; returns its run id (the only RUNNING run)."""
    rc, out, err = finish(start_service_run(ing.id, env), timeout=120)
    assert rc == -signal.SIGKILL, f"the run was expected to be killed, exit {rc}: {err[-2000:]}"
    running = [r for r in ws.runs.list(ingestion_id=ing.id) if r.status == "RUNNING"]
    assert len(running) == 1, running
    return running[0].id


def _sleep_past(seconds: float, since: float) -> None:
    left = since + seconds + 0.3 - time.monotonic()
    if left > 0:
        time.sleep(left)


@pytest.mark.parametrize("backend", BACKENDS)
def test_crash_after_commit_before_ledger_mark(backend, workspace_env, tmp_path, monkeypatch, request):
    ws, ing, files, overrides = _setup(tmp_path, request, monkeypatch, backend)
    k = 5
    dead = _crashed_run(ws, ing, cutover_env(workspace_env, CUTOVER_TEST_CRASH_AT=f"after-commit:{k}", **overrides))
    t_crash = time.monotonic()

    # state at the crash: k commits, k-1 marked, one committed-but-not-marked claim
    rows = ledger_rows(ws.autoloader_engine, ing.id)
    assert sorted(r.status for r in rows) == ["PROCESSING"] + ["SUCCESS"] * (k - 1)
    [orphan] = [r for r in rows if r.status == "PROCESSING"]
    assert orphan.claimed_by == dead
    snaps = file_snapshots(ws.catalog, ing.table)
    assert len(snaps) == k and snaps[-1].file == orphan.path and snaps[-1].run_id == dead

    # a run started before the claim timeout passed leaves the dead run's claim alone
    early = _workspace(monkeypatch, "60s").service.run(ing)
    assert early.status == "SUCCESS", early.error
    assert early.files_processed == N_FILES - k and early.files_recovered == 0
    assert early.files_processed + early.files_skipped == N_FILES - k  # the claimed file: skipped or not pending
    row = [r for r in ledger_rows(ws.autoloader_engine, ing.id) if r.path == orphan.path][0]
    assert (row.status, row.claimed_by, row.attempts) == ("PROCESSING", dead, 1)
    assert ws.runs.get(dead).status == "RUNNING"
    assert len(file_snapshots(ws.catalog, ing.table)) == N_FILES  # the orphan was not appended again

    # past the claim timeout: the dead run is CRASHED, its commit recovered, not re-appended
    _sleep_past(SHORT_TIMEOUT, t_crash)
    late = _workspace(monkeypatch, f"{SHORT_TIMEOUT}s").service.run(ing)
    assert late.status == "SUCCESS", late.error
    assert (late.files_recovered, late.files_processed, late.files_failed) == (1, 0, 0)
    rec = ws.runs.get(dead)
    assert rec.status == "CRASHED" and "heartbeat" in rec.error and rec.ended_at is not None
    assert rec.files_processed == k  # the recovered file is credited to the run that committed it
    row = [r for r in ledger_rows(ws.autoloader_engine, ing.id) if r.path == orphan.path][0]
    assert (row.status, row.run_id, row.snapshot_id, row.attempts) == ("SUCCESS", dead, snaps[-1].snapshot_id, 2)

    report = check_exactly_once(ws, ing, files)
    assert report["runs"] == 3

    # and nothing left to do
    again = ws.service.run(ing)
    assert (again.files_processed, again.files_recovered, again.files_skipped) == (0, 0, 0)


def test_crash_after_file(workspace_env, tmp_path, monkeypatch, request):
    ws, ing, files, overrides = _setup(tmp_path, request, monkeypatch, "sqlite")
    k = 6
    dead = _crashed_run(ws, ing, cutover_env(workspace_env, CUTOVER_TEST_CRASH_AT=f"after-file:{k}", **overrides))
    t_crash = time.monotonic()
    rows = ledger_rows(ws.autoloader_engine, ing.id)
    assert [r.status for r in rows] == ["SUCCESS"] * k
    assert len(file_snapshots(ws.catalog, ing.table)) == k

    # before the timeout the dead run is left RUNNING, and there is no claim to steal
    early_ws = _workspace(monkeypatch, "60s")
    assert early_ws.service.runs.reap_stale(ing.id, 60) == []

    _sleep_past(SHORT_TIMEOUT, t_crash)
    late = _workspace(monkeypatch, f"{SHORT_TIMEOUT}s").service.run(ing)
    assert late.status == "SUCCESS", late.error
    assert (late.files_processed, late.files_recovered) == (N_FILES - k, 0)
    rec = ws.runs.get(dead)
    assert rec.status == "CRASHED" and rec.files_processed == k
    check_exactly_once(ws, ing, files)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_external_sigkill_midway(backend, workspace_env, tmp_path, monkeypatch, request):
    """SIGKILL from outside once some files are done: wherever it lands, nothing is lost or doubled."""
    n = 40
    ws, ing, files, overrides = _setup(tmp_path, request, monkeypatch, backend, n=n)
    proc = start_service_run(ing.id, cutover_env(workspace_env, **overrides))
    count = select(func.count()).select_from(t_pf).where(t_pf.c.ingestion_id == ing.id, t_pf.c.status == "SUCCESS")
    try:
        deadline = time.monotonic() + 120
        done = 0
        while done < 8:
            assert proc.poll() is None, f"the run ended before it could be killed: {proc.communicate()[1][-2000:]}"
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.02)
            with ws.autoloader_engine.connect() as conn:
                done = conn.execute(count).scalar()
        kill_group(proc)
        t_crash = time.monotonic()
    finally:
        if proc.poll() is None:
            kill_group(proc)
    assert proc.returncode == -signal.SIGKILL
    proc.communicate()
    [dead] = [r.id for r in ws.runs.list(ingestion_id=ing.id) if r.status == "RUNNING"]
    before = {r.path: r.status for r in ledger_rows(ws.autoloader_engine, ing.id)}
    assert before and set(before.values()) <= {"SUCCESS", "PROCESSING"}
    assert len(before) < n, "the kill came too late to prove anything"

    # a run started before the timeout does not touch the dead run's claim (if it had one)
    early = _workspace(monkeypatch, "60s").service.run(ing)
    assert early.status == "SUCCESS", early.error
    held = [p for p, s in before.items() if s == "PROCESSING"]
    for r in ledger_rows(ws.autoloader_engine, ing.id):
        if r.path in held:
            assert (r.status, r.claimed_by) == ("PROCESSING", dead)
    assert ws.runs.get(dead).status == "RUNNING"

    _sleep_past(SHORT_TIMEOUT, t_crash)
    late = _workspace(monkeypatch, f"{SHORT_TIMEOUT}s").service.run(ing)
    assert late.status == "SUCCESS", late.error
    assert late.files_processed + late.files_recovered == len(held)
    assert ws.runs.get(dead).status == "CRASHED"
    check_exactly_once(ws, ing, files)
