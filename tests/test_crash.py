"""Crash safety: a run SIGKILLed midway loses and duplicates nothing.

Files are committed in batches (``CUTOVER_INGEST_BATCH_FILES`` = 4 here). Crash points
(the service's test hook ``CUTOVER_TEST_CRASH_AT``):
- ``after-commit:N``: killed right after the Nth batch commit, before the ledger is
  marked: the batch is committed but its claims are still PROCESSING (staged);
- ``after-batch:N``: killed after the Nth batch is fully done;
- ``before-stage`` / ``after-stage``: data files written, intent not yet / already recorded;
- an external SIGKILL at whatever point the run has reached.

Then:
- a run started before the claim timeout passed leaves the dead run's claims
  alone (the file is not pending for it) and does not reap the dead run;
- a run started after the claim timeout (1 s, slept past) marks the dead run
  CRASHED, finishes the remaining files, and completes the committed-but-not-marked
  files from the batch's data files in the table's current state (recovered, not appended twice).
The end state is checked like the concurrency test: every file SUCCESS once in the
ledger, its data files in the table exactly once, no stray data file, runs' counts add up.
"""

from __future__ import annotations

import random
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
    batch_snapshots,
    finish,
    kill_group,
    ledger_rows,
    start_service_run,
    use_backend,
    write_csv_files,
)

N_FILES = 24
BATCH = 4
SHORT_TIMEOUT = 1.0
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _setup(tmp_path, request, monkeypatch, backend: str, n: int = N_FILES, pad: int = 0):
    overrides = use_backend(backend, request, monkeypatch)
    monkeypatch.setenv("CUTOVER_INGEST_BATCH_FILES", str(BATCH))
    overrides = {**overrides, "CUTOVER_INGEST_BATCH_FILES": str(BATCH)}
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
    k = 2
    dead = _crashed_run(ws, ing, cutover_env(workspace_env, CUTOVER_TEST_CRASH_AT=f"after-commit:{k}", **overrides))
    t_crash = time.monotonic()

    # state at the crash: k batch commits, k-1 batches marked, one committed-but-not-marked (staged) batch
    rows = ledger_rows(ws.autoloader_engine, ing.id)
    assert sorted(r.status for r in rows) == ["PROCESSING"] * BATCH + ["SUCCESS"] * (k - 1) * BATCH
    orphans = [r for r in rows if r.status == "PROCESSING"]
    assert {r.claimed_by for r in orphans} == {dead} and len({r.batch_id for r in orphans}) == 1
    assert all(r.data_files for r in orphans)
    snaps = batch_snapshots(ws.catalog, ing.table)
    assert len(snaps) == k and snaps[-1].properties["cutover.batch"] == orphans[0].batch_id
    assert snaps[-1].run_id == dead

    # a run started before the claim timeout passed leaves the dead run's claims alone
    early = _workspace(monkeypatch, "60s").service.run(ing)
    assert early.status == "SUCCESS", early.error
    assert early.files_processed == N_FILES - k * BATCH and early.files_recovered == 0
    for row in ledger_rows(ws.autoloader_engine, ing.id):
        if row.path in {o.path for o in orphans}:
            assert (row.status, row.claimed_by, row.attempts) == ("PROCESSING", dead, 1)
    assert ws.runs.get(dead).status == "RUNNING"

    # past the claim timeout: the dead run is CRASHED, its commit recovered, not re-appended
    _sleep_past(SHORT_TIMEOUT, t_crash)
    late = _workspace(monkeypatch, f"{SHORT_TIMEOUT}s").service.run(ing)
    assert late.status == "SUCCESS", late.error
    assert (late.files_recovered, late.files_processed, late.files_failed) == (BATCH, 0, 0)
    rec = ws.runs.get(dead)
    assert rec.status == "CRASHED" and "heartbeat" in rec.error and rec.ended_at is not None
    assert rec.files_processed == k * BATCH  # the recovered files are credited to the run that committed them
    for row in ledger_rows(ws.autoloader_engine, ing.id):
        if row.path in {o.path for o in orphans}:
            assert (row.status, row.run_id, row.snapshot_id, row.attempts) == ("SUCCESS", dead, snaps[-1].snapshot_id, 2)

    report = check_exactly_once(ws, ing, files)
    assert report["runs"] == 3

    # and nothing left to do
    again = ws.service.run(ing)
    assert (again.files_processed, again.files_recovered, again.files_skipped) == (0, 0, 0)


def test_crash_after_batch(workspace_env, tmp_path, monkeypatch, request):
    ws, ing, files, overrides = _setup(tmp_path, request, monkeypatch, "sqlite")
    k = 3
    dead = _crashed_run(ws, ing, cutover_env(workspace_env, CUTOVER_TEST_CRASH_AT=f"after-batch:{k}", **overrides))
    t_crash = time.monotonic()
    rows = ledger_rows(ws.autoloader_engine, ing.id)
    assert [r.status for r in rows] == ["SUCCESS"] * k * BATCH
    assert len(batch_snapshots(ws.catalog, ing.table)) == k

    # before the timeout the dead run is left RUNNING, and there is no claim to steal
    early_ws = _workspace(monkeypatch, "60s")
    assert early_ws.service.runs.reap_stale(ing.id, 60) == []

    _sleep_past(SHORT_TIMEOUT, t_crash)
    late = _workspace(monkeypatch, f"{SHORT_TIMEOUT}s").service.run(ing)
    assert late.status == "SUCCESS", late.error
    assert (late.files_processed, late.files_recovered) == (N_FILES - k * BATCH, 0)
    rec = ws.runs.get(dead)
    assert rec.status == "CRASHED" and rec.files_processed == k * BATCH
    check_exactly_once(ws, ing, files)


@pytest.mark.parametrize("point", ["before-stage", "after-stage"])
def test_crash_before_commit_reingests(point, workspace_env, tmp_path, monkeypatch, request):
    """Killed with the batch's data files written (and, after-stage, its intent recorded) but not
    committed: the taker finds none of them in the table and ingests the files again, once."""
    ws, ing, files, overrides = _setup(tmp_path, request, monkeypatch, "sqlite")
    dead = _crashed_run(ws, ing, cutover_env(workspace_env, CUTOVER_TEST_CRASH_AT=f"{point}:2", **overrides))
    t_crash = time.monotonic()
    rows = ledger_rows(ws.autoloader_engine, ing.id)
    held = [r for r in rows if r.status == "PROCESSING"]
    assert len(held) == BATCH and all(bool(r.batch_id) == (point == "after-stage") for r in held)
    _sleep_past(SHORT_TIMEOUT, t_crash)
    late = _workspace(monkeypatch, f"{SHORT_TIMEOUT}s").service.run(ing)
    assert late.status == "SUCCESS", late.error
    assert (late.files_processed, late.files_recovered) == (N_FILES - BATCH, 0)
    assert ws.runs.get(dead).status == "CRASHED"
    check_exactly_once(ws, ing, files)


def test_taker_killed_before_recovering_keeps_the_intent(workspace_env, tmp_path, monkeypatch, request):
    """A run dies after its commit; the run taking its claims over dies too, right after claiming;
    the third still finds the first run's batch (the intent stays on the rows until settled)."""
    ws, ing, files, overrides = _setup(tmp_path, request, monkeypatch, "sqlite")
    short = dict(overrides, CUTOVER_INGEST_CLAIM_TIMEOUT=f"{SHORT_TIMEOUT}s")
    _crashed_run(ws, ing, cutover_env(workspace_env, CUTOVER_TEST_CRASH_AT="after-commit:1", **short))
    staged = {r.path: r.batch_id for r in ledger_rows(ws.autoloader_engine, ing.id) if r.status == "PROCESSING"}
    assert len(staged) == BATCH and all(staged.values())
    _sleep_past(SHORT_TIMEOUT, time.monotonic())
    rc, _, err = finish(start_service_run(ing.id, cutover_env(workspace_env, CUTOVER_TEST_CRASH_AT="after-claim:1",
                                                              **short)))
    assert rc == -signal.SIGKILL, err[-2000:]
    rows = {r.path: r for r in ledger_rows(ws.autoloader_engine, ing.id) if r.path in staged}
    assert all(r.status == "PROCESSING" and r.attempts == 2 and r.batch_id == staged[p] for p, r in rows.items())
    _sleep_past(SHORT_TIMEOUT, time.monotonic())
    late = _workspace(monkeypatch, f"{SHORT_TIMEOUT}s").service.run(ing)
    assert late.status == "SUCCESS", late.error
    assert late.files_recovered == BATCH
    check_exactly_once(ws, ing, files)


@pytest.mark.slow
def test_random_kills_exactly_once(workspace_env, tmp_path, monkeypatch, request):
    """20 runs in a row, each SIGKILLed at a random point of a batch (a crash hook between two
    steps, or an external kill after a random delay, landing anywhere, mid-write or mid-commit);
    then one run to the end: every file exactly once, data files and ledger agree."""
    n = 400
    ws, ing, files, overrides = _setup(tmp_path, request, monkeypatch, "sqlite", n=n)
    rng = random.Random(14)
    points = ["after-claim", "before-stage", "after-stage", "after-commit", "after-batch"]
    killed = 0
    for i in range(20):
        env = dict(overrides, CUTOVER_INGEST_CLAIM_TIMEOUT=f"{SHORT_TIMEOUT}s")
        if i % 2 == 0:
            env["CUTOVER_TEST_CRASH_AT"] = f"{rng.choice(points)}:{rng.randint(1, 2)}"
            proc = start_service_run(ing.id, cutover_env(workspace_env, **env))
            rc, _, err = finish(proc, timeout=120)
        else:
            proc = start_service_run(ing.id, cutover_env(workspace_env, **env))
            runs_before = len(ws.runs.list(ingestion_id=ing.id))
            deadline = time.monotonic() + 60
            while len(ws.runs.list(ingestion_id=ing.id)) == runs_before and proc.poll() is None:
                assert time.monotonic() < deadline, "the run never started"
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.6))  # anywhere in its work: reading, writing, committing, marking
            kill_group(proc)
            rc, _, err = finish(proc, timeout=60)
        assert rc in (0, -signal.SIGKILL), f"run {i}: exit {rc}: {err[-2000:]}"
        killed += rc == -signal.SIGKILL
        _sleep_past(SHORT_TIMEOUT, time.monotonic())
    assert killed >= 10, f"only {killed} of 20 runs were killed"
    last = _workspace(monkeypatch, f"{SHORT_TIMEOUT}s").service.run(ing)
    assert last.status == "SUCCESS", last.error
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
