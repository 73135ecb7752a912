"""Ledger check: per file, the live ledger (legacy) vs the shadow ledger (Prefect).

Files judged: those processed within the window on either side, minus files
seeded as baseline at the shadow fork, minus files still in flight on either
side, minus files younger than the grace period (their counterpart may simply
not have run yet).

The comparison runs inside the database as one FULL OUTER JOIN of the two
namespaces on the file path (SQLite >= 3.39 and PostgreSQL both have it), so
only the differences travel back: ten million entries per side never become
Python objects.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, case, func, literal, not_, or_, select

from checks.model import CheckResult, Finding
from legacy.ledger import PROCESSING, SKIPPED, SUCCESS
from legacy.models import processed_files as t_pf

MAX_FINDINGS = 10_000


def _utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt.astimezone(timezone.utc) if dt.tzinfo else dt


def _joined(ingestion_id: str, since: datetime | None, cutoff: datetime):
    l = select(t_pf.c.path, t_pf.c.status, t_pf.c.records_ingested.label("records"), t_pf.c.run_id, t_pf.c.error,
               t_pf.c.processed_at).where(t_pf.c.ingestion_id == ingestion_id, t_pf.c.namespace == "live").subquery("l")
    s = select(t_pf.c.path, t_pf.c.status, t_pf.c.records_ingested.label("records"), t_pf.c.run_id, t_pf.c.error,
               t_pf.c.processed_at).where(t_pf.c.ingestion_id == ingestion_id, t_pf.c.namespace == "shadow").subquery("s")

    def in_window(side):
        cond = and_(side.c.processed_at.is_not(None), side.c.processed_at <= cutoff)
        return and_(cond, side.c.processed_at >= since) if since is not None else cond

    kind = case(
        (s.c.path.is_(None), literal("file_missing_in_shadow")),
        (l.c.path.is_(None), literal("file_missing_in_legacy")),
        (l.c.status != s.c.status, literal("status_mismatch")),
        (and_(l.c.status == SUCCESS, func.coalesce(l.c.records, -1) != func.coalesce(s.c.records, -1)),
         literal("records_mismatch")),
        else_=literal("ok"),
    ).label("kind")
    baseline = and_(s.c.status == SKIPPED, s.c.error.like("baseline%"))
    where = and_(
        or_(in_window(l), in_window(s)),
        not_(func.coalesce(baseline, False)),
        func.coalesce(l.c.status, "") != PROCESSING,
        func.coalesce(s.c.status, "") != PROCESSING,
    )
    cols = [func.coalesce(l.c.path, s.c.path).label("path"), kind,
            l.c.status.label("l_status"), l.c.records.label("l_records"), l.c.run_id.label("l_run"), l.c.error.label("l_error"),
            s.c.status.label("s_status"), s.c.records.label("s_records"), s.c.run_id.label("s_run"), s.c.error.label("s_error")]
    return l.join(s, l.c.path == s.c.path, full=True), cols, where, kind


def _brief(status, records, run_id, error) -> dict:
    return {"status": status, "records": records, "run_id": run_id, "error": error}


def check_ledger(engine, ingestion_id: str, *, since: datetime | None, until: datetime, grace_s: float = 0.0,
                 max_findings: int = MAX_FINDINGS) -> CheckResult:
    since, cutoff = _utc(since), _utc(until - timedelta(seconds=grace_s))
    joined, cols, where, kind = _joined(ingestion_id, since, cutoff)
    with engine.connect() as conn:
        by_kind = dict(conn.execute(select(kind, func.count()).select_from(joined).where(where).group_by(kind)).all())
        rows = conn.execute(select(*cols).select_from(joined).where(where, kind != "ok")
                            .order_by(cols[0]).limit(max_findings)).all()
        baseline = conn.execute(select(func.count()).select_from(t_pf).where(
            t_pf.c.ingestion_id == ingestion_id, t_pf.c.namespace == "shadow", t_pf.c.status == SKIPPED,
            t_pf.c.error.like("baseline%"))).scalar()
    findings = []
    for r in rows:
        le = _brief(r.l_status, r.l_records, r.l_run, r.l_error)
        se = _brief(r.s_status, r.s_records, r.s_run, r.s_error)
        if r.kind == "file_missing_in_shadow":
            findings.append(Finding(r.kind, file=r.path, legacy=le, detail=f"legacy {r.l_status}, shadow never saw the file"))
        elif r.kind == "file_missing_in_legacy":
            findings.append(Finding(r.kind, file=r.path, shadow=se, detail=f"shadow {r.s_status}, legacy never saw the file"))
        elif r.kind == "status_mismatch":
            findings.append(Finding(r.kind, file=r.path, legacy=le, shadow=se, detail=f"legacy {r.l_status}, shadow {r.s_status}"))
        else:
            findings.append(Finding(r.kind, file=r.path, legacy=r.l_records, shadow=r.s_records,
                                    detail=f"legacy {r.l_records} records, shadow {r.s_records}"))
    differing = sum(n for k, n in by_kind.items() if k != "ok")
    metrics = {"files_judged": sum(by_kind.values()), "differing_files": differing, "baseline_files": baseline,
               "by_kind": {k: n for k, n in sorted(by_kind.items()) if k != "ok"}}
    if differing > len(findings):
        metrics["findings_truncated_to"] = len(findings)
    return CheckResult.from_findings("ledger", findings, metrics)
