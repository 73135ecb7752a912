"""The processed-file ledger (cutover/core/records/ledger.py): claims, completion, fencing, diff.

Unit tests run against SQLite (the embedded default) and, for the same
semantics with ``INSERT .. ON CONFLICT`` / ``FOR UPDATE SKIP LOCKED``, against
PostgreSQL. Time is never waited for: a claim is made stale by moving its
``claimed_at`` into the past.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from cutover.core import db as dbm
from cutover.core.workspace import Workspace
from cutover.core.records import ledger as L
from cutover.core.autoloader.discovery import DiscoveredFile
from cutover.core.records.tables import processed_files as t_pf
from cutover.core.records.runs import RunStore
from tests.helpers import add_ingestion, csv_text, ledger_rows, write_csv_files

TIMEOUT = 60.0


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request, workspace_env, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'autoloader.db'}"
    else:
        url = request.getfixturevalue("pg_url_factory")("ledger")
    dbm.upgrade(url, "autoloader")
    return dbm.get_engine(url)


@pytest.fixture
def runs(engine):
    return RunStore(engine)


def _ledger(engine, ingestion="ing", namespace="live", timeout=TIMEOUT) -> L.Ledger:
    return L.Ledger(engine, ingestion, namespace, claim_timeout=timeout)


def _file(name="a.csv", size=10, etag="e1") -> DiscoveredFile:
    return DiscoveredFile(path=f"/src/{name}", size=size, etag=etag, mtime=1.0)


def _start(runs: RunStore, ingestion="ing") -> str:
    return runs.start(ingestion, orchestrator="legacy", mode="live", trigger="manual")


def _row(engine, claim_or_path, ingestion="ing", namespace="live"):
    path = claim_or_path.file.path if isinstance(claim_or_path, L.Claim) else claim_or_path
    with engine.connect() as conn:
        return conn.execute(select(t_pf).where(t_pf.c.ingestion_id == ingestion, t_pf.c.namespace == namespace,
                                               t_pf.c.path == path)).one()


def _age_claim(engine, path: str, seconds: float) -> None:
    with engine.begin() as conn:
        conn.execute(update(t_pf).where(t_pf.c.path == path)
                     .values(claimed_at=L.utcnow() - timedelta(seconds=seconds)))


# -- claim ------------------------------------------------------------------------------------


def test_claim_new_file(engine, runs):
    led, run = _ledger(engine), _start(runs)
    f = _file()
    c = led.claim(f, run)
    assert c is not None and c.previous_status is None and c.previous_run is None and c.run_id == run
    row = _row(engine, c)
    assert (row.status, row.claimed_by, row.run_id, row.attempts, row.size, row.etag) == (
        "PROCESSING", run, run, 1, 10, "e1")
    assert row.claimed_at is not None and row.processed_at is None
    assert led.holds(c)


def test_a_held_claim_cannot_be_claimed_again(engine, runs):
    led, a, b = _ledger(engine), _start(runs), _start(runs)
    f = _file()
    assert led.claim(f, a) is not None
    assert led.claim(f, b) is None
    assert led.claim(f, a) is None  # not even by its holder: one claim per file
    assert _row(engine, f.path).claimed_by == a


def test_complete_marks_success_and_counts_on_the_run(engine, runs):
    led, run = _ledger(engine), _start(runs)
    c = led.claim(_file(size=123), run)
    led.complete(c, records=7, bytes_read=123, snapshot_id=42)
    row = _row(engine, c)
    assert (row.status, row.records_ingested, row.bytes_read, row.snapshot_id, row.claimed_by, row.claimed_at) == (
        "SUCCESS", 7, 123, 42, None, None)
    assert row.processed_at is not None and row.run_id == run
    rec = runs.get(run)
    assert (rec.files_processed, rec.records_ingested, rec.bytes_read, rec.files_failed) == (1, 7, 123, 0)
    assert not led.holds(c)
    # completing twice is refused (no double count)
    with pytest.raises(L.ClaimLost):
        led.complete(c, records=7, bytes_read=123, snapshot_id=42)
    assert runs.get(run).files_processed == 1
    # a done file is never claimed again
    assert led.claim(_file(size=123), _start(runs)) is None


def test_complete_can_credit_another_run(engine, runs):
    """Recovery: the file was committed by a dead run; the ledger credits that run."""
    led, dead, live = _ledger(engine), _start(runs), _start(runs)
    c = led.claim(_file(), live)
    led.complete(c, records=3, bytes_read=10, snapshot_id=1, run_id_for_metrics=dead)
    assert _row(engine, c).run_id == dead
    assert runs.get(dead).files_processed == 1 and runs.get(live).files_processed == 0


def test_fail_marks_failed_with_reason(engine, runs):
    led, run = _ledger(engine), _start(runs)
    c = led.claim(_file(), run)
    led.fail(c, "cannot parse as csv: boom", bytes_read=10)
    row = _row(engine, c)
    assert (row.status, row.error, row.claimed_by, row.records_ingested) == ("FAILED", "cannot parse as csv: boom", None, 0)
    rec = runs.get(run)
    assert (rec.files_failed, rec.files_processed, rec.bytes_read) == (1, 0, 10)
    with pytest.raises(L.ClaimLost):
        led.fail(c, "again")


def test_failed_file_is_retried_only_when_size_or_etag_changed(engine, runs):
    led = _ledger(engine)
    f = _file(size=10, etag="e1")
    led.fail(led.claim(f, _start(runs)), "bad")

    assert led.diff([f]) == []
    assert led.claim(f, _start(runs)) is None  # unchanged: not retried

    for changed in (_file(size=11, etag="e1"), _file(size=10, etag="e2")):
        assert led.diff([changed]) == [changed]
    changed = _file(size=11, etag="e2")
    run = _start(runs)
    c = led.claim(changed, run)
    assert c is not None and c.previous_status == "FAILED"
    row = _row(engine, c)
    assert (row.status, row.attempts, row.error, row.size, row.etag, row.claimed_by) == (
        "PROCESSING", 2, None, 11, "e2", run)
    led.complete(c, records=1, bytes_read=11, snapshot_id=5)
    assert led.diff([changed]) == []


def test_release_gives_files_back(engine, runs):
    led, shadow = _ledger(engine), _ledger(engine, namespace="shadow")
    run, other = _start(runs), _start(runs)
    done = led.claim(_file("done.csv"), run)
    led.complete(done, records=1, bytes_read=1, snapshot_id=1)
    held = [led.claim(_file(f"h{i}.csv"), run) for i in range(3)]
    theirs = led.claim(_file("theirs.csv"), other)
    in_shadow = shadow.claim(_file("h0.csv"), run)
    assert all(held) and theirs and in_shadow

    assert led.release(run) == 3
    paths = {r.path: r.status for r in ledger_rows(engine, "ing")}
    assert paths == {"/src/done.csv": "SUCCESS", "/src/theirs.csv": "PROCESSING"}
    assert _row(engine, in_shadow, namespace="shadow").status == "PROCESSING"  # other namespace untouched
    # released files are new again: anyone may claim them
    assert led.diff([_file("h0.csv")]) == [_file("h0.csv")]
    assert led.claim(_file("h0.csv"), other).previous_status is None
    assert led.release(run) == 0


def test_heartbeat_refreshes_only_own_claims(engine, runs):
    led, run, other = _ledger(engine), _start(runs), _start(runs)
    mine = [led.claim(_file(f"m{i}.csv"), run) for i in range(2)]
    theirs = led.claim(_file("t.csv"), other)
    for c in (*mine, theirs):
        _age_claim(engine, c.file.path, 3600)
    assert led.heartbeat(run) == 2
    for c in mine:
        assert not led.is_stale(_row(engine, c).claimed_at)
    assert led.is_stale(_row(engine, theirs).claimed_at)
    # a finished claim is no longer held
    led.complete(mine[0], records=1, bytes_read=1, snapshot_id=1)
    assert led.heartbeat(run) == 1


def test_stale_claim_is_taken_over_and_the_dead_run_is_fenced(engine, runs):
    led, dead, live = _ledger(engine), _start(runs), _start(runs)
    f = _file()
    old = led.claim(f, dead)
    _age_claim(engine, f.path, TIMEOUT - 5)
    assert led.claim(f, live) is None  # not stale yet
    assert led.diff([f]) == [] and led.stale_claims() == []

    _age_claim(engine, f.path, TIMEOUT + 5)
    assert [e.path for e in led.stale_claims()] == [f.path]
    assert led.diff([f]) == [f]
    new = led.claim(f, live)
    assert new is not None and new.previous_status == "PROCESSING" and new.previous_run == dead
    row = _row(engine, new)
    assert (row.claimed_by, row.attempts) == (live, 2)
    assert led.holds(new) and not led.holds(old)

    # the dead run wakes up: it cannot mark the file, nor count it
    with pytest.raises(L.ClaimLost):
        led.complete(old, records=1, bytes_read=1, snapshot_id=1)
    with pytest.raises(L.ClaimLost):
        led.fail(old, "late")
    assert led.heartbeat(dead) == 0
    assert led.release(dead) == 0
    assert _row(engine, new).claimed_by == live
    led.complete(new, records=2, bytes_read=10, snapshot_id=9)
    assert runs.get(dead).files_processed == 0 and runs.get(live).files_processed == 1


def test_heartbeat_prevents_takeover(engine, runs):
    led, run, other = _ledger(engine), _start(runs), _start(runs)
    f = _file()
    led.claim(f, run)
    _age_claim(engine, f.path, TIMEOUT + 5)
    led.heartbeat(run)
    assert led.claim(f, other) is None and led.stale_claims() == []


def test_diff_semantics(engine, runs):
    led = _ledger(engine)
    files = {n: _file(f"{n}.csv") for n in ("new", "success", "skipped", "failed", "failed_changed",
                                            "processing", "stale")}
    run = _start(runs)
    led.complete(led.claim(files["success"], run), records=1, bytes_read=1, snapshot_id=1)
    for n in ("failed", "failed_changed"):
        led.fail(led.claim(files[n], run), "bad")
    led.claim(files["processing"], run)
    led.claim(files["stale"], run)
    led.claim(files["skipped"], run)
    with engine.begin() as conn:
        conn.execute(update(t_pf).where(t_pf.c.path == files["skipped"].path)
                     .values(status="SKIPPED", claimed_by=None, claimed_at=None))
    _age_claim(engine, files["stale"].path, TIMEOUT * 2)
    files["failed_changed"] = _file("failed_changed.csv", etag="e-new")

    todo = led.diff(sorted(files.values(), key=lambda f: f.path))  # discovery order is path order
    assert [f.path for f in todo] == sorted(f.path for f in (files["new"], files["failed_changed"], files["stale"]))
    assert led.counts() == {"SUCCESS": 1, "FAILED": 2, "PROCESSING": 2, "SKIPPED": 1}
    # a file gone from the source is no business of diff
    assert led.diff([]) == []


def test_ingestions_and_namespaces_are_separate_keys(engine, runs):
    run = _start(runs)
    f = _file()
    keys = [("ing", "live"), ("ing", "shadow"), ("other", "live")]
    for ing, ns in keys:
        c = _ledger(engine, ing, ns).claim(f, run)
        assert c is not None and c.previous_status is None
    for ing, ns in keys:
        assert _ledger(engine, ing, ns).counts() == {"PROCESSING": 1}
    with pytest.raises(ValueError):
        _ledger(engine, "ing", "prod")


def test_mark_vanished(engine, runs):
    led, dead = _ledger(engine), _start(runs)
    f = _file()
    led.claim(f, dead)
    _age_claim(engine, f.path, TIMEOUT * 2)
    [entry] = led.stale_claims()
    assert led.mark_vanished(entry)
    row = _row(engine, f.path)
    assert row.status == "FAILED" and "no longer in the source" in row.error and row.claimed_by is None
    assert not led.mark_vanished(entry)


def test_concurrent_claimers_get_each_file_once(engine, runs):
    """8 threads (own connections) race for the same 60 files: every file has exactly one winner."""
    files = [_file(f"f{i:03d}.csv") for i in range(60)]
    run_ids = [_start(runs) for _ in range(8)]
    wins: Counter = Counter()
    per_run: Counter = Counter()
    errors: list = []
    barrier = threading.Barrier(len(run_ids))

    def worker(run_id: str) -> None:
        led = _ledger(engine)
        try:
            barrier.wait()
            for f in files:
                c = led.claim(f, run_id)
                if c is not None:
                    wins[f.path] += 1
                    per_run[run_id] += 1
                    led.complete(c, records=1, bytes_read=1, snapshot_id=None)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(r,)) for r in run_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert wins == Counter({f.path: 1 for f in files})
    assert sum(runs.get(r).files_processed for r in run_ids) == len(files)
    assert _ledger(engine).counts() == {"SUCCESS": len(files)}


# -- through the service: a FAILED file is retried only after it changed -------------------------


def test_service_retries_failed_file_only_after_it_changed(workspace_env, tmp_path):
    src = tmp_path / "src"
    files = write_csv_files(src, 3)
    ws = Workspace()
    ing = add_ingestion(ws, "orders", src)
    first = ws.service.run(ing)
    assert (first.status, first.files_processed) == ("SUCCESS", 3)

    bad = src / "part-00009.csv"
    bad.write_text("id,name,amount,day\n1,a,not-a-number,2026-11-01\n")
    second = ws.service.run(ing)
    assert (second.status, second.files_processed, second.files_failed) == ("FAILED", 0, 1)
    [(path, reason)] = second.failures
    assert path == str(bad) and "amount" in reason and "string" in reason
    assert _row(ws.autoloader_engine, str(bad), "orders").status == "FAILED"

    third = ws.service.run(ing)  # unchanged: not retried
    assert (third.status, third.files_processed, third.files_failed, third.discovered) == ("SUCCESS", 0, 0, 4)

    bad.write_text(csv_text(9, 4))  # fixed: other size and mtime -> retried
    fourth = ws.service.run(ing)
    assert (fourth.status, fourth.files_processed, fourth.files_failed) == ("SUCCESS", 1, 0)
    row = _row(ws.autoloader_engine, str(bad), "orders")
    assert (row.status, row.attempts, row.error, row.records_ingested) == ("SUCCESS", 2, None, 4)
    assert ws.catalog.total_records(ing.table) == sum(files.values()) + 4
