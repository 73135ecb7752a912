"""How to get per-source-file record counts for a Spark batch: two ways, same files, same session.

(a) per file (what the Spark engine does): read each file alone (CSV header + inferSchema),
    one aggregate job per file (rows and nulls per column: the pre-validation that lets a bad
    file fail alone and fits each file to the table by column NAME);
(b) one read of all the batch's files with a grouped count by ``_metadata.file_path`` (one
    inference + one job for the batch). Cheaper, but a multi-file CSV read takes its schema
    from the first file and maps the other files' columns by position, and one malformed file
    fails the whole read.

    .venv/bin/python bench/spark_batch_read.py --files 200

Prints seconds and files/s for both and the ratio; needs no cutover workspace.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--spark-remote", default="local[2]")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    work = Path(tempfile.mkdtemp(prefix="spark-batch-read-"))
    for i in range(args.files):
        rows = "\n".join(f"{i * 100 + r},name-{r},{r * 1.5},2026-11-{1 + r % 28:02d},{r % 2 == 0}" for r in range(50))
        (work / f"part-{i:05d}.csv").write_text("id,name,amount,day,flag\n" + rows + "\n")
    uris = [p.resolve().as_uri() for p in sorted(work.glob("*.csv"))]
    spark = SparkSession.builder.remote(args.spark_remote).config("spark.ui.enabled", "false").getOrCreate()
    reader = lambda: spark.read.option("mode", "FAILFAST").option("header", True).option("inferSchema", True)  # noqa: E731
    reader().csv(uris[0]).count()  # warm-up

    t0 = time.perf_counter()
    per_file = {}
    for u in uris:
        df = reader().csv(u)
        aggs = [F.count(F.lit(1)).alias("rows")] + [F.count_if(F.col(c).isNull()).alias(f"n{i}")
                                                     for i, c in enumerate(df.columns)]
        per_file[u] = df.agg(*aggs).collect()[0]["rows"]
    a = time.perf_counter() - t0

    t0 = time.perf_counter()
    df = reader().csv(uris)
    grouped = {r["f"]: r["rows"] for r in df.groupBy(F.col("_metadata.file_path").alias("f"))
               .agg(F.count(F.lit(1)).alias("rows")).collect()}
    b = time.perf_counter() - t0
    assert sum(grouped.values()) == sum(per_file.values()) == 50 * len(uris)
    spark.stop()
    n = len(uris)
    print(f"(a) per-file read + aggregate: {a:.1f} s, {n / a:.1f} files/s")
    print(f"(b) one read, count grouped by _metadata.file_path: {b:.1f} s, {n / b:.1f} files/s")
    print(f"batch read: {n} files, per-file {n / a:.1f} files/s, grouped {n / b:.1f} files/s, ratio {a / b:.1f}x")


if __name__ == "__main__":
    main()
