"""Real ingestions through Spark Connect, end to end, into tables of the local Spark catalog.

One local Spark Connect server for the whole session (``SparkSession.builder.remote("local[2]")``,
~5-15 s to start), stopped at the end. The workspace is a temp ``CUTOVER_HOME`` with
``[ingest] engine = "spark"``, ``spark_remote = "local[2]"`` (the engine reuses the
server this fixture started) and ``spark_catalog = "spark_catalog"`` (local catalog
mode: no Iceberg runtime jar offline, so plain Parquet tables and no snapshots).
"""

from __future__ import annotations

import socket
import time
import warnings
from pathlib import Path

import pytest

from tests.helpers import add_ingestion, ledger_rows, run_rows, write_csv_files, write_jsonl, write_parquet

pytestmark = [pytest.mark.slow, pytest.mark.spark]


def _port_busy(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    import os

    from pyspark.sql import SparkSession

    import cutover.core.spark.engine as engine

    mp = pytest.MonkeyPatch()
    if _port_busy(15002):
        # someone else's Spark Connect server holds the default port: let pyspark's test
        # mode pick an ephemeral port for ours (and find it again when connecting)
        mp.setenv("SPARK_TESTING", "1")
    wh = tmp_path_factory.mktemp("spark-warehouse").resolve().as_uri()
    t0 = time.monotonic()
    builder = SparkSession.builder.remote("local[2]")
    for k, v in engine.local_conf(wh).items():
        builder = builder.config(k, v)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        session = builder.getOrCreate()
    print(f"local Spark Connect server up in {time.monotonic() - t0:.1f} s")
    try:
        yield session
    finally:
        session.stop()
        engine._sessions.clear()
        mp.undo()
        assert "SPARK_LOCAL_REMOTE" not in os.environ


@pytest.fixture
def spark_ws(spark, workspace_env, monkeypatch):
    monkeypatch.setenv("CUTOVER_INGEST_ENGINE", "spark")
    monkeypatch.setenv("CUTOVER_INGEST_SPARK_REMOTE", "local[2]")
    monkeypatch.setenv("CUTOVER_INGEST_SPARK_CATALOG", "spark_catalog")
    from cutover.core.workspace import Workspace

    ws = Workspace()
    assert ws.service.processor is not None and not ws.service.processor.iceberg
    return ws


def _count(spark, table: str) -> int:
    from cutover.core.spark import sql as S

    return int(S.count_rows("spark_catalog", table).run(spark).collect()[0]["n"])


def _assert_ingested(ws, ing, good: dict[str, int], bad: dict[str, str], res) -> None:
    rows = ledger_rows(ws.autoloader_engine, ing.id)
    by_path = {r.path: r for r in rows}
    assert len(rows) == len(by_path) == len(good) + len(bad), [r.path for r in rows]
    for path, n in good.items():
        r = by_path[path]
        assert (r.status, r.records_ingested, r.snapshot_id, r.claimed_by) == ("SUCCESS", n, None, None), r
    for path, reason in bad.items():
        r = by_path[path]
        assert r.status == "FAILED" and reason in (r.error or ""), (path, r.error)
    assert res.files_processed == len(good) and res.files_failed == len(bad)
    assert res.records_ingested == sum(good.values())
    assert res.bytes_read == sum(Path(p).stat().st_size for p in (*good, *bad))
    assert res.status == ("PARTIAL" if bad else "SUCCESS")
    assert sorted(f for f, _ in res.failures) == sorted(bad)
    (rec,) = run_rows(ws.autoloader_engine, ing.id)
    assert (rec.files_processed, rec.files_failed, rec.records_ingested) == (len(good), len(bad), sum(good.values()))


def test_ingestion_through_spark_connect_end_to_end(spark, spark_ws, tmp_path):
    ws = spark_ws
    t0 = time.monotonic()

    # CSV: three good files, then one whose amount column is text (does not fit the table)
    csv_dir = tmp_path / "csv"
    good_csv = write_csv_files(csv_dir, 3)
    bad_csv = csv_dir / "zz-bad.csv"
    bad_csv.write_text("id,name,amount,day\n9,x,not-a-number,2026-11-01\n")
    ragged_csv = csv_dir / "zz-ragged.csv"
    ragged_csv.write_text("id,name,amount,day\n1,a,1.5,2026-11-01\n2,b,2.5,2026-11-02,extra\n")
    ing_csv = add_ingestion(ws, "sp-csv", csv_dir, key_columns=["id"])

    # JSON lines: two good files, one malformed
    js_dir = tmp_path / "jsonl"
    good_js = {}
    for i in range(2):
        p = write_jsonl(js_dir / f"part-{i}.jsonl", [{"id": i * 10 + r, "kind": "k", "score": r / 2} for r in range(4 + i)])
        good_js[str(p.resolve())] = 4 + i
    bad_js = js_dir / "zz-broken.jsonl"
    bad_js.write_text('{"id": 1, "kind": "k", "score": 1.0}\n{"id": 2, oops\n')
    ing_js = add_ingestion(ws, "sp-jsonl", js_dir, fmt="jsonl")

    # Parquet: two good files, the second with columns in another order
    pq_dir = tmp_path / "parquet"
    p1 = write_parquet(pq_dir / "p-1.parquet", {"id": [1, 2, 3], "city": ["a", "b", "c"]})
    p2 = write_parquet(pq_dir / "p-2.parquet", {"city": ["d", "e"], "id": [4, 5]})
    good_pq = {str(p1.resolve()): 3, str(p2.resolve()): 2}
    ing_pq = add_ingestion(ws, "sp-parquet", pq_dir, fmt="parquet")

    res_csv = ws.service.run(ing_csv)
    res_js = ws.service.run(ing_js)
    res_pq = ws.service.run(ing_pq)
    first = time.monotonic() - t0

    _assert_ingested(ws, ing_csv, good_csv, {
        str(bad_csv.resolve()): "column 'amount' is string in the file, double in the table",
        str(ragged_csv.resolve()): "Cause: [MALFORMED_CSV_RECORD] Malformed CSV record: 2,b,2.5,2026-11-02,extra",
    }, res_csv)
    _assert_ingested(ws, ing_js, good_js, {str(bad_js.resolve()): "cannot parse as jsonl: [MALFORMED_RECORD_IN_PARSING"},
                     res_js)
    _assert_ingested(ws, ing_pq, good_pq, {}, res_pq)

    # the tables hold exactly the source rows (local catalog mode: counted by a scan)
    proc = ws.service.processor
    for ing, good in ((ing_csv, good_csv), (ing_js, good_js), (ing_pq, good_pq)):
        assert _count(spark, ing.table) == sum(good.values())
        assert proc.count(ing.table) == sum(good.values())
    assert sorted(r["id"] for r in spark.table("spark_catalog.raw.sp_parquet").collect()) == [1, 2, 3, 4, 5]
    schema = {f.name: f.dataType.simpleString() for f in spark.table("spark_catalog.raw.sp_csv").schema.fields}
    assert schema == {"id": "int", "name": "string", "amount": "double", "day": "date"}

    # a re-run processes nothing: every file is SUCCESS or an unchanged FAILED
    before = {r.path: (r.status, r.run_id) for r in ledger_rows(ws.autoloader_engine, ing_csv.id)}
    again = ws.service.run(ing_csv)
    assert (again.discovered, again.files_processed, again.files_failed, again.records_ingested) == (5, 0, 0, 0)
    assert again.status == "SUCCESS"
    assert {r.path: (r.status, r.run_id) for r in ledger_rows(ws.autoloader_engine, ing_csv.id)} == before
    assert _count(spark, ing_csv.table) == sum(good_csv.values())

    # a new file is picked up by the next run, alone
    more = write_csv_files(csv_dir, 1, start=7)
    third = ws.service.run(ing_csv)
    assert (third.files_processed, third.records_ingested) == (1, sum(more.values()))
    assert _count(spark, ing_csv.table) == sum(good_csv.values()) + sum(more.values())
    print(f"first runs of 3 ingestions (9 files): {first:.1f} s; whole test {time.monotonic() - t0:.1f} s")


def test_a_batch_of_files_is_one_write_with_one_data_file_per_source_file(spark, spark_ws, tmp_path):
    """12 CSV files + 2 bad ones, one run: the 12 land in ONE Spark write (one job id in every data
    file name), one data file each holding exactly that file's rows, recorded in the ledger with the
    batch id; the bad files fail alone, before the write."""
    import re

    ws = spark_ws
    src = tmp_path / "many"
    good = write_csv_files(src, 12)
    bad = src / "part-00005-bad.csv"
    bad.write_text("id,name,amount,day\n9,x,not-a-number,2026-11-01\n")
    ragged = src / "part-00008-ragged.csv"
    ragged.write_text("id,name,amount,day\n1,a,1.5,2026-11-01\n2,b,2.5,2026-11-02,extra\n")
    ing = add_ingestion(ws, "sp-batch", src, key_columns=["id"])
    res = ws.service.run(ing)
    _assert_ingested(ws, ing, good, {str(bad.resolve()): "column 'amount' is string in the file, double in the table",
                                     str(ragged.resolve()): "MALFORMED_CSV_RECORD"}, res)

    rows = {r.path: r for r in ledger_rows(ws.autoloader_engine, ing.id)}
    batches = {rows[p].batch_id for p in good}
    assert len(batches) == 1 and None not in batches  # one batch
    assert rows[str(bad.resolve())].batch_id is None and rows[str(ragged.resolve())].batch_id is None
    data_files = [f for p in good for f in rows[p].data_files]
    assert len(data_files) == len(set(data_files)) == len(good)  # one data file per source file
    table_files = spark.table("spark_catalog.raw.sp_batch").inputFiles()
    assert sorted(table_files) == sorted(data_files)
    jobs = {re.match(r"part-\d{5}-(.+?)-c\d+", f.rsplit("/", 1)[-1]).group(1) for f in table_files}
    assert len(jobs) == 1, jobs  # one Spark write
    for path, n in good.items():  # each data file holds exactly its source file's rows
        (f,) = rows[path].data_files
        assert spark.read.parquet(f).count() == n == rows[path].records_ingested
    assert _count(spark, ing.table) == sum(good.values())

    # the next run writes only the new files, as one more write
    more = write_csv_files(src, 3, start=20)
    again = ws.service.run(ing)
    assert (again.files_processed, again.files_failed, again.records_ingested) == (3, 0, sum(more.values()))
    assert len(spark.table("spark_catalog.raw.sp_batch").inputFiles()) == len(good) + 3
    assert len({r.batch_id for r in ledger_rows(ws.autoloader_engine, ing.id) if r.path in more}) == 1


def test_shadow_runs_need_an_iceberg_catalog(spark, spark_ws, tmp_path):
    ws = spark_ws
    files = write_csv_files(tmp_path / "src", 1)
    ing = add_ingestion(ws, "sp-shadow", tmp_path / "src")
    assert ws.service.run(ing).files_processed == 1
    res = ws.service.run(ing, orchestrator="prefect", mode="shadow")
    assert res.files_failed == 1
    (row,) = ledger_rows(ws.autoloader_engine, ing.id, "shadow")
    assert row.status == "FAILED" and "local Spark catalog (spark_catalog) has no branches" in row.error
    assert _count(spark, ing.table) == sum(files.values())  # main untouched by the shadow

    from checks import spark_checks

    proc = ws.service.processor
    res = spark_checks.check_counts(proc, ing.table, fork_snapshot_id=None, ingestion_id=ing.id)
    assert res.verdict == "error" and "keeps no snapshots" in res.error
    assert spark_checks.check_quality(proc, ing.table, key_columns=["id"]).verdict == "error"


def test_great_expectations_validates_a_spark_connect_dataframe(spark):
    """GE 1.24's Spark data source accepts a Spark Connect DataFrame; the SQL fallback agrees with it."""
    from checks import spark_checks

    sdf = spark.createDataFrame(
        [(1, "a", 1.0), (2, None, 2.0), (2, "b", 3.0), (None, "c", 4.0), (5, "d", 5.0), (5, "d", 6.0)],
        "id long, name string, amount double")
    columns = ["id", "name", "amount"]
    for keys in (["id"], ["id", "name"]):
        ge, how = spark_checks.outcomes(spark, "legacy", sdf, columns, keys, 6)
        assert how == "great_expectations"
        sq = spark_checks.sql_outcomes(spark, sdf, columns, keys, 6)
        assert set(ge) == set(sq), (sorted(ge), sorted(sq))
        for key in ge:
            assert ge[key]["success"] == sq[key]["success"], (key, ge[key], sq[key])
            if ge[key]["unexpected_count"] is not None:
                assert ge[key]["unexpected_count"] == sq[key]["unexpected_count"], (key, ge[key], sq[key])
    ge, _ = spark_checks.outcomes(spark, "shadow", sdf, columns, ["id"], 6)
    assert ge["expect_column_values_to_not_be_null(id)"]["unexpected_count"] == 1
    assert ge["expect_column_values_to_be_unique(id)"]["unexpected_count"] == 4
    assert ge["expect_table_row_count_to_equal"]["success"] is True
    assert ge["expect_table_columns_to_match_ordered_list"]["success"] is True
    bad, _ = spark_checks.outcomes(spark, "shadow", sdf.select("name", "id", "amount"), columns, ["id"], 7)
    assert not bad["expect_table_columns_to_match_ordered_list"]["success"]
    assert not bad["expect_table_row_count_to_equal"]["success"]


def _value_sides(tmp_path: Path):
    """Parquet files of two sides: equal, then the same with a value changed beyond its tolerance,
    one inside it, a row missing, a NULL moved to another column of the same row, a key twice."""
    from datetime import datetime, timedelta

    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 3000
    base = {"id": list(range(n)), "amount": [i * 1.25 for i in range(n)],
            "name": [f"c{i % 97}" if i % 13 else None for i in range(n)],
            "code": [None if i % 13 else f"k{i}" for i in range(n)],
            "ts": [datetime(2026, 11, 1) + timedelta(seconds=37 * i) for i in range(n)]}
    out = {}
    for side in ("legacy", "same", "shadow"):
        d = {k: list(v) for k, v in base.items()}
        if side == "shadow":
            d["amount"][10] += 0.5  # beyond abs 0.01
            d["amount"][20] += 0.004  # inside it
            d["name"][26], d["code"][26] = d["code"][26], d["name"][26]  # (None, k26) -> (k26, None)
            for k in d:
                del d[k][40]  # a row missing
            for k in d:
                d[k].append(d[k][50])  # key 51 twice (row 50 after the deletion)
        files = []
        for part in range(3):  # three data files per side
            t = pa.table({k: v[part::3] for k, v in d.items()})
            p = tmp_path / side / f"part-{part}.parquet"
            p.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(t, p)
            files.append(str(p))
        out[side] = files
    return out


def test_values_hashing_pass_on_spark_matches_duckdb(spark, tmp_path):
    """checks.spark_values: the bucket pass on the cluster, the drill-down of the differing buckets
    in DuckDB -- the same figures and findings as DuckDB alone; equal data drills into nothing."""
    from checks.spark_values import compare_on_spark
    from checks.values import compare
    from cutover.core.records.valuespec import ValueSpec

    sides = _value_sides(tmp_path)
    spec = ValueSpec.build(["id"], tolerances={"amount": {"abs": 0.01}})
    same = compare_on_spark(spark, sides["legacy"], sides["same"], spec)
    assert same.equal and same.buckets_differing == 0 and (same.rows_legacy, same.rows_shadow) == (3000, 3000)

    on_spark = compare_on_spark(spark, sides["legacy"], sides["shadow"], spec).as_dict()
    local = compare(sides["legacy"], sides["shadow"], spec).as_dict()
    for d in (on_spark, local):
        d.pop("seconds")
    assert on_spark["buckets_differing"] <= local["buckets_differing"] + 1  # the value inside tolerance may drill
    on_spark.pop("buckets_differing"), local.pop("buckets_differing")
    assert on_spark == local
    assert (local["differing_rows"], local["only_legacy"], local["duplicate_keys_shadow"]) == (2, 1, 1)
    assert set(local["columns"]) == {"amount", "name", "code"}

    # one side empty: every row of the other is on one side only
    empty = compare_on_spark(spark, sides["legacy"], [], spec)
    assert (empty.rows_legacy, empty.rows_shadow, empty.only_legacy) == (3000, 0, 3000)
