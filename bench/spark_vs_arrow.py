"""File processing: the arrow engine vs the Spark engine, on generated CSV, on this machine.

Both engines run the real ingestion path (``Workspace().service.run``: discover,
claim, read, fit, commit a batch of files at a time, complete the ledger):

- arrow: pyarrow reads each file, pyiceberg appends it to an Iceberg table
  (SQL catalog on SQLite, local warehouse) — the embedded default;
- spark: Spark Connect (``spark_remote = "local[N]"``, a server started in this
  process) reads each file (CSV header + inferSchema) and appends it to a Parquet
  table of the local Spark catalog (``spark_catalog = "spark_catalog"``; no Iceberg
  runtime jar offline, so no Iceberg commit on this side: slightly less work).

Two measurements per engine:

1. the bulk run: ``--size-mb`` of CSV in files of ``--file-mb`` (default 1024 MB in
   64 MB files), seconds, rows/s and MB/s;
2. the per-file overhead: ``--small-files`` files of ~``--small-kb`` each, seconds per file.

Spark's server start-up and a one-file warm-up (imports, JIT, first table) are
timed apart (paid once per process). The table ends with
the spark/arrow ratio, and the break-even reasoning uses the two measurements:
``t(engine) = files * per_file + size / throughput``.

    .venv/bin/python bench/spark_vs_arrow.py --size-mb 1024
    .venv/bin/python bench/spark_vs_arrow.py --size-mb 64 --file-mb 16 --small-files 5   # quick

Options: ``--size-mb`` (1024), ``--file-mb`` (64), ``--small-files`` (10), ``--small-kb`` (50),
``--spark-remote`` (``local[2]``), ``--spark-catalog`` (``spark_catalog``: local Parquet tables; an
Iceberg catalog name on a real cluster), ``--work-dir`` (default: a new temp dir; on a remote cluster
give a directory its executors can read), ``--keep`` (keep the generated files), ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ROW_BYTES_ESTIMATE = 52  # bytes per generated CSV row, for sizing


def generate(directory: Path, size_mb: float, file_mb: float, *, prefix: str = "part", seed: int = 0) -> tuple[int, int]:
    """CSV files id,name,amount,day,flag totalling ~size_mb; returns (rows, bytes)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    total_rows = total_bytes = 0
    n_files = max(1, round(size_mb / file_mb))
    rows_per_file = max(1, int(size_mb * 1024 * 1024 / n_files / ROW_BYTES_ESTIMATE))
    start = 0
    for i in range(n_files):
        ids = np.arange(start, start + rows_per_file, dtype=np.int64)
        start += rows_per_file
        name = pa.array(np.char.add("customer-", (ids % 100_003).astype(str)))
        amount = pa.array(np.round(rng.random(rows_per_file) * 10_000, 2))
        day = pa.array((np.datetime64("2026-01-01") + (ids % 365).astype("timedelta64[D]")))
        flag = pa.array((ids % 7 == 0))
        table = pa.table({"id": pa.array(ids), "name": name, "amount": amount, "day": day, "flag": flag})
        path = directory / f"{prefix}-{i:05d}.csv"
        pcsv.write_csv(table, path)
        total_rows += rows_per_file
        total_bytes += path.stat().st_size
    return total_rows, total_bytes


def _workspace(home: Path, engine: str, remote: str, catalog: str):
    import cutover.core.db

    for k in list(os.environ):
        if k.startswith("CUTOVER_"):
            del os.environ[k]
    os.environ["CUTOVER_HOME"] = str(home)
    os.environ["CUTOVER_INGEST_ENGINE"] = engine
    os.environ["CUTOVER_INGEST_SPARK_REMOTE"] = remote
    os.environ["CUTOVER_INGEST_SPARK_CATALOG"] = catalog
    cutover.core.db.dispose_engines()
    cutover.core.db.reset_schema_cache()
    from cutover.core.workspace import Workspace

    return Workspace()


def _ingestion(ws, iid: str, source: Path):
    from cutover.core.records.ingestions import validate

    ing = validate({"id": iid, "source_uri": str(source), "format": "csv", "table": f"bench.{iid.replace('-', '_')}",
                    "pattern": "*.csv"})
    ws.ingestions.upsert([ing], replace_existing=True)
    return ws.ingestions.get(iid)


def run_engine(engine: str, work: Path, big: Path, small: Path, warm: Path, remote: str, catalog: str) -> dict:
    ws = _workspace(work / f"home-{engine}", engine, remote, catalog)
    out: dict = {"engine": engine}
    if engine == "spark":
        t0 = time.perf_counter()
        ws.service.processor.spark.sql("SELECT 1").collect()
        out["startup_s"] = time.perf_counter() - t0
    else:
        t0 = time.perf_counter()
        import pyarrow.csv  # noqa: F401 - warm the imports the arrow engine needs, to be fair
        import pyiceberg.catalog  # noqa: F401

        ws.catalog.catalog
        out["startup_s"] = time.perf_counter() - t0
    # warm-up: one tiny file through the whole path (imports, JIT, first table), timed apart
    ing = _ingestion(ws, f"warmup-{engine}", warm)
    t0 = time.perf_counter()
    res = ws.service.run(ing)
    out["warmup_s"] = time.perf_counter() - t0
    if res.files_processed != 1:
        raise SystemExit(f"{engine} warm-up failed: {res.error} {res.failures[:1]}")
    for label, src in (("small", small), ("bulk", big)):
        ing = _ingestion(ws, f"{label}-{engine}", src)
        t0 = time.perf_counter()
        res = ws.service.run(ing)
        secs = time.perf_counter() - t0
        if res.files_failed or res.error:
            raise SystemExit(f"{engine} {label}: {res.files_failed} failed, error {res.error}, {res.failures[:2]}")
        out[label] = {"files": res.files_processed, "rows": res.records_ingested, "bytes": res.bytes_read,
                      "seconds": secs}
    if engine == "spark":
        from cutover.core.spark.engine import _sessions

        for s in list(_sessions.values()):
            s.stop()
        _sessions.clear()
    return out


def report(results: list[dict], as_json: bool) -> None:
    for r in results:
        b, s = r["bulk"], r["small"]
        r["per_file_s"] = s["seconds"] / max(1, s["files"])
        r["mb"] = b["bytes"] / 2**20
        # throughput net of the per-file overhead: t = files * per_file + MB / net_mb_s
        r["net_mb_s"] = r["mb"] / max(1e-9, b["seconds"] - b["files"] * r["per_file_s"])
    print()
    print(f"{'engine':<7} {'files':>5} {'MB':>8} {'rows':>12} {'seconds':>9} {'rows/s':>12} {'MB/s':>7}"
          f" {'s/file (small)':>15} {'net MB/s':>9} {'start-up s':>11} {'warm-up s':>10}")
    for r in results:
        b = r["bulk"]
        print(f"{r['engine']:<7} {b['files']:>5} {r['mb']:>8.1f} {b['rows']:>12,} {b['seconds']:>9.1f} "
              f"{b['rows'] / b['seconds']:>12,.0f} {r['mb'] / b['seconds']:>7.1f} "
              f"{r['per_file_s']:>15.2f} {r['net_mb_s']:>9.1f} {r['startup_s']:>11.1f} {r['warmup_s']:>10.1f}")
    by = {r["engine"]: r for r in results}
    if "arrow" in by and "spark" in by:
        a, sp = by["arrow"], by["spark"]
        ratio = sp["bulk"]["seconds"] / a["bulk"]["seconds"]
        print(f"\nspark/arrow time ratio (bulk): {ratio:.2f}x ({'arrow' if ratio > 1 else 'spark'} faster here)")
        print("model: t = files * per_file + MB / net MB/s "
              f"(+ {sp['startup_s']:.1f} s Spark start-up once per process for a local server)")
    if as_json:
        for r in results:
            print(json.dumps(r))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=float, default=1024)
    ap.add_argument("--file-mb", type=float, default=64)
    ap.add_argument("--small-files", type=int, default=10)
    ap.add_argument("--small-kb", type=float, default=50)
    ap.add_argument("--spark-remote", default="local[2]")
    ap.add_argument("--spark-catalog", default="spark_catalog")
    ap.add_argument("--work-dir", type=Path, default=None)
    ap.add_argument("--engines", default="arrow,spark")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")

    if args.work_dir:
        args.work_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="cutover-bench-spark-", dir=args.work_dir)).resolve()
    try:
        t0 = time.perf_counter()
        big, small = work / "bulk", work / "small"
        rows, size = generate(big, args.size_mb, args.file_mb)
        generate(small, args.small_files * args.small_kb / 1024, args.small_kb / 1024, prefix="s", seed=1)
        warm = work / "warmup"
        generate(warm, 0.01, 0.01, prefix="w", seed=2)
        print(f"generated {size / 2**20:.1f} MB of CSV ({rows:,} rows) in "
              f"{len(list(big.glob('*.csv')))} files + {args.small_files} small files in {time.perf_counter() - t0:.1f} s "
              f"under {work}")
        results = []
        for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
            print(f"running {engine} ...", flush=True)
            results.append(run_engine(engine, work, big, small, warm, args.spark_remote, args.spark_catalog))
        report(results, args.json)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
