"""Parity at scale: the ledger check (a GROUP BY over the covering index, chunked by path range,
chunks in parallel; see checks/ledger.py) on 1M and 10M entries per side, on SQLite and PostgreSQL, and the counts check over 1,000 Iceberg snapshots -- each
against a plain pandas baseline measured in the same run, in a fresh process each (peak RSS
is the process's own).

    .venv/bin/python bench/parity_bench.py --sizes 1000000,10000000 --backend both --snapshots 1000

Target (issue #4): 10M entries per side in under 20 s and under 2 GB peak on 2 cores.
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
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

IID = "bench"
MISSING_EVERY = 1000  # one file in a thousand missing on the shadow side
MISMATCH_EVERY = 1777  # and one in ~1,777 with other record counts


def _rows(n: int, namespace: str):
    t0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
    for i in range(n):
        if namespace == "shadow" and i % MISSING_EVERY == 0:
            continue
        rec = 100 + (i % 50)
        if namespace == "shadow" and i % MISMATCH_EVERY == 0:
            rec += 1
        yield (IID, namespace, f"s3://landing/bench/part-{i:09d}.csv", 1000, f"e{i}", "SUCCESS", "run-1", rec, 1000,
               t0 + timedelta(seconds=i % 86400))


def populate(url: str, n: int) -> float:
    from cutover.core import db

    db.upgrade(url, "autoloader")
    t = time.perf_counter()
    cols = ("ingestion_id", "namespace", "path", "size", "etag", "status", "run_id", "records_ingested", "bytes_read",
            "processed_at")
    if url.startswith("sqlite"):
        import sqlite3

        con = sqlite3.connect(url[len("sqlite:///"):])
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=OFF")
        for ns in ("live", "shadow"):
            batch = []
            for r in _rows(n, ns):
                batch.append(r[:-1] + (r[-1].strftime("%Y-%m-%d %H:%M:%S.%f"),))
                if len(batch) >= 200_000:
                    con.executemany(f"INSERT INTO processed_files ({','.join(cols)}, attempts) VALUES ({','.join('?' * len(cols))}, 1)", batch)
                    batch.clear()
            if batch:
                con.executemany(f"INSERT INTO processed_files ({','.join(cols)}, attempts) VALUES ({','.join('?' * len(cols))}, 1)", batch)
            con.commit()
        con.execute("ANALYZE")
        con.close()
    else:
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as con:
            with con.cursor() as cur:
                # the test cluster runs with synchronous_commit=off: until the commit record is
                # flushed no hint bit can be set, so VACUUM could not mark a page all-visible
                cur.execute("SET synchronous_commit = on")
                for ns in ("live", "shadow"):
                    with cur.copy(f"COPY processed_files ({','.join(cols)}, attempts) FROM STDIN") as cp:
                        for r in _rows(n, ns):
                            cp.write_row(r + (1,))
            con.commit()
        # what autovacuum does to a table after a bulk load: statistics, and the visibility map
        # that lets the check read the covering index without visiting the heap
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as con:
            con.execute("VACUUM ANALYZE processed_files")
    return time.perf_counter() - t


# -- measured in a child process ------------------------------------------------------------

def child_ledger(url: str) -> dict:
    from sqlalchemy import create_engine

    from checks.ledger import check_ledger

    engine = create_engine(url)
    t = time.perf_counter()
    res = check_ledger(engine, IID, since=None, until=datetime(2027, 1, 1, tzinfo=timezone.utc))
    return {"seconds": time.perf_counter() - t, "differing": res.metrics["differing_files"],
            "judged": res.metrics["files_judged"], "chunks": res.metrics["chunks"]}


def child_pandas(url: str) -> dict:
    import pandas as pd
    from sqlalchemy import create_engine

    engine = create_engine(url)
    t = time.perf_counter()
    q = "SELECT path, status, records_ingested FROM processed_files WHERE ingestion_id = '{}' AND namespace = '{}'"
    live = pd.read_sql(q.format(IID, "live"), engine)
    shadow = pd.read_sql(q.format(IID, "shadow"), engine)
    m = live.merge(shadow, on="path", how="outer", suffixes=("_l", "_s"), indicator=True)
    diff = m[(m["_merge"] != "both") | (m["status_l"] != m["status_s"]) | (m["records_ingested_l"] != m["records_ingested_s"])]
    return {"seconds": time.perf_counter() - t, "differing": int(len(diff)), "judged": int(len(m))}


def child_counts(home: str) -> dict:
    os.environ["CUTOVER_HOME"] = home
    from checks.counts import check_counts
    from cutover.core.workspace import Workspace

    ws = Workspace()
    tbl = ws.catalog.load("bench.t")
    fork = json.loads((Path(home) / "fork.json").read_text())["fork"]
    t = time.perf_counter()
    res = check_counts(tbl, fork_snapshot_id=fork, ingestion_id=IID)
    return {"seconds": time.perf_counter() - t, "verdict": res.verdict,
            "snapshots": res.metrics["main_snapshots"] + res.metrics["shadow_snapshots"]}


def child_counts_pandas(home: str) -> dict:
    os.environ["CUTOVER_HOME"] = home
    from cutover.core.workspace import Workspace

    ws = Workspace()
    tbl = ws.catalog.load("bench.t")
    t = time.perf_counter()
    main = tbl.scan(snapshot_id=tbl.metadata.refs["main"].snapshot_id).to_pandas()
    shadow = tbl.scan(snapshot_id=tbl.metadata.refs["cutover-shadow"].snapshot_id).to_pandas()
    per_file = main.groupby("f").size().to_frame("m").join(shadow.groupby("f").size().to_frame("s"), how="outer")
    return {"seconds": time.perf_counter() - t, "verdict": "pass" if (per_file["m"] == per_file["s"]).all() else "fail",
            "snapshots": len(tbl.metadata.snapshots)}


def run_child(kind: str, arg: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, arg], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _tree_rss_kb(pid: int) -> int:
    """Resident set of a process and all its descendants, from /proc (kB)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue
    return total


class TreeRssSampler:
    """Peak RSS summed over the process tree (the ledger check may run its chunks in worker
    processes: their memory counts too), sampled every 20 ms."""

    def __init__(self):
        import threading

        self.peak_kb = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, _tree_rss_kb(os.getpid()))
            self._stop.wait(0.02)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak_kb = max(self.peak_kb, _tree_rss_kb(os.getpid()))


def _child_main(kind: str, arg: str) -> None:
    with TreeRssSampler() as sampler:
        res = {"ledger": child_ledger, "pandas": child_pandas, "counts": child_counts,
               "counts_pandas": child_counts_pandas}[kind](arg)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    res["peak_rss_mb"] = max(own, sampler.peak_kb) / 1024
    print(json.dumps(res))


def build_snapshots(home: Path, total: int) -> float:
    """A table whose main and cutover-shadow branches each get total/2 one-file snapshots after a fork."""
    os.environ["CUTOVER_HOME"] = str(home)
    import pyarrow as pa

    from cutover.core.workspace import Workspace

    ws = Workspace()
    t = time.perf_counter()
    data = pa.table({"f": ["seed"], "v": [0]})
    tbl = ws.catalog.load_or_create("bench.t", data.schema)
    tbl.append(data)
    fork = tbl.metadata.refs["main"].snapshot_id
    ws.catalog.create_branch("bench.t", "cutover-shadow", fork)
    tbl = ws.catalog.load("bench.t")
    for i in range(total // 2):
        for branch, mode in (("main", "live"), ("cutover-shadow", "shadow")):
            f = f"file-{i}"
            rows = pa.table({"f": [f] * 3, "v": [i, i + 1, i + 2]})
            ws.catalog.append("bench.t", rows, branch=branch, tbl=tbl, properties={
                "cutover.file": f, "cutover.mode": mode, "cutover.ingestion": IID, "cutover.run-id": "r"})
    (home / "fork.json").write_text(json.dumps({"fork": fork}))
    return time.perf_counter() - t


def table(rows: list[list], headers: list[str]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--snapshots", type=int, default=1000)
    ap.add_argument("--child", nargs=2)
    args = ap.parse_args()
    if args.child:
        _child_main(*args.child)
        return
    sizes = [int(s) for s in args.sizes.split(",") if s]
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    rows = []
    with tempfile.TemporaryDirectory(prefix="cutover-parity-bench-") as tmp:
        cluster = None
        if "postgres" in backends:
            from tests.pg import PgCluster

            cluster = PgCluster()
            cluster.start()
        try:
            for backend in backends:
                for n in sizes:
                    if backend == "sqlite":
                        url = f"sqlite:///{tmp}/ledger-{n}.db"
                    else:
                        name = f"ledger_{n}"
                        cluster.create_database(name)
                        url = cluster.url(name)
                    load_s = populate(url, n)
                    ours = run_child("ledger", url)
                    base = run_child("pandas", url)
                    assert ours["differing"] == base["differing"], (ours, base)
                    rows.append([f"ledger {backend}", f"{n:,}/side", f"{load_s:.1f}", f"{ours['seconds']:.2f}",
                                 f"{ours['peak_rss_mb']:.0f}", f"{base['seconds']:.2f}", f"{base['peak_rss_mb']:.0f}",
                                 f"{base['seconds'] / ours['seconds']:.1f}x", ours["differing"]])
                    if backend == "sqlite":
                        Path(url[len("sqlite:///"):]).unlink()
            if args.snapshots:
                home = Path(tmp) / "ws"
                build_s = build_snapshots(home, args.snapshots)
                ours = run_child("counts", str(home))
                base = run_child("counts_pandas", str(home))
                rows.append(["counts iceberg", f"{ours['snapshots']} snapshots", f"{build_s:.1f}", f"{ours['seconds']:.3f}",
                             f"{ours['peak_rss_mb']:.0f}", f"{base['seconds']:.3f}", f"{base['peak_rss_mb']:.0f}",
                             f"{base['seconds'] / ours['seconds']:.1f}x", ours["verdict"]])
        finally:
            if cluster is not None:
                cluster.stop()
    print()
    table(rows, ["check", "size", "load s", "cutover s", "cutover MB", "pandas s", "pandas MB", "speed-up", "diffs/verdict"])


if __name__ == "__main__":
    main()
