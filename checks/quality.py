"""Quality check: Great Expectations 1.x suites run on both sides.

Each side is the table as of its branch head (``main`` for legacy,
``cutover-shadow`` for the Prefect shadow), whole or a sample. Expectations:
columns equal to the legacy side's (name and order), key columns not null and
unique (compound keys as one), row count equal to the legacy side's. Parity is
about the shadow doing what legacy does: an expectation that fails on the
shadow side but not on the legacy side, or fails on both with different
counts, is a ``quality_failed`` finding; one that fails identically on both
sides is a property of the data, reported in the metrics, not a divergence.
A schema difference between the two heads is a ``schema_mismatch``.
"""

from __future__ import annotations

import warnings

from checks.model import CheckResult, Finding
from cutover.core.extras import require
from cutover.core.output import quiet_library
from cutover.core.iceberg import MAIN, SHADOW_BRANCH, Catalog, snapshot_info

_ctx = None


def ge_context():
    global _ctx
    if _ctx is None:
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
        gx = require("great_expectations", what="the quality parity check")
        from great_expectations.data_context.types.base import ProgressBarsConfig

        quiet_library("great_expectations")  # it sets its own INFO level on import

        ctx = gx.get_context(mode="ephemeral")
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
        _ctx = ctx
    return _ctx


def _batch_definition(name: str):
    ctx = ge_context()
    try:
        ds = ctx.data_sources.get("cutover")
    except Exception:  # noqa: BLE001 - GE raises its own not-found types across versions
        ds = ctx.data_sources.add_pandas("cutover")
    try:
        asset = ds.get_asset(name)
    except Exception:  # noqa: BLE001
        asset = ds.add_dataframe_asset(name)
    try:
        return asset.get_batch_definition("whole")
    except Exception:  # noqa: BLE001
        return asset.add_batch_definition_whole_dataframe("whole")


def expectation_suite(columns: list[str], keys: list[str], row_count: int | None):
    ge_context()  # suites need an active context
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name="cutover-parity")
    suite.add_expectation(gxe.ExpectTableColumnsToMatchOrderedList(column_list=columns))
    present = [k for k in keys if k in columns]
    for k in present:
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=k))
    if len(present) == 1:
        suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(column=present[0]))
    elif len(present) > 1:
        suite.add_expectation(gxe.ExpectCompoundColumnsToBeUnique(column_list=present))
    if row_count is not None:
        suite.add_expectation(gxe.ExpectTableRowCountToEqual(value=row_count))
    return suite


def _outcomes(name: str, df, suite) -> dict[str, dict]:
    res = _batch_definition(name).get_batch(batch_parameters={"dataframe": df}).validate(suite, result_format="SUMMARY")
    out = {}
    for r in res.results:
        cfg = r.expectation_config
        if cfg.type == "expect_table_columns_to_match_ordered_list":
            col = ""
        else:
            col = cfg.kwargs.get("column") or ",".join(cfg.kwargs.get("column_list") or [])
        key = f"{cfg.type}({col})" if col else cfg.type
        result = r.result or {}
        out[key] = {"success": bool(r.success), "unexpected_count": result.get("unexpected_count"),
                    "observed_value": result.get("observed_value")}
    return out


def compare(lo: dict[str, dict], so: dict[str, dict]) -> tuple[list[Finding], list[str]]:
    """Shadow vs legacy expectation outcomes -> (findings, data issues shared by both sides)."""
    findings, shared = [], []
    for key, s in so.items():
        l = lo.get(key, {"success": True})
        if s["success"] and l["success"]:
            continue
        if not s["success"] and not l["success"] and s.get("unexpected_count") == l.get("unexpected_count") \
                and not key.startswith("expect_table_"):
            shared.append(key)
            continue
        if s["success"] and not l["success"]:
            # legacy is worse than shadow: still a divergence worth knowing
            findings.append(Finding("quality_failed", legacy=l, shadow=s, detail=f"{key} fails on legacy only"))
            continue
        findings.append(Finding("quality_failed", legacy=l, shadow=s, detail=f"{key} fails on shadow"))
    return findings, shared


def _schema(tbl, snapshot_id: int) -> list[tuple[str, str]]:
    return [(f.name, str(f.field_type)) for f in tbl.scan(snapshot_id=snapshot_id).projection().fields]


def _frame(tbl, snapshot_id: int, sample_rows: int):
    scan = tbl.scan(snapshot_id=snapshot_id, limit=sample_rows or None)
    return scan.to_arrow().to_pandas()


def check_quality(tbl, *, key_columns: list[str], sample_rows: int = 0) -> CheckResult:
    if tbl is None:
        return CheckResult.errored("quality", "the table does not exist yet: run the legacy side first")
    if SHADOW_BRANCH not in tbl.metadata.refs:
        return CheckResult.errored("quality", f"branch {SHADOW_BRANCH} does not exist: start the shadow first")
    main_id, shadow_id = Catalog.head(tbl, MAIN), Catalog.head(tbl, SHADOW_BRANCH)
    findings: list[Finding] = []
    ls, ss = _schema(tbl, main_id), _schema(tbl, shadow_id)
    if ls != ss:
        diffs = [f"{a[0]}: {a[1]} vs {b[0]}: {b[1]}" for a, b in zip(ls, ss) if a != b]
        if len(ls) != len(ss):
            diffs.append(f"{len(ls)} vs {len(ss)} columns")
        findings.append(Finding("schema_mismatch", legacy=[f"{n}: {t}" for n, t in ls], shadow=[f"{n}: {t}" for n, t in ss],
                                detail="; ".join(diffs)))
    ldf, sdf = _frame(tbl, main_id, sample_rows), _frame(tbl, shadow_id, sample_rows)
    columns = [n for n, _ in ls]
    legacy_count = snapshot_info(tbl.metadata.snapshot_by_id(main_id)).total_records
    row_count = legacy_count if not sample_rows else None
    lo = _outcomes("legacy", ldf, expectation_suite(columns, list(key_columns), row_count))
    so = _outcomes("shadow", sdf, expectation_suite(columns, list(key_columns), row_count))
    more, shared_issues = compare(lo, so)
    findings += more
    metrics = {"legacy_rows_checked": len(ldf), "shadow_rows_checked": len(sdf), "expectations": len(so),
               "shared_data_issues": shared_issues, "sample_rows": sample_rows or None}
    return CheckResult.from_findings("quality", findings, metrics)
