"""Counts check: Iceberg records added on main since the shadow fork vs records
added on the cutover-shadow branch since the fork, total and per file, from
metadata only (no data scan).

Per file (pyiceberg tables, given both ledger namespaces): each source file's data
files, recorded in its ledger row, looked up in the *current* manifests of its
branch (``record_count`` per data file) -- evidence that snapshot expiry never
removes, so the figures are the same before and after ``expire_snapshots``.
Totals: ``total-records`` of the branch head minus that of the fork snapshot,
which the ``cutover-fork`` tag keeps through expiry. Data files in a branch that
no ledger row accounts for are reported (appended twice, or by hand). Evidence
that is gone anyway (a fork snapshot expired without its tag, per-file snapshots
of rows from before batch commits) makes the check an ``error`` naming it, never
a pass on partial figures.

Spark tables and callers without the ledger: the per-file snapshot summaries
(``added-records`` of snapshots carrying ``cutover.file``), as before batch commits.

A snapshot on ``main`` since the fork whose summary says the shadow wrote it
(``cutover.mode`` = ``shadow``) is a ``shadow_write_on_main`` finding naming the snapshot,
its writer (``cutover.orchestrator``, ``cutover.run-id``) and the rows it added: the shadow
must only ever write its branch.
"""

from __future__ import annotations

from collections import defaultdict

from checks.model import CheckResult, Finding
import re

from cutover.core.icebatch import P_BATCH, live_data_files
from cutover.core.iceberg import MAIN, P_FILE, P_INGESTION, P_MODE, P_ORCH, P_RUN, SHADOW_BRANCH, Catalog, snapshot_info
from cutover.core.records.ledger import SUCCESS, is_baseline

PER_FILE_METRICS_MAX = 1000  # per-file figures kept in the metrics up to this many files
_UUID = re.compile(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.[a-z]+$")


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


def shadow_writes_on_main(tbl, fork: int | None) -> list[Finding]:
    """Snapshots on main since the fork that the shadow wrote (their summary's ``cutover.mode``)."""
    out = []
    for info in Catalog.ancestry(tbl, MAIN, stop_at=fork):
        p = info.properties
        if p.get(P_MODE) != "shadow":
            continue
        writer = {"snapshot_id": info.snapshot_id, "orchestrator": p.get(P_ORCH), "run_id": p.get(P_RUN),
                  "mode": p.get(P_MODE), "file": p.get(P_FILE), "added_records": info.added_records}
        out.append(Finding("shadow_write_on_main", file=p.get(P_FILE), shadow=writer,
                           detail=f"snapshot {info.snapshot_id} on main was written by the shadow "
                                  f"({p.get(P_ORCH) or 'unknown orchestrator'}, run {p.get(P_RUN) or 'unknown'}, "
                                  f"{info.added_records} records): the shadow must only write {SHADOW_BRANCH}"))
    return list(reversed(out))


def check_counts(tbl, *, fork_snapshot_id: int | None, ingestion_id: str, live=None, shadow=None) -> CheckResult:
    """``live`` / ``shadow``: the ingestion's ledger entries per namespace (enables the
    manifest-based per-file figures; see the module doc)."""
    if tbl is None:
        return CheckResult.errored("counts", "the table does not exist yet: run the legacy side first")
    if SHADOW_BRANCH not in tbl.metadata.refs:
        return CheckResult.errored("counts", f"branch {SHADOW_BRANCH} does not exist: start the shadow first")
    res = _check_counts(tbl, fork_snapshot_id=fork_snapshot_id, ingestion_id=ingestion_id, live=live, shadow=shadow)
    if res.verdict != "error":
        on_main = shadow_writes_on_main(tbl, fork_snapshot_id)
        if on_main:
            res = CheckResult.from_findings("counts", on_main + res.findings,
                                            {**res.metrics, "shadow_writes_on_main": len(on_main)})
    return res


def _check_counts(tbl, *, fork_snapshot_id: int | None, ingestion_id: str, live=None, shadow=None) -> CheckResult:
    if live is not None and shadow is not None and hasattr(tbl, "io"):
        return _check_counts_manifests(tbl, fork_snapshot_id=fork_snapshot_id, ingestion_id=ingestion_id,
                                       live=live, shadow=shadow)
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


def _total(tbl, sid: int | None) -> int | None:
    if sid is None:
        return 0
    snap = tbl.metadata.snapshot_by_id(sid)
    return None if snap is None else (snapshot_info(snap).total_records or 0)


def _check_counts_manifests(tbl, *, fork_snapshot_id, ingestion_id: str, live, shadow) -> CheckResult:
    fork = fork_snapshot_id
    if fork is not None and tbl.metadata.snapshot_by_id(fork) is None:
        return CheckResult.errored("counts", f"the fork snapshot {fork} has been expired (and no cutover-fork tag kept it): "
                                             "records added since the fork cannot be computed")
    baseline = {e.path for e in shadow if is_baseline(e)}
    sides = {}
    gone: list[str] = []
    for name, branch, entries in (("main", MAIN, [e for e in live if e.path not in baseline]),
                                  ("shadow", SHADOW_BRANCH, [e for e in shadow if not is_baseline(e)])):
        present = live_data_files(tbl, branch)
        per_file: dict[str, int] = {}
        missing: dict[str, int] = {}
        old: list = []
        owned: set[str] = set()
        for e in entries:
            if e.status != SUCCESS:
                continue
            if not e.data_files:  # committed before batch commits: a per-file snapshot
                old.append(e)
                continue
            owned.update(e.data_files)
            hits = [present[d].record_count for d in e.data_files if d in present]
            if len(hits) == len(e.data_files):
                per_file[e.path] = sum(hits)
            else:  # rows deleted or the file rewritten on this branch: count what is left of it
                missing[e.path] = len(e.data_files) - len(hits)
                per_file[e.path] = sum(hits)
        if old:
            by_file: dict[str, list[int]] = defaultdict(list)
            mode = "live" if name == "main" else "shadow"
            for info in Catalog.ancestry(tbl, branch, stop_at=fork):
                p = info.properties
                if p.get(P_FILE) and p.get(P_MODE) == mode and p.get(P_INGESTION, ingestion_id) == ingestion_id:
                    by_file[p[P_FILE]].append(info.added_records)
            for e in old:
                if e.path in by_file:
                    per_file[e.path] = sum(by_file[e.path])
                else:
                    gone.append(f"{name}: {e.path} (snapshot {e.snapshot_id})")
        sides[name] = (present, per_file, missing, owned)
    if gone:
        return CheckResult.errored("counts", f"the per-file snapshots of {len(gone)} file(s) committed before batch "
                                             f"commits have been expired, e.g. {gone[0]}: their counts cannot be "
                                             "compared (run parity before expiring, or re-baseline the shadow)")
    findings: list[Finding] = []
    main_present, main_files, main_missing, main_owned = sides["main"]
    sh_present, sh_files, sh_missing, sh_owned = sides["shadow"]
    all_live = {d for e in live for d in (e.data_files or [])}
    batch_ids = {e.batch_id for e in list(live) + list(shadow) if e.batch_id}
    for name, present, owned, others in (("main", main_present, main_owned, set()),
                                         ("cutover-shadow", sh_present, sh_owned, all_live)):
        old_snaps: dict[str, set] = defaultdict(set)  # per-file-snapshot era: source file -> adding snapshots
        for path, p in present.items():
            if path in owned or path in others or path in all_live:
                continue
            snap = tbl.metadata.snapshot_by_id(p.snapshot_id) if p.snapshot_id is not None else None
            props = snapshot_info(snap).properties if snap is not None else {}
            m = _UUID.search(path)
            if props.get(P_FILE):
                if props.get(P_INGESTION, ingestion_id) == ingestion_id and \
                        props.get(P_MODE) == ("live" if name == "main" else "shadow"):
                    old_snaps[props[P_FILE]].add(p.snapshot_id)
            elif props.get(P_BATCH) or (m and m.group(1) in batch_ids):  # any cutover batch: a ledger row should own it
                findings.append(Finding("file_processed_twice", file=None, detail=f"{name} holds data file {path} "
                                        f"({p.record_count} records) of a cutover batch that no ledger row accounts for"))
        batch_era = {e.path for e in (live if name == "main" else shadow) if e.data_files}
        for src, snaps in sorted(old_snaps.items()):
            if len(snaps) > 1 or src in batch_era:
                copies = len(snaps) + (src in batch_era)
                other = int(src in (sh_files if name == "main" else main_files))
                findings.append(Finding("file_processed_twice", file=src, legacy=copies if name == "main" else other,
                                        shadow=other if name == "main" else copies,
                                        detail=f"{name} holds this file's rows from {len(snaps)} snapshot(s) "
                                               f"{sorted(snaps)}{' besides its batch data files' if src in batch_era else ''}"))
    for path in sorted(set(main_files) | set(sh_files)):
        m, s = main_files.get(path, 0), sh_files.get(path, 0)
        gone_note = "; ".join(f"{miss[path]} of its data file(s) no longer in {side} (rows deleted or rewritten)"
                              for side, miss in (("main", main_missing), ("cutover-shadow", sh_missing)) if path in miss)
        if m != s or gone_note:
            findings.append(Finding("row_count_mismatch", file=path, legacy=m, shadow=s,
                                    detail=f"records added for this file: main {m}, cutover-shadow {s}"
                                           + (f"; {gone_note}" if gone_note else "")))
    fork_total = _total(tbl, fork)
    main_total = (_total(tbl, Catalog.head(tbl, MAIN)) or 0) - (fork_total or 0)
    sh_total = (_total(tbl, Catalog.head(tbl, SHADOW_BRANCH)) or 0) - (fork_total or 0)
    if main_total != sh_total:
        findings.append(Finding("row_count_mismatch", file=None, legacy=main_total, shadow=sh_total,
                                detail=f"records added since the fork: main {main_total}, cutover-shadow {sh_total}"))
    files = set(main_files) | set(sh_files)
    metrics = {"fork_snapshot_id": fork, "main_added_records": main_total, "shadow_added_records": sh_total,
               "files": len(files), "source": "manifests+ledger",
               "main_data_files": len(main_present), "shadow_data_files": len(sh_present)}
    if len(files) <= PER_FILE_METRICS_MAX:
        metrics["per_file"] = {p: [main_files.get(p), sh_files.get(p)] for p in sorted(files)}
    return CheckResult.from_findings("counts", findings, metrics)
