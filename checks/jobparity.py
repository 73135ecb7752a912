"""Parity for a team's own jobs (callable, command), by how the job is shadowed.

- ``observe``: Prefect does not run the job during shadow, so there is no shadow run to compare.
  The ``runs`` check becomes :func:`check_fire_times`: every scheduled legacy run in the window
  must start at a fire time of the *translated Prefect schedule* (within a tolerance: the
  scheduler's latency, plus the legacy job's jitter), every such fire time must have a legacy run
  (a missed or absent one is a finding), and failed legacy runs are reported.
- ``env``: legacy live runs vs Prefect shadow runs (``checks.runs``: alignment, status, duration).
- ``sdk``: the same, plus the ledger and counts checks of a reference ingestion on the job's
  table (the job claims and appends through ``cutover.sdk``).

Checks that do not apply to a job (quality and values everywhere; ledger and counts without the
sdk) are left out of its verdict; asking only for those is an ``error`` naming what applies.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from checks.model import CheckResult, Finding

TOLERANCE_S = 120.0  # a legacy scheduler starts a run this late at most, when healthy
GRACE_S = 300.0  # a fire time this recent may not have its run record yet


def applicable(job, checks: list[str]) -> list[str]:
    ok = {"runs"}
    if job.shadow == "sdk" and job.table:
        ok |= {"ledger", "counts"}
    return [c for c in checks if c in ok]


def check_fire_times(job, legacy_runs: list, *, since: datetime, until: datetime, thresholds: dict) -> CheckResult:
    """Legacy run records of an observe-only job against the fire times of its translated schedule."""
    from cutover.core.schedule.translate import translate
    from cutover.core.schedule.verify import prefect_fire_times

    if job.schedule is None:
        return CheckResult.from_findings("runs", [], {"schedule": "manual", "legacy_runs": len(legacy_runs)})
    jitter = float((job.schedule or {}).get("jitter") or 0)
    tol = float(thresholds.get("fire_time_tolerance", TOLERANCE_S)) + jitter
    fires, _ = prefect_fire_times(translate(job.schedule, job.timezone), since - timedelta(seconds=tol), until)
    scheduled = sorted((r for r in legacy_runs if r.trigger == "scheduled"), key=lambda r: r.started_at)
    findings: list[Finding] = []
    used: set[int] = set()
    for r in scheduled:
        near = [i for i, f in enumerate(fires) if i not in used and abs((r.started_at - f).total_seconds()) <= tol]
        if not near:
            findings.append(Finding("fire_time_mismatch", legacy=_brief(r), detail=f"legacy run started at "
                                    f"{r.started_at.isoformat()}, not within {tol:g}s of a fire time of the "
                                    "Prefect schedule"))
            continue
        used.add(near[0])
        if r.status in ("FAILED", "CRASHED", "MISSED"):
            findings.append(Finding("run_failed", legacy=_brief(r),
                                    detail=f"legacy run {r.status}: {r.error or 'no error recorded'}"))
    for i, f in enumerate(fires):
        if i in used or f < since or (until - f).total_seconds() < GRACE_S:
            continue
        findings.append(Finding("run_missing", detail=f"fire time {f.isoformat()} of the Prefect schedule has no "
                                                      "legacy run"))
    metrics = {"fire_times": sum(1 for f in fires if f >= since), "legacy_scheduled_runs": len(scheduled),
               "matched": len(used), "tolerance_s": tol, "observe_only": True}
    return CheckResult.from_findings("runs", findings, metrics)


def _brief(r) -> dict:
    return {"run_id": r.id, "status": r.status, "started_at": r.started_at.isoformat()}
