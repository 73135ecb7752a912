"""Runs check: legacy-live runs vs Prefect-shadow runs of one ingestion in a window.

Runs are aligned by start time (greedy nearest within the match window). Findings:
``run_missing`` (a run on one side has no partner; runs younger than the match
window are not judged yet), ``run_failed`` (a run failed where its partner did
not, beyond the allowed failure rate), ``duration_regression`` (median duration
ratio shadow/legacy above the threshold, over pairs whose legacy run took at
least ``min_duration_s`` -- sub-second runs are noise, not a regression).

``run_crashed``: a run the orchestrator itself says crashed, failed or was missed and that
left no run record (``cutover.protocol.OrphanRun``, read from each side through
``cutover.registry.orphan_runs``): reported at once, not after the match window.
"""

from __future__ import annotations

import statistics
from datetime import datetime

from checks.model import CheckResult, Finding

BAD = ("FAILED", "CRASHED")


def _brief(r) -> dict:
    return {"run_id": r.id, "status": r.status, "started_at": r.started_at.isoformat(),
            "duration_s": r.duration_s, "files": r.files_processed, "records": r.records_ingested}


def align(legacy: list, shadow: list, window_s: float) -> tuple[list[tuple], list, list]:
    """Pair runs by closest start time (closest pairs first), within the window."""
    cands = []
    for i, lr in enumerate(legacy):
        for j, sr in enumerate(shadow):
            d = abs((sr.started_at - lr.started_at).total_seconds())
            if d <= window_s:
                cands.append((d, i, j))
    cands.sort()
    used_l, used_s, pairs = set(), set(), []
    for _, i, j in cands:
        if i in used_l or j in used_s:
            continue
        used_l.add(i)
        used_s.add(j)
        pairs.append((legacy[i], shadow[j]))
    pairs.sort(key=lambda p: p[0].started_at)
    lonely_l = [r for i, r in enumerate(legacy) if i not in used_l]
    lonely_s = [r for j, r in enumerate(shadow) if j not in used_s]
    return pairs, lonely_l, lonely_s


def check_runs(legacy_runs: list, shadow_runs: list, *, until: datetime, thresholds: dict,
               orphans: list | None = None, orphan_notes: list[str] | None = None) -> CheckResult:
    """``orphans``: this ingestion's runs that left no run record (cutover.protocol.OrphanRun);
    ``orphan_notes``: the sides that could not be asked (None: orphans were not looked for)."""
    window_s = float(thresholds.get("run_match_window", 900))
    legacy = [r for r in legacy_runs if r.status != "RUNNING"]
    shadow = [r for r in shadow_runs if r.status != "RUNNING"]
    pairs, lonely_l, lonely_s = align(legacy, shadow, window_s)
    findings: list[Finding] = []
    for r in lonely_l:
        if (until - r.started_at).total_seconds() > window_s:
            findings.append(Finding("run_missing", legacy=_brief(r), detail="legacy run has no shadow run"))
    for r in lonely_s:
        if (until - r.started_at).total_seconds() > window_s:
            findings.append(Finding("run_missing", shadow=_brief(r), detail="shadow run has no legacy run"))

    diverging = [(lr, sr) for lr, sr in pairs if (sr.status in BAD) != (lr.status in BAD)]
    shadow_only_failures = [(lr, sr) for lr, sr in diverging if sr.status in BAD]
    rate = len(shadow_only_failures) / len(pairs) if pairs else 0.0
    allowed = float(thresholds.get("max_failure_rate", 0.0))
    for lr, sr in diverging:
        if sr.status in BAD and rate <= allowed:
            continue
        side = "shadow" if sr.status in BAD else "legacy"
        findings.append(Finding("run_failed", legacy=_brief(lr), shadow=_brief(sr),
                                detail=f"{side} run {(sr if side == 'shadow' else lr).status}: "
                                       f"{(sr if side == 'shadow' else lr).error or 'no error recorded'}"))

    min_d = float(thresholds.get("min_duration_s", 5.0))
    ratios = [sr.duration_s / lr.duration_s for lr, sr in pairs
              if lr.duration_s and sr.duration_s and lr.duration_s >= min_d]
    median = statistics.median(ratios) if ratios else None
    max_ratio = float(thresholds.get("max_duration_ratio", 1.5))
    if median is not None and median > max_ratio:
        findings.append(Finding("duration_regression", legacy=None, shadow=None,
                                detail=f"median shadow/legacy duration ratio {median:.2f} > {max_ratio:.2f} "
                                       f"over {len(ratios)} run pair(s)"))
    for o in sorted(orphans or (), key=lambda o: (o.at is None, o.at)):
        side = "shadow" if o.mode == "shadow" else "legacy"
        findings.append(Finding("run_crashed", **{side: o.as_dict()},
                                detail=f"{o.orchestrator} {o.mode} run {o.side_run_id} {o.status} with no run record "
                                       f"(it died before the ingestion service wrote one): {o.detail}"))
    metrics = {"legacy_runs": len(legacy), "shadow_runs": len(shadow), "matched": len(pairs),
               "shadow_failure_rate": round(rate, 4), "median_duration_ratio": round(median, 3) if median else None}
    if orphans is not None:
        metrics["orphan_runs"] = len(orphans)
    if orphan_notes:
        metrics["orchestrators_not_read"] = list(orphan_notes)
    return CheckResult.from_findings("runs", findings, metrics)
