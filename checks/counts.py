"""Counts check: Iceberg records added on main since the shadow fork vs records
added on the cutover-shadow branch since the fork, total and per file, from
snapshot metadata only (``total-records`` / ``added-records``; no data scan).
"""

from __future__ import annotations

from collections import defaultdict

from checks.model import CheckResult, Finding
from cutover.core.iceberg import MAIN, P_FILE, P_INGESTION, P_MODE, SHADOW_BRANCH, Catalog, snapshot_info


def _side(tbl, branch: str, fork: int | None, mode: str, ingestion_id: str):
    """(total records added since fork, {file: [added per snapshot]}, snapshots since fork)."""
    head = Catalog.head(tbl, branch)
    head_total = snapshot_info(tbl.metadata.snapshot_by_id(head)).total_records if head else 0
    fork_total = 0
    if fork is not None:
        fs = tbl.metadata.snapshot_by_id(fork)
        fork_total = snapshot_info(fs).total_records if fs else 0
    per_file: dict[str, list[int]] = defaultdict(list)
    n = 0
    for info in Catalog.ancestry(tbl, branch, stop_at=fork):
        n += 1
        p = info.properties
        if p.get(P_FILE) and p.get(P_MODE) == mode and p.get(P_INGESTION, ingestion_id) == ingestion_id:
            per_file[p[P_FILE]].append(info.added_records)
    return (head_total or 0) - (fork_total or 0), per_file, n


def check_counts(tbl, *, fork_snapshot_id: int | None, ingestion_id: str) -> CheckResult:
    if tbl is None:
        return CheckResult.errored("counts", "the table does not exist yet: run the legacy side first")
    if SHADOW_BRANCH not in tbl.metadata.refs:
        return CheckResult.errored("counts", f"branch {SHADOW_BRANCH} does not exist: start the shadow first")
    main_total, main_files, main_n = _side(tbl, MAIN, fork_snapshot_id, "live", ingestion_id)
    sh_total, sh_files, sh_n = _side(tbl, SHADOW_BRANCH, fork_snapshot_id, "shadow", ingestion_id)
    findings: list[Finding] = []
    for path in sorted(set(main_files) | set(sh_files)):
        m, s = main_files.get(path, []), sh_files.get(path, [])
        if len(m) > 1:
            findings.append(Finding("file_processed_twice", file=path, legacy=len(m), shadow=len(s),
                                    detail=f"main has {len(m)} snapshots of this file"))
        if len(s) > 1:
            findings.append(Finding("file_processed_twice", file=path, legacy=len(m), shadow=len(s),
                                    detail=f"cutover-shadow has {len(s)} snapshots of this file"))
        if sum(m) != sum(s):
            findings.append(Finding("row_count_mismatch", file=path, legacy=sum(m), shadow=sum(s),
                                    detail=f"records added for this file: main {sum(m)}, cutover-shadow {sum(s)}"))
    if main_total != sh_total:
        findings.append(Finding("row_count_mismatch", file=None, legacy=main_total, shadow=sh_total,
                                detail=f"records added since the fork: main {main_total}, cutover-shadow {sh_total}"))
    metrics = {"fork_snapshot_id": fork_snapshot_id, "main_added_records": main_total,
               "shadow_added_records": sh_total, "main_snapshots": main_n, "shadow_snapshots": sh_n,
               "files": len(set(main_files) | set(sh_files))}
    return CheckResult.from_findings("counts", findings, metrics)
