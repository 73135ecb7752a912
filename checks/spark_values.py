"""The values check's hashing pass on Spark Connect, for windows past one machine.

The same algorithm as :mod:`checks.values`, split where the data is:

1. **on the cluster**, one pass per side: every row gets a key bucket
   (``pmod(xxhash64(key), buckets)``) and a row hash over the key and the *normalised* values
   (each column quantised to its tolerance exactly as DuckDB's pass does; each value hashed with
   its null flag, because Spark's hash skips nulls); per bucket the row count and the sum of the
   row hashes (as ``decimal(38,0)``: no overflow). The two summaries are joined on the cluster;
   only the ids of the buckets whose count or sum differ reach the driver (at most
   ``buckets``, 65,536 by default). Equal data ends here.
2. **on this machine**: the rows of the differing buckets only, pulled as Arrow, go through
   :func:`checks.values.compare` (DuckDB): the same drill-down, tolerances, duplicate keys and
   examples. The totals, the bucket figures and the schema differences are the cluster's.

A hash on the cluster that is finer than true inequality (Spark hashes ``-0.0`` and ``0.0``
apart, a NaN that is never equal hashes randomly) only costs a drill-down, never a finding; a
value outside its tolerance always changes the sum (the quantum is never wider than it).
pyspark is imported by the caller's session only: nothing here imports it at module level.
"""

from __future__ import annotations

import time

from checks.values import ValuesDiff, columns_to_compare, compare
from cutover.core.records.valuespec import Tolerance, ValueSpec

_NUMERIC = ("tinyint", "smallint", "int", "bigint", "float", "double")


def _is_float(t: str) -> bool:
    return t in ("float", "double") or t.startswith("decimal")


def _is_numeric(t: str) -> bool:
    return t in _NUMERIC or t.startswith("decimal")


def _normalised(F, col: str, typ: str, tol: Tolerance | None):
    """The Spark expression hashed for one column (checks.values._normalised, in Spark's functions)."""
    c = F.col(f"`{col}`")
    tol = tol or Tolerance()
    if _is_float(typ) and not (tol.abs or tol.rel):
        if tol.nan_equal:
            return c
        return F.when(F.isnan(c.cast("double")), F.rand()).otherwise(c)
    if _is_numeric(typ) and (tol.abs or tol.rel):
        x = c.cast("double")
        if tol.abs and tol.rel:
            expr = F.lit(0.0)  # within either tolerance: compared in the drill-down only
        elif tol.abs:
            expr = F.floor(x / F.lit(float(tol.abs)))
        else:
            quantum = F.pow(F.lit(10.0), F.floor(F.log10(F.abs(x)))) * F.lit(float(tol.rel) / 10)
            expr = F.when((x == 0) | (F.abs(x) == float("inf")), x).otherwise(F.floor(x / quantum))
        return F.when(F.isnan(x), F.lit(float("nan")) if tol.nan_equal else F.rand()).otherwise(expr)
    if typ.startswith("timestamp") and tol.timestamp_precision:
        return F.date_trunc(tol.timestamp_precision.rstrip("s"), c)
    if typ == "string" and tol.normalize:
        e = c
        if tol.strip:
            e = F.trim(e)
        if tol.lower:
            e = F.lower(e)
        if tol.null_as_empty:
            e = F.coalesce(e, F.lit(""))
        return e
    return c


def _side(spark, paths: list[str], like=None):
    if paths:
        return spark.read.parquet(*paths)
    return spark.createDataFrame([], like.schema)


def _summary(F, df, key: list[str], values: list[str], types: dict[str, str], spec: ValueSpec, buckets: int):
    keys = [F.col(f"`{k}`") for k in key]
    hashed = []
    for c in key + values:  # each value with its null flag: Spark's xxhash64 skips a null
        e = F.col(f"`{c}`") if c in key else _normalised(F, c, types[c], spec.tolerances.get(c))
        hashed += [e, e.isNull()]
    return (df.select(F.pmod(F.xxhash64(*keys), F.lit(buckets)).alias("b"),
                      F.xxhash64(*hashed).cast("decimal(38,0)").alias("h"))
            .groupBy("b").agg(F.count(F.lit(1)).alias("n"), F.sum("h").alias("s")))


def compare_on_spark(spark, legacy: list[str], shadow: list[str], spec: ValueSpec, *,
                     memory_limit: str = "1GB") -> ValuesDiff:
    """Compare the rows of the Parquet files ``legacy`` with those of ``shadow`` (paths the
    cluster reads) under ``spec``: the hashing pass on Spark, the drill-down in DuckDB."""
    from pyspark.sql import functions as F

    t0 = time.perf_counter()
    if not legacy and not shadow:
        return ValuesDiff(0, 0, seconds=time.perf_counter() - t0)
    ldf = _side(spark, legacy) if legacy else None
    rdf = _side(spark, shadow, like=ldf)
    ldf = ldf if ldf is not None else _side(spark, [], like=rdf)
    lcols, rcols = dict(ldf.dtypes), dict(rdf.dtypes)
    schema, key, values = columns_to_compare(lcols, rcols, spec)
    b = int(spec.buckets)
    ls = _summary(F, ldf, key, values, lcols, spec, b).alias("l")
    rs = _summary(F, rdf, key, values, rcols, spec, b).alias("r")
    joined = ls.join(rs, F.col("l.b") == F.col("r.b"), "full_outer")
    differing = joined.where(~F.col("l.n").eqNullSafe(F.col("r.n")) | ~F.col("l.s").eqNullSafe(F.col("r.s")))
    ids = sorted(int(r["b"]) for r in differing.select(F.coalesce(F.col("l.b"), F.col("r.b")).alias("b")).collect())
    totals = joined.agg(F.coalesce(F.sum("l.n"), F.lit(0)).alias("nl"), F.coalesce(F.sum("r.n"), F.lit(0)).alias("nr"))
    nl, nr = (int(v) for v in totals.collect()[0])
    if ids:
        bucket = F.pmod(F.xxhash64(*[F.col(f"`{k}`") for k in key]), F.lit(b))
        lrows = ldf.where(bucket.isin(ids)).toArrow()
        rrows = rdf.where(bucket.isin(ids)).toArrow()
        diff = compare(lrows, rrows, spec, memory_limit=memory_limit)
    else:
        diff = ValuesDiff(0, 0)
    diff.rows_legacy, diff.rows_shadow = nl, nr
    diff.schema = schema
    diff.buckets, diff.buckets_differing = b, len(ids)
    diff.seconds = time.perf_counter() - t0
    return diff
