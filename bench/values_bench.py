"""Value-level parity at scale: checks/values.py against datacompy (pandas), same data, same run.

Generates ROWS rows × 10 columns per side as Parquet files (what Iceberg data files are), in
chunks so the generator stays small, then for each case runs each tool in a fresh process
(peak RSS is that process's own, ``ru_maxrss``):

  (a) equal data — the shadow side is the same rows, written as other files in another order;
  (b) 1,000 scattered rows differ in one column each (amount, qty, customer, created_at …).

cutover reads the Parquet files itself (streamed by DuckDB, ``memory_limit`` 1 GB); datacompy
gets both sides as pandas DataFrames read from the same files (its reading time included:
both tools start from the files). The last line reads
``values: cutover A s, datacompy B s, speedup C×, peak RSS D MB`` (case (b), the harder one;
peak RSS is cutover's).

    .venv/bin/python bench/values_bench.py --rows 10000000
    .venv/bin/python bench/values_bench.py --rows 1000000 --skip-datacompy   # quick
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIFFERING = 1000
CHUNK = 1_000_000


def generate(out: Path, rows: int, seed: int = 11) -> dict:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    changed = np.sort(rng.choice(rows, size=DIFFERING, replace=False))
    cols_changed = {}
    files = {"legacy": [], "equal": [], "diff": []}
    for n, start in enumerate(range(0, rows, CHUNK)):
        m = min(CHUNK, rows - start)
        ids = np.arange(start, start + m, dtype=np.int64)
        t = pa.table({
            "id": ids,
            "amount": np.round(rng.random(m) * 10_000, 2),
            "fee": np.round(rng.random(m) * 50, 2),
            "tax": rng.random(m),
            "qty": rng.integers(1, 100, m),
            "store": rng.integers(1, 5_000, m),
            "customer": pa.array(np.char.add("c", (ids % 250_000).astype("U7"))),
            "status": pa.array(np.array(["new", "paid", "shipped", "returned"])[rng.integers(0, 4, m)]),
            "created_at": pa.array(ids * 1_000_000 + 1_700_000_000_000_000, type=pa.timestamp("us")),
            "flag": rng.random(m) < 0.5,
        })
        p = out / f"legacy-{n:04d}.parquet"
        pq.write_table(t, p)
        files["legacy"].append(str(p))
        # the equal side: same rows, other files, reversed order within the chunk
        p = out / f"equal-{n:04d}.parquet"
        pq.write_table(t.take(pa.array(np.arange(m - 1, -1, -1))), p)
        files["equal"].append(str(p))
        # the differing side: 1,000 scattered rows, one column each
        local = changed[(changed >= start) & (changed < start + m)] - start
        if len(local):
            which = local % 4  # one column per changed row
            cols = {c: t[c].to_numpy().copy() for c in ("amount", "qty")}
            for k, col in enumerate(("amount", "qty", "customer", "created_at")):
                cols_changed[col] = cols_changed.get(col, 0) + int((which == k).sum())
            cols["amount"][local[which == 0]] += 0.01
            cols["qty"][local[which == 1]] += 1
            cust = t["customer"].to_numpy(zero_copy_only=False).astype(object)
            cust[local[which == 2]] = [x + "x" for x in cust[local[which == 2]]]
            ts = t["created_at"].cast(pa.int64()).to_numpy().copy()
            ts[local[which == 3]] += 1000
            t = (t.set_column(1, "amount", pa.array(cols["amount"]))
                  .set_column(4, "qty", pa.array(cols["qty"]))
                  .set_column(6, "customer", pa.array(cust, type=pa.string()))
                  .set_column(8, "created_at", pa.array(ts).cast(pa.timestamp("us"))))
        p = out / f"diff-{n:04d}.parquet"
        pq.write_table(t, p)
        files["diff"].append(str(p))
    files["changed"] = cols_changed
    return files


def child_cutover(files: list[str], other: list[str]) -> dict:
    sys.path.insert(0, str(ROOT))
    from checks.values import ValueSpec, compare

    t = time.perf_counter()
    d = compare(files, other, ValueSpec.build(["id"]), memory_limit="1GB")
    return {"seconds": time.perf_counter() - t, "differing_rows": d.differing_rows,
            "only": d.only_legacy + d.only_shadow, "buckets_differing": d.buckets_differing,
            "columns": {c: v.mismatches for c, v in d.columns.items()}}


def child_datacompy(files: list[str], other: list[str]) -> dict:
    import warnings

    warnings.filterwarnings("ignore")
    import datacompy
    import pandas as pd
    import pyarrow.parquet as pq

    t = time.perf_counter()
    a = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
    b = pd.concat([pq.read_table(f).to_pandas() for f in other], ignore_index=True)
    # datacompy 1.1 on pandas 3 reports every row of a datetime64[us] column unequal as soon as one
    # differs (measured: 1,000,000 of 1,000,000 for 269 changed); compared as epoch microseconds it
    # counts right, so it gets them that way (the conversion is inside its timing)
    for df in (a, b):
        df["created_at"] = df["created_at"].astype("int64")
    c = datacompy.PandasCompare(a, b, join_columns="id", abs_tol=0, rel_tol=0)
    differing = len(c.all_mismatch())
    return {"seconds": time.perf_counter() - t, "differing_rows": differing,
            "only": len(c.df1_unq_rows) + len(c.df2_unq_rows)}


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_child(kind: str, files: list[str], other: list[str], *, cap_mb: float, timeout_s: float) -> dict:
    """Run one tool in a fresh process, watched: killed past ``cap_mb`` of RSS or ``timeout_s``
    (the machine is shared; a baseline that cannot finish is reported as such, never guessed)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen([sys.executable, __file__, "--child", kind], stdin=subprocess.PIPE, stdout=out,
                             stderr=err, text=True)
        p.stdin.write(json.dumps([files, other]))
        p.stdin.close()
        peak, killed = 0.0, None
        while p.poll() is None:
            peak = max(peak, _rss_mb(p.pid))
            elapsed = time.perf_counter() - t0
            if peak > cap_mb:
                killed = f"killed at {peak:,.0f} MB RSS (cap {cap_mb:,.0f} MB) after {elapsed:.0f} s"
            elif elapsed > timeout_s:
                killed = f"killed after {elapsed:.0f} s (time limit {timeout_s:.0f} s)"
            if killed:
                p.kill()
                p.wait()
                return {"killed": killed, "seconds": elapsed, "peak_rss_mb": peak}
            time.sleep(0.1)
        out.seek(0)
        err.seek(0)
        if p.returncode != 0:
            raise SystemExit(f"{kind} child failed:\n{err.read()[-3000:]}")
        return json.loads(out.read().strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--skip-datacompy", action="store_true")
    ap.add_argument("--datacompy-cap-mb", type=float, default=12_000,
                    help="kill datacompy past this RSS (the machine is shared); reported, never guessed")
    ap.add_argument("--timeout", type=float, default=3600, help="kill a tool running longer than this (s)")
    ap.add_argument("--child")
    ap.add_argument("--work-dir")
    a = ap.parse_args()
    if a.child:
        files, other = json.loads(sys.stdin.read())
        out = (child_cutover if a.child == "cutover" else child_datacompy)(files, other)
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(out))
        return 0
    with tempfile.TemporaryDirectory(dir=a.work_dir) as tmp:
        t = time.perf_counter()
        files = generate(Path(tmp), a.rows)
        size = sum(os.path.getsize(f) for k in ("legacy", "equal", "diff") for f in files[k]) / 2**20
        print(f"generated {a.rows:,} rows x 10 columns per side in {time.perf_counter() - t:.1f}s "
              f"({size:.0f} MB of Parquet); changed: {files['changed']}")
        rows = []
        for case, other in (("equal", files["equal"]), ("1,000 differing", files["diff"])):
            c = run_child("cutover", files["legacy"], other, cap_mb=8_000, timeout_s=a.timeout)
            if "killed" in c:
                raise SystemExit(f"cutover did not finish: {c['killed']}")
            d = None if a.skip_datacompy else run_child("datacompy", files["legacy"], other,
                                                        cap_mb=a.datacompy_cap_mb, timeout_s=a.timeout)
            rows.append((case, c, d))
    print(f"{'case':<17}{'cutover s':>10}{'MB':>7}{'found':>7}{'datacompy s':>13}{'MB':>8}{'found':>8}{'speedup':>9}")
    for case, c, d in rows:
        if d and "killed" in d:
            ds = f"{'>' + format(d['seconds'], '.1f'):>13}{d['peak_rss_mb']:>8.0f}{'killed':>8}"
            sp = f"{'>' + format(d['seconds'] / c['seconds'], '.1f'):>8}×"
        elif d:
            ds = f"{d['seconds']:>13.1f}{d['peak_rss_mb']:>8.0f}{d['differing_rows'] + d['only']:>8}"
            sp = f"{d['seconds'] / c['seconds']:>8.1f}×"
        else:
            ds, sp = f"{'-':>13}{'-':>8}{'-':>8}", f"{'-':>9}"
        print(f"{case:<17}{c['seconds']:>10.1f}{c['peak_rss_mb']:>7.0f}{c['differing_rows'] + c['only']:>7}{ds}{sp}")
        if d and "killed" in d:
            print(f"  datacompy on {case}: {d['killed']}")
    case, c, d = rows[-1]
    ok = c["differing_rows"] == DIFFERING and c["only"] == 0 and rows[0][1]["differing_rows"] == 0
    print(f"cutover found {c['differing_rows']} differing rows (expected {DIFFERING}), by column {c['columns']}: "
          f"{'OK' if ok else 'WRONG'}")
    if d and "killed" in d:  # a lower bound: datacompy had not finished when it was stopped
        print(f"values: cutover {c['seconds']:.1f} s, datacompy >{d['seconds']:.1f} s ({d['killed']}), "
              f"speedup >{d['seconds'] / c['seconds']:.1f}×, peak RSS {c['peak_rss_mb']:.0f} MB")
    elif d:
        print(f"values: cutover {c['seconds']:.1f} s, datacompy {d['seconds']:.1f} s, "
              f"speedup {d['seconds'] / c['seconds']:.1f}×, peak RSS {c['peak_rss_mb']:.0f} MB")
    else:
        print(f"values: cutover {c['seconds']:.1f} s, datacompy skipped, peak RSS {c['peak_rss_mb']:.0f} MB")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
