"""Counts and quality checks on Spark (``[ingest] engine = "spark"``).

Same checks, same :class:`~checks.model.CheckResult` format, as the pyiceberg /
pandas ones; only where the numbers come from changes:

- **counts**: the Iceberg metadata tables ``<table>.snapshots`` (summary map:
  ``added-records``, ``total-records``, ``cutover.*``) and ``<table>.refs``, read with
  the statements of :mod:`cutover.core.spark.sql` and shaped by :mod:`cutover.core.spark.metadata`
  into the view ``checks.counts.check_counts`` walks — so the verdict logic is the very
  same function, and no data file is scanned.
- **quality**: Great Expectations' Spark data source on a Spark Connect DataFrame
  (``ctx.data_sources.add_spark(...)``, ``add_dataframe_asset``,
  ``batch_parameters={"dataframe": sdf}``). GE 1.24 accepts a Spark Connect DataFrame
  (pyspark 4's ``pyspark.sql.connect.dataframe.DataFrame`` is a ``pyspark.sql.DataFrame``):
  verified by tests/test_spark_integration.py. Should a GE version refuse it, the same
  expectations (ordered columns, key columns not null, unique keys, row count) are
  computed with Spark SQL aggregates (:func:`sql_outcomes`) and reported identically.
  Each side is the table ``VERSION AS OF`` its branch head; the whole table, or a
  ``LIMIT`` sample when ``quality_sample_rows`` is set.

In local catalog mode (``spark_catalog = "spark_catalog"``) there are no snapshots
and no branches, hence no shadow to compare: both checks return ``error`` saying so.
"""

from __future__ import annotations

import logging
import uuid

from checks.counts import check_counts as _check_counts
from checks.model import CheckResult, Finding
from checks.quality import expectation_suite, ge_context
from checks.quality import compare  # the one comparison rule for both engines
from cutover.core.iceberg import MAIN, SHADOW_BRANCH
from cutover.core.spark import sql as S
from cutover.core.spark.engine import SparkProcessor

log = logging.getLogger("cutover.checks.spark")

_LOCAL = ("the local Spark catalog (spark_catalog) keeps no snapshots or branches: "
          "set [ingest] spark_catalog to the Iceberg catalog of the Spark cluster")


def processor_for(ws):
    """The workspace's Spark processor (one Spark session per process)."""
    proc = getattr(getattr(ws, "service", None), "processor", None)
    if proc is None:
        proc = SparkProcessor.from_settings(ws.settings)
    return proc


def has_shadow(proc, table: str) -> bool:
    tbl = proc.iceberg_table(table) if proc.iceberg else None
    return tbl is not None and SHADOW_BRANCH in tbl.metadata.refs


# -- counts ------------------------------------------------------------------------------------

def check_counts(proc, table: str, *, fork_snapshot_id: int | None, ingestion_id: str) -> CheckResult:
    """``checks.counts.check_counts`` fed from ``<table>.snapshots`` / ``<table>.refs`` through Spark."""
    if not proc.iceberg:
        return CheckResult.errored("counts", _LOCAL)
    res = _check_counts(proc.iceberg_table(table), fork_snapshot_id=fork_snapshot_id, ingestion_id=ingestion_id)
    res.metrics["engine"] = "spark"
    return res


# -- quality -----------------------------------------------------------------------------------

_ctx_source = None


def _batch_definition(name: str):
    """A whole-DataFrame batch definition on GE's Spark data source (ephemeral context)."""
    global _ctx_source
    ctx = ge_context()
    if _ctx_source is None:
        try:
            _ctx_source = ctx.data_sources.get("cutover-spark")
        except Exception:  # noqa: BLE001 - GE's not-found types vary across versions
            _ctx_source = ctx.data_sources.add_spark("cutover-spark")
    try:
        asset = _ctx_source.get_asset(name)
    except Exception:  # noqa: BLE001
        asset = _ctx_source.add_dataframe_asset(name)
    try:
        return asset.get_batch_definition("whole")
    except Exception:  # noqa: BLE001
        return asset.add_batch_definition_whole_dataframe("whole")


def _key(kind: str, col: str = "") -> str:
    return f"{kind}({col})" if col else kind


def ge_outcomes(name: str, sdf, columns: list[str], keys: list[str], row_count: int | None) -> dict[str, dict]:
    """Validate the cutover-parity suite on a Spark (Connect) DataFrame with GE's Spark data source."""
    suite = expectation_suite(columns, keys, row_count)
    res = _batch_definition(name).get_batch(batch_parameters={"dataframe": sdf}).validate(suite, result_format="SUMMARY")
    out = {}
    for r in res.results:
        cfg = r.expectation_config
        if cfg.type == "expect_table_columns_to_match_ordered_list":
            col = ""
        else:
            col = cfg.kwargs.get("column") or ",".join(cfg.kwargs.get("column_list") or [])
        result = r.result or {}
        out[_key(cfg.type, col)] = {"success": bool(r.success), "unexpected_count": result.get("unexpected_count"),
                                    "observed_value": result.get("observed_value")}
    return out


def sql_outcomes(spark, sdf, columns: list[str], keys: list[str], row_count: int | None) -> dict[str, dict]:
    """The same expectations as :func:`ge_outcomes`, computed with Spark SQL aggregates (fallback)."""
    view = f"cutover_quality_{uuid.uuid4().hex[:12]}"
    sdf.createOrReplaceTempView(view)
    try:
        observed = list(sdf.columns)
        out = {"expect_table_columns_to_match_ordered_list": {
            "success": observed == list(columns), "unexpected_count": None, "observed_value": observed}}
        present = [k for k in keys if k in columns]
        counts = S.quality_counts(view, present).run(spark).collect()[0]
        for i, k in enumerate(present):
            n = int(counts[f"nulls_{i}"])
            out[_key("expect_column_values_to_not_be_null", k)] = {
                "success": n == 0, "unexpected_count": n, "observed_value": None}
        if present:
            dup = int(S.quality_duplicates(view, present).run(spark).collect()[0]["duplicates"])
            kind = "expect_column_values_to_be_unique" if len(present) == 1 else "expect_compound_columns_to_be_unique"
            out[_key(kind, ",".join(present))] = {"success": dup == 0, "unexpected_count": dup, "observed_value": None}
        if row_count is not None:
            rows = int(counts["rows"])
            out["expect_table_row_count_to_equal"] = {"success": rows == row_count, "unexpected_count": None,
                                                      "observed_value": rows}
        return out
    finally:
        spark.catalog.dropTempView(view)


def outcomes(spark, name: str, sdf, columns: list[str], keys: list[str], row_count: int | None) -> tuple[dict, str]:
    """(outcomes, "great_expectations" | "spark_sql"): GE on the Spark DataFrame, else the SQL fallback."""
    try:
        return ge_outcomes(name, sdf, columns, keys, row_count), "great_expectations"
    except ImportError:
        raise
    except Exception as e:  # noqa: BLE001 - GE refused the DataFrame: same expectations in SQL
        log.warning("Great Expectations could not validate the Spark DataFrame (%s: %s); using Spark SQL aggregates",
                    type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        return sql_outcomes(spark, sdf, columns, keys, row_count), "spark_sql"


def check_quality(proc, table: str, *, key_columns: list[str], sample_rows: int = 0) -> CheckResult:
    """``checks.quality.check_quality`` on Spark: each branch head read with ``VERSION AS OF``."""
    if not proc.iceberg:
        return CheckResult.errored("quality", _LOCAL)
    tbl = proc.iceberg_table(table)
    if tbl is None:
        return CheckResult.errored("quality", "the table does not exist yet: run the legacy side first")
    if SHADOW_BRANCH not in tbl.metadata.refs:
        return CheckResult.errored("quality", f"branch {SHADOW_BRANCH} does not exist: start the shadow first")
    spark = proc.spark
    main_id, shadow_id = tbl.metadata.refs[MAIN].snapshot_id, tbl.metadata.refs[SHADOW_BRANCH].snapshot_id
    ldf = S.select_all(proc.catalog, table, snapshot_id=main_id, limit=sample_rows or None).run(spark)
    sdf = S.select_all(proc.catalog, table, snapshot_id=shadow_id, limit=sample_rows or None).run(spark)
    ls = [(f.name, f.dataType.simpleString()) for f in ldf.schema.fields]
    ss = [(f.name, f.dataType.simpleString()) for f in sdf.schema.fields]
    findings: list[Finding] = []
    if ls != ss:
        diffs = [f"{a[0]}: {a[1]} vs {b[0]}: {b[1]}" for a, b in zip(ls, ss) if a != b]
        if len(ls) != len(ss):
            diffs.append(f"{len(ls)} vs {len(ss)} columns")
        findings.append(Finding("schema_mismatch", legacy=[f"{n}: {t}" for n, t in ls],
                                shadow=[f"{n}: {t}" for n, t in ss], detail="; ".join(diffs)))
    columns = [n for n, _ in ls]
    main_snap = tbl.metadata.snapshot_by_id(main_id)
    legacy_count = int(main_snap.summary.get("total-records", 0)) if main_snap else None
    row_count = legacy_count if not sample_rows else None
    lo, how = outcomes(spark, "legacy", ldf, columns, list(key_columns), row_count)
    so, _ = outcomes(spark, "shadow", sdf, columns, list(key_columns), row_count)
    more, shared = compare(lo, so)
    findings += more
    lt, st = legacy_count, _total(tbl, shadow_id)
    checked = (min(sample_rows, lt or 0), min(sample_rows, st or 0)) if sample_rows else (lt, st)
    metrics = {"legacy_rows_checked": checked[0], "shadow_rows_checked": checked[1], "expectations": len(so),
               "shared_data_issues": shared, "sample_rows": sample_rows or None, "engine": "spark", "validator": how}
    return CheckResult.from_findings("quality", findings, metrics)


def _total(tbl, snapshot_id: int) -> int | None:
    snap = tbl.metadata.snapshot_by_id(snapshot_id)
    return int(snap.summary.get("total-records", 0)) if snap else None
