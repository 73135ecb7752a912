"""Ledger check: per file, the live ledger (legacy) vs the shadow ledger (Prefect).

Files judged: those processed within the window on either side, minus files
seeded as baseline at the shadow fork, minus files still in flight on either
side, minus files younger than the grace period (their counterpart may simply
not have run yet).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from checks.model import CheckResult, Finding
from legacy.ledger import PROCESSING, SUCCESS, is_baseline


def _brief(e) -> dict:
    return {"status": e.status, "records": e.records_ingested, "run_id": e.run_id, "error": e.error}


def check_ledger(live: list, shadow: list, *, since: datetime | None, until: datetime, grace_s: float = 0.0) -> CheckResult:
    live_by = {e.path: e for e in live}
    shadow_by = {e.path: e for e in shadow}
    cutoff = until - timedelta(seconds=grace_s)

    def in_window(e) -> bool:
        t = e.processed_at
        return t is not None and (since is None or t >= since) and t <= cutoff

    baseline = {p for p, e in shadow_by.items() if is_baseline(e)}
    candidates = sorted({p for p, e in live_by.items() if in_window(e)} | {p for p, e in shadow_by.items() if in_window(e)})
    findings: list[Finding] = []
    judged = 0
    for path in candidates:
        if path in baseline:
            continue
        le, se = live_by.get(path), shadow_by.get(path)
        if (le and le.status == PROCESSING) or (se and se.status == PROCESSING):
            continue
        judged += 1
        if se is None:
            findings.append(Finding("file_missing_in_shadow", file=path, legacy=_brief(le),
                                    detail=f"legacy {le.status}, shadow never saw the file"))
        elif le is None:
            findings.append(Finding("file_missing_in_legacy", file=path, shadow=_brief(se),
                                    detail=f"shadow {se.status}, legacy never saw the file"))
        elif le.status != se.status:
            findings.append(Finding("status_mismatch", file=path, legacy=_brief(le), shadow=_brief(se),
                                    detail=f"legacy {le.status}, shadow {se.status}"))
        elif le.status == SUCCESS and le.records_ingested != se.records_ingested:
            findings.append(Finding("records_mismatch", file=path, legacy=le.records_ingested,
                                    shadow=se.records_ingested,
                                    detail=f"legacy {le.records_ingested} records, shadow {se.records_ingested}"))
    metrics = {"files_judged": judged, "live_entries": len(live), "shadow_entries": len(shadow),
               "baseline_files": len(baseline)}
    return CheckResult.from_findings("ledger", findings, metrics)
