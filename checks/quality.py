"""Quality check: Great Expectations 1.x suites run on both sides.

Each side is the window's rows only: the rows the snapshots of its branch
(``main`` for legacy, ``cutover-shadow`` for the Prefect shadow) added after the
shadow fork and since the window's start, as they are in the branch's current
state -- read from those data files alone, never the whole table -- whole or a
sample. Expectations: columns equal to the legacy side's (name and order), key
columns not null and unique within the window (compound keys as one), row count
equal to the legacy side's window. Parity is
about the shadow doing what legacy does: an expectation that fails on the
shadow side but not on the legacy side, or fails on both with different
counts, is a ``quality_failed`` finding; one that fails identically on both
sides is a property of the data, reported in the metrics, not a divergence.
A schema difference between the two heads is one ``schema_mismatch`` per column,
naming the column and both types.

Great Expectations is imported and its context built once per process (:func:`ge_context`)
and shared by every ingestion of a parity run; its own log lines and progress bars are
quiet unless cutover runs with ``-v`` (logger ``great_expectations`` at WARNING).
"""

from __future__ import annotations

import logging
import warnings
from datetime import datetime

from checks.model import CheckResult, Finding
from cutover.core.extras import require
from cutover.core.iceberg import MAIN, SHADOW_BRANCH, Catalog

_ctx = None


def quiet_ge_logs() -> None:
    """GE sets one of its loggers to INFO at import (``data_context.types.base``: "Created temporary
    directory ... for ephemeral docs site" at every parity run). Its loggers follow cutover's level
    instead: quiet unless ``-v``."""
    level = logging.getLogger().getEffectiveLevel()
    for name in ("great_expectations", "great_expectations.data_context.types.base"):
        logging.getLogger(name).setLevel(max(level, logging.INFO) if level <= logging.INFO else level)


def ge_context():
    global _ctx
    if _ctx is None:
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
        gx = require("great_expectations", what="the quality parity check")
        from great_expectations.data_context.types.base import ProgressBarsConfig

        quiet_ge_logs()

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


def schema_findings(legacy: list[tuple[str, str]], shadow: list[tuple[str, str]]) -> list[Finding]:
    """One ``schema_mismatch`` per differing column, naming it and both types (``None``: the column is
    missing on that side), and one for a different column order of the columns both sides have."""
    lt, st = dict(legacy), dict(shadow)
    out = []
    for name in list(lt) + [n for n in st if n not in lt]:
        a, b = lt.get(name), st.get(name)
        if a == b:
            continue
        out.append(Finding("schema_mismatch", legacy={"column": name, "type": a}, shadow={"column": name, "type": b},
                           detail=f"column {name}: legacy {a or '(missing)'}, shadow {b or '(missing)'}"))
    common_l = [n for n, _ in legacy if n in st]
    common_s = [n for n, _ in shadow if n in lt]
    if common_l != common_s:
        out.append(Finding("schema_mismatch", legacy=common_l, shadow=common_s,
                           detail=f"column order: legacy {', '.join(common_l)}; shadow {', '.join(common_s)}"))
    return out


def window_snapshots(tbl, branch: str, *, fork: int | None, since: datetime | None) -> set[int]:
    """The snapshots of ``branch`` after the fork (and from ``since`` on): the window's commits."""
    since_ms = int(since.timestamp() * 1000) if since is not None else None
    return {s.snapshot_id for s in Catalog.ancestry(tbl, branch, stop_at=fork)
            if since_ms is None or s.timestamp_ms >= since_ms}


def window_rows(tbl, branch: str, snapshots: set[int], sample_rows: int = 0):
    """The rows the window's snapshots added to ``branch`` and that are still in its current state
    (their data files only, read with the table's schema), as an arrow table. One pass over the
    head's manifests; when the branch has delete files, the scan plans them in."""
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.io.pyarrow import ArrowScan
    from pyiceberg.manifest import ManifestContent
    from pyiceberg.table import FileScanTask

    head = Catalog.head(tbl, branch)
    snap = tbl.metadata.snapshot_by_id(head) if head is not None else None
    scan = tbl.scan(snapshot_id=head)
    if snap is None or not snapshots:
        return ArrowScan(tbl.metadata, tbl.io, scan.projection(), AlwaysTrue()).to_table([])
    deletes = int((snap.summary.get("total-delete-files") if snap.summary is not None else 0) or 0)
    files = []
    for m in snap.manifests(tbl.io):
        if m.content != ManifestContent.DATA:
            deletes = deletes or 1
            continue
        files += [e.data_file for e in m.fetch_manifest_entry(tbl.io, discard_deleted=True) if e.snapshot_id in snapshots]
    if deletes:  # merge-on-read deletes: let the scan attach them to the window's data files
        paths = {f.file_path for f in files}
        tasks = [t for t in scan.plan_files() if t.file.file_path in paths]
    else:
        tasks = [FileScanTask(f) for f in files]
    return ArrowScan(tbl.metadata, tbl.io, scan.projection(), AlwaysTrue(), limit=sample_rows or None).to_table(tasks)


def check_quality(tbl, *, key_columns: list[str], sample_rows: int = 0, fork_snapshot_id: int | None = None,
                  since: datetime | None = None) -> CheckResult:
    """``fork_snapshot_id`` / ``since``: the window (rows added after the fork, from ``since`` on)."""
    if tbl is None:
        return CheckResult.errored("quality", "the table does not exist yet: run the legacy side first")
    if SHADOW_BRANCH not in tbl.metadata.refs:
        return CheckResult.errored("quality", f"branch {SHADOW_BRANCH} does not exist: start the shadow first")
    main_id, shadow_id = Catalog.head(tbl, MAIN), Catalog.head(tbl, SHADOW_BRANCH)
    ls, ss = _schema(tbl, main_id), _schema(tbl, shadow_id)
    findings: list[Finding] = schema_findings(ls, ss)
    lt = window_rows(tbl, MAIN, window_snapshots(tbl, MAIN, fork=fork_snapshot_id, since=since), sample_rows)
    st = window_rows(tbl, SHADOW_BRANCH, window_snapshots(tbl, SHADOW_BRANCH, fork=fork_snapshot_id, since=since),
                     sample_rows)
    columns = [n for n, _ in ls]
    row_count = lt.num_rows if not sample_rows else None
    suite = expectation_suite(columns, list(key_columns), row_count)
    lo = _outcomes("legacy", lt.to_pandas(), suite)
    so = _outcomes("shadow", st.to_pandas(), suite)
    more, shared_issues = compare(lo, so)
    findings += more
    metrics = {"legacy_rows_checked": lt.num_rows, "shadow_rows_checked": st.num_rows, "expectations": len(so),
               "shared_data_issues": shared_issues, "sample_rows": sample_rows or None, "rows": "window"}
    return CheckResult.from_findings("quality", findings, metrics)
