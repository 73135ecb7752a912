"""The backfill flow (flows/backfill.py): chunking, file dates, failure summary, resume, worker runs."""

from __future__ import annotations

import json
import os
import time
from datetime import date, datetime, timezone

import pytest

from tests.helpers import add_ingestion

# -- pure parts (no Prefect server) ------------------------------------------------------------


def test_chunk_ranges():
    from flows.backfill import chunk_ranges

    d = date.fromisoformat
    assert chunk_ranges(d("2026-11-01"), d("2026-11-03"), "daily") == [
        (d("2026-11-01"), d("2026-11-01")), (d("2026-11-02"), d("2026-11-02")), (d("2026-11-03"), d("2026-11-03"))]
    # weeks are Monday..Sunday, clipped to the range (2026-11-04 is a Wednesday)
    assert chunk_ranges(d("2026-11-04"), d("2026-11-20"), "weekly") == [
        (d("2026-11-04"), d("2026-11-08")), (d("2026-11-09"), d("2026-11-15")), (d("2026-11-16"), d("2026-11-20"))]
    assert chunk_ranges(d("2026-01-15"), d("2026-03-02"), "monthly") == [
        (d("2026-01-15"), d("2026-01-31")), (d("2026-02-01"), d("2026-02-28")), (d("2026-03-01"), d("2026-03-02"))]
    assert chunk_ranges(d("2026-12-30"), d("2027-01-01"), "monthly")[-1] == (d("2027-01-01"), d("2027-01-01"))
    from cutover.core.errors import InputError

    with pytest.raises(InputError, match="before it starts"):
        chunk_ranges(d("2026-11-02"), d("2026-11-01"), "daily")
    with pytest.raises(InputError, match="hourly"):
        chunk_ranges(d("2026-11-01"), d("2026-11-02"), "hourly")


def test_file_dates():
    from flows.backfill import file_date

    root = "/data/src/"
    assert file_date("/data/src/events-2026-11-01T10.csv", root, None, "UTC") == (date(2026, 11, 1), "name")
    assert file_date("/data/src/part_20261102.parquet", root, None, "UTC") == (date(2026, 11, 2), "name")
    assert file_date("/data/src/dt=2026-11-03/part-0.csv", root, None, "UTC") == (date(2026, 11, 3), "path")
    assert file_date("/data/src/2026/11/04/x.csv", root, None, "UTC") == (date(2026, 11, 4), "path")
    # no date in the name or below the root (the root's own digits do not count): the mtime, in the zone
    ts = datetime(2026, 11, 5, 23, 30, tzinfo=timezone.utc).timestamp()
    assert file_date("/srv/2020-01-01/src/part-00012345.csv", "/srv/2020-01-01/src/", ts, "UTC") == (
        date(2026, 11, 5), "mtime")
    assert file_date("/data/src/part-1.csv", root, ts, "Asia/Tokyo") == (date(2026, 11, 6), "mtime")
    assert file_date("/data/src/part-1.csv", root, None, "UTC") == (None, "none")


# -- the flow against the session Prefect server ----------------------------------------------

from tests.prefect_fixtures import prefect_env, prefect_server  # noqa: E402,F401
from tests.helpers import invoke_cli as _cli


def _events(src, day: int, hour: int, n: int, start: int) -> str:
    p = src / f"events-2026-11-{day:02d}T{hour:02d}.csv"
    p.write_text("event_id,customer,amount\n" + "".join(f"{i},c{i % 3},{i * 1.5}\n" for i in range(start, start + n)))
    return str(p)


@pytest.mark.slow
@pytest.mark.prefect
def test_backfill_chunks_failure_summary_and_resume(prefect_server, prefect_env, tmp_path, capsys):
    from cutover.core.workspace import Workspace
    from flows.backfill import Progress

    ws = Workspace()
    src = tmp_path / "src"
    src.mkdir()
    files, rows = {}, 0
    for day in range(1, 6):
        for hour in (3, 15):
            files[_events(src, day, hour, 4, day * 100 + hour)] = day
            rows += 4
    outside = _events(src, 9, 0, 4, 900)  # not in the range: never touched
    bad = src / "events-2026-11-03T20.csv"
    bad.write_bytes(b"\xff\xfe\x00garbage,,,\n\x00\x00")
    iid = "bf-events"
    add_ingestion(ws, iid, src, table="raw.bf_events", pattern="events-*.csv")

    code, out, err = _cli(capsys, "backfill", iid, "--start", "2026-11-01", "--end", "2026-11-05", "--dry-run")
    assert code == 0, err
    assert out.count("would run") == 5 and "2026-11-03..2026-11-03  3" in out
    assert not Progress(ws.settings, iid, "live").path.exists()
    assert ws.ledger(iid, "live").entries() == []

    t0 = time.monotonic()
    code, out, err = _cli(capsys, "backfill", iid, "--start", "2026-11-01", "--end", "2026-11-05", "--local")
    first_s = time.monotonic() - t0
    assert code == 3, out + err  # a chunk failed: partial failure
    assert "5 chunk(s): 4 done, 0 already done (skipped), 0 empty, 1 failed" in out
    assert "FAILED chunk 2026-11-03..2026-11-03" in out and str(bad) in out

    chunks = Progress(ws.settings, iid, "live").chunks()
    assert {k: v["status"] for k, v in chunks.items()} == {
        "2026-11-01..2026-11-01": "done", "2026-11-02..2026-11-02": "done", "2026-11-03..2026-11-03": "failed",
        "2026-11-04..2026-11-04": "done", "2026-11-05..2026-11-05": "done"}
    assert [f["file"] for f in chunks["2026-11-03..2026-11-03"]["failed_files"]] == [str(bad)]
    entries = {e.path: e for e in ws.ledger(iid, "live").entries()}
    assert outside not in entries
    assert {p for p, e in entries.items() if e.status == "SUCCESS"} == set(files)
    assert entries[str(bad)].status == "FAILED"
    runs = ws.runs.list(ingestion_id=iid)
    assert len(runs) == 5 and {(r.orchestrator, r.mode, r.trigger) for r in runs} == {("prefect", "live", "backfill")}
    assert all(r.external_id for r in runs)  # the flow run id
    assert sorted(r.status for r in runs) == ["PARTIAL"] + ["SUCCESS"] * 4

    # fix the file, run the same backfill again: only the failed chunk runs
    bad.write_text("event_id,customer,amount\n7001,c1,1.0\n7002,c2,2.0\n")
    code, out, err = _cli(capsys, "backfill", iid, "--start", "2026-11-01", "--end", "2026-11-05", "--local", "--json")
    assert code == 0, out + err
    summary = json.loads(out)
    assert (summary["done"], summary["skipped"], summary["failed"]) == (1, 4, 0)
    assert len(ws.runs.list(ingestion_id=iid)) == 6
    assert Progress(ws.settings, iid, "live").chunks()["2026-11-03..2026-11-03"]["status"] == "done"

    # exactly once in Iceberg: each file's data file in main once (batch commits), every row once
    from cutover.core.icebatch import live_data_files

    tbl = ws.catalog.load("raw.bf_events")
    present = live_data_files(tbl, "main")
    ledgered = [d for e in ws.ledger(iid, "live").entries() for d in (e.data_files or [])]
    assert sorted(ledgered) == sorted(present) and len(ledgered) == len([*files, str(bad)])
    assert tbl.scan().to_arrow().num_rows == rows + 2

    # a third run with a wider range: done chunks skipped, new empty days recorded, nothing re-ingested
    code, out, err = _cli(capsys, "backfill", iid, "--start", "2026-11-01", "--end", "2026-11-07", "--local")
    assert code == 0, out + err
    assert "7 chunk(s): 0 done, 5 already done (skipped), 2 empty, 0 failed" in out
    assert live_data_files(ws.catalog.load("raw.bf_events"), "main") == present  # nothing appended
    print(f"first backfill of 5 chunks took {first_s:.1f}s")


@pytest.mark.slow
@pytest.mark.prefect
def test_backfill_on_a_worker_through_the_deployment(prefect_server, prefect_env, tmp_path, capsys):
    from cutover.core.workspace import Workspace
    from flows.backfill import DEPLOYMENT_NAME, FLOW_NAME, TAG

    ws = Workspace()
    src = tmp_path / "src"
    src.mkdir()
    paths = [_events(src, day, 1, 3, day * 10) for day in (2, 3, 10)]
    old = src / "undated.csv"  # no date in the name: its mtime puts it in the first week
    old.write_text("event_id,customer,amount\n1,c1,1.0\n")
    ts = datetime(2026, 11, 4, 12, tzinfo=timezone.utc).timestamp()
    os.utime(old, (ts, ts))
    iid = "bf-worker"
    add_ingestion(ws, iid, src, table="raw.bf_worker", pattern="*.csv")
    code, out, err = _cli(capsys, "backfill", iid, "--start", "2026-11-02", "--end", "2026-11-15", "--chunk", "weekly",
                          "--timeout", "120s")
    assert code == 0, out + err
    assert "2 chunk(s): 2 done" in out
    entries = {e.path: e.status for e in ws.ledger(iid, "live").entries()}
    assert entries == {**{p: "SUCCESS" for p in paths}, str(old): "SUCCESS"}
    with prefect_server.client() as c:
        dep = c.read_deployment_by_name(f"{FLOW_NAME}/{DEPLOYMENT_NAME}")
        assert dep.tags == [TAG] and "cutover" not in dep.tags  # never listed as an ingestion deployment
    runs = ws.runs.list(ingestion_id=iid)
    assert len(runs) == 2 and {r.trigger for r in runs} == {"backfill"}
