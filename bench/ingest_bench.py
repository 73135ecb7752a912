"""Ingestion at scale (issue #14): N small CSV files (50 rows x 5 columns) ingested by
``cutover legacy run ID``, against plain pyiceberg appending the same files in ONE commit,
in the same run, each in its own process (peak RSS is that process's own).

    .venv/bin/python bench/ingest_bench.py --files 10000

Prints, for cutover: files/s, the time of the first and of the last 10 % of the files,
peak RSS and the size of the table's metadata directory; for the one-commit baseline:
files/s and peak RSS. The last line reads

    ingest: cutover A files/s, one-commit B files/s, ratio C× (one-commit files/s ÷ cutover files/s), last/first 10% D×, metadata E MB

The first/last 10 % times come from the ledger: each batch's wall time (from the run's
start or the previous batch's completion to its own ``processed_at``) is spread evenly over
its files, and the files are taken in completion order.

Goals: 10,000 files within 5x of the one-commit baseline and under 60 s; last 10 % within
1.5x of the first 10 %; metadata under 50 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
IID = "bench"

BASELINE = r"""
import glob, json, os, resource, sys, time
t0 = time.perf_counter()
import pyarrow as pa, pyarrow.csv as pcsv
from pyiceberg.catalog.sql import SqlCatalog
src, work = sys.argv[1], sys.argv[2]
files = sorted(glob.glob(os.path.join(src, "*.csv")))
os.makedirs(os.path.join(work, "wh"), exist_ok=True)
cat = SqlCatalog("base", uri=f"sqlite:///{work}/catalog.db", warehouse=f"file://{work}/wh")
cat.create_namespace("raw")
t1 = time.perf_counter()
data = pa.concat_tables([pcsv.read_csv(f) for f in files])
tbl = cat.create_table("raw.base", schema=data.schema)
tbl.append(data)
t2 = time.perf_counter()
print(json.dumps({"files": len(files), "rows": data.num_rows, "seconds": t2 - t1, "import_s": t1 - t0,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_files(src: Path, n: int) -> None:
    src.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rows = "".join(f"{i * 100 + r},{i},name-{r},{(i * r) % 997 * 0.5:.1f},2026-11-{1 + r % 28:02d}\n" for r in range(50))
        (src / f"part-{i:06d}.csv").write_text("id,file_no,name,amount,day\n" + rows)


def dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def run_cutover(home: Path, src: Path, env: dict) -> dict:
    def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([PY, "-m", "cutover", *args], env=env, cwd=str(ROOT), capture_output=True,
                              text=True, check=check)

    cli("ingestion", "add", IID, "--source", str(src), "--pattern", "*.csv", "--format", "csv", "--table", "raw.bench")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    proc = subprocess.run([PY, "-m", "cutover", "legacy", "run", IID, "--json"], env=env, cwd=str(ROOT),
                          capture_output=True, text=True)
    wall = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        sys.exit(f"cutover legacy run failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return {"wall_s": wall, "rss_mb": rss / 1024 if rss > before else None, "stdout": proc.stdout}


def ledger_profile(home: Path, n: int) -> dict:
    """Run start, per-file completion times (batch wall time spread over its files), batches."""
    sys.path.insert(0, str(ROOT))
    os.environ["CUTOVER_HOME"] = str(home)
    from sqlalchemy import create_engine, select

    from cutover.core.records.tables import processed_files as t_pf
    from cutover.core.records.tables import runs as t_runs

    eng = create_engine(f"sqlite:///{home / 'autoloader.db'}")
    with eng.connect() as conn:
        run = conn.execute(select(t_runs).where(t_runs.c.ingestion_id == IID)).first()
        rows = conn.execute(select(t_pf.c.processed_at, t_pf.c.batch_id, t_pf.c.status)
                            .where(t_pf.c.ingestion_id == IID, t_pf.c.namespace == "live")).all()
    assert len(rows) == n and all(r.status == "SUCCESS" for r in rows), "not every file is SUCCESS"

    def ts(d):
        return (d if d.tzinfo else d.replace(tzinfo=timezone.utc)).timestamp()

    batches: dict[str, list[float]] = {}
    for r in rows:
        batches.setdefault(r.batch_id, []).append(ts(r.processed_at))
    order = sorted(batches.items(), key=lambda kv: max(kv[1]))
    prev = ts(run.started_at)
    per_file: list[float] = []
    for _, stamps in order:
        end = max(stamps)
        per_file += [(end - prev) / len(stamps)] * len(stamps)
        prev = end
    k = max(1, n // 10)
    return {"batches": len(order), "first10_s": sum(per_file[:k]), "last10_s": sum(per_file[-k:]),
            "ingest_s": prev - ts(run.started_at)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    n = args.files
    tmp = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    src, home, base = tmp / "src", tmp / "home", tmp / "baseline"
    write_files(src, n)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUTOVER_")}
    env.update(CUTOVER_HOME=str(home), PYTHONPATH=str(ROOT))

    res = run_cutover(home, src, env)
    prof = ledger_profile(home, n)
    meta = dir_mb(next((home / "warehouse").rglob("metadata")))

    base.mkdir()
    t = time.perf_counter()
    out = subprocess.run([PY, "-c", BASELINE, str(src), str(base)], capture_output=True, text=True, check=True)
    b = json.loads(out.stdout.strip().splitlines()[-1])
    b_wall = time.perf_counter() - t

    # files/s over the ingestion itself (the run's start to its last commit), for cutover;
    # reading + creating + the one append, for the baseline. Whole-process walls are printed too.
    c_rate = n / prof["ingest_s"]
    b_rate = n / b["seconds"]
    ratio = b_rate / c_rate
    growth = prof["last10_s"] / prof["first10_s"] if prof["first10_s"] else float("nan")
    print(f"files: {n} x 50 rows x 5 columns; cutover batches: {prof['batches']}")
    print(f"cutover legacy run: ingest {prof['ingest_s']:.2f} s ({c_rate:.0f} files/s), process wall {res['wall_s']:.2f} s, "
          f"peak RSS {res['rss_mb'] or float('nan'):.0f} MB")
    print(f"  first 10% {prof['first10_s']:.2f} s, last 10% {prof['last10_s']:.2f} s")
    print(f"one-commit pyiceberg: {b['seconds']:.2f} s ({b_rate:.0f} files/s), process wall {b_wall:.2f} s, "
          f"peak RSS {b['rss_mb']:.0f} MB")
    print(f"metadata: cutover {meta:.1f} MB, one-commit {dir_mb(next((base / 'wh').rglob('metadata'))):.1f} MB")
    print(f"ingest: cutover {c_rate:.0f} files/s, one-commit {b_rate:.0f} files/s, ratio {ratio:.1f}× "
          f"(one-commit files/s ÷ cutover files/s), last/first 10% {growth:.2f}×, metadata {meta:.1f} MB")
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
