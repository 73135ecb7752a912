"""Which engine hashes rows into key buckets fastest: the choice behind checks/values.py.

The values check's first pass, per side: every row's key hash and row hash, grouped into
65,536 key buckets (count + sum of row hashes). Same Parquet file, same machine, same run:

- DuckDB: ``hash(key) % B``, ``sum(hash(key, columns...)::HUGEINT)`` over ``read_parquet``;
- polars: ``DataFrame.hash_rows`` (one row hash) and ``group_by`` over ``scan_parquet``;
- pyarrow compute has no row hash kernel: rows would be hashed in Python (not measured).

    .venv/bin/python bench/values_engines.py --rows 2000000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
B = 65536


def best(fn, n: int = 3) -> float:
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from bench.values_bench import generate

    with tempfile.TemporaryDirectory() as tmp:
        files = generate(Path(tmp), a.rows)["legacy"]
        import duckdb
        import polars as pl

        con = duckdb.connect()
        con.execute("SET memory_limit = '1GB'")
        paths = ", ".join(f"'{p}'" for p in files)
        cols = "amount, fee, tax, qty, store, customer, status, created_at, flag"

        def duck():
            con.execute(f"SELECT hash(id) % {B} AS b, count(*), sum(hash(id, {cols})::HUGEINT) "
                        f"FROM read_parquet([{paths}]) GROUP BY 1").fetchall()

        def polars_hash_rows():
            df = pl.scan_parquet(files).collect()
            h = df.hash_rows(seed=0)
            pl.DataFrame({"b": df["id"].hash(seed=1) % B, "h": h}).group_by("b").agg(
                pl.len(), (pl.col("h").cast(pl.Int128)).sum())

        def polars_struct():
            (pl.scan_parquet(files).select(b=pl.col("id").hash(seed=1) % B, h=pl.struct(pl.all()).hash(seed=0))
             .group_by("b").agg(pl.len(), pl.col("h").cast(pl.Int128).sum()).collect())

        rows = [("duckdb", best(duck)), ("polars hash_rows", best(polars_hash_rows)),
                ("polars struct hash (lazy)", best(polars_struct))]
    base = rows[0][1]
    print(f"{a.rows:,} rows x 10 columns, {B:,} key buckets, best of 3:")
    for name, s in rows:
        print(f"  {name:<28}{s:>7.2f} s  {s / base:>5.1f}x duckdb")
    return 0


if __name__ == "__main__":
    sys.exit(main())
