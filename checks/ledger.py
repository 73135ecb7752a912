"""Ledger check: per file, the live ledger (legacy) vs the shadow ledger (Prefect).

Files judged: those processed within the window on either side, minus files
seeded as baseline at the shadow fork, minus files still in flight on either
side, minus files younger than the grace period (their counterpart may simply
not have run yet).

The comparison runs inside the database as one GROUP BY path over a covering
index, read in order (no join, no sort): only the differences travel back, so
ten million entries per side never become Python objects. SKIPPED rows in the
shadow namespace are the baseline seeded at the fork (nothing else writes
SKIPPED there).
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


def _grouped(ingestion_id: str, since: datetime | None, cutoff: datetime):
    """One row per path with both namespaces side by side: a GROUP BY over the covering index
    (ingestion_id, path, namespace, status, records, processed_at), read in index order, so
    the database streams it in one pass without sorting or joining."""
    live = t_pf.c.namespace == "live"
    shadow = t_pf.c.namespace == "shadow"

    def pick(cond, col):
        return func.max(case((cond, col), else_=None))

    g = (select(
        t_pf.c.path.label("path"),
        func.sum(case((live, 1), else_=0)).label("has_l"),
        func.sum(case((shadow, 1), else_=0)).label("has_s"),
        pick(live, t_pf.c.status).label("l_status"), pick(shadow, t_pf.c.status).label("s_status"),
        pick(live, t_pf.c.records_ingested).label("l_records"), pick(shadow, t_pf.c.records_ingested).label("s_records"),
        pick(live, t_pf.c.processed_at).label("l_at"), pick(shadow, t_pf.c.processed_at).label("s_at"),
    ).where(t_pf.c.ingestion_id == ingestion_id, t_pf.c.namespace.in_(("live", "shadow")))
        .group_by(t_pf.c.path).subquery("g"))

    def in_window(at):
        cond = and_(at.is_not(None), at <= cutoff)
        return and_(cond, at >= since) if since is not None else cond

    kind = case(
        (g.c.has_s == 0, literal("file_missing_in_shadow")),
        (g.c.has_l == 0, literal("file_missing_in_legacy")),
        (g.c.l_status != g.c.s_status, literal("status_mismatch")),
        (and_(g.c.l_status == SUCCESS, func.coalesce(g.c.l_records, -1) != func.coalesce(g.c.s_records, -1)),
         literal("records_mismatch")),
        else_=literal("ok"),
    ).label("kind")
    where = and_(
        or_(in_window(g.c.l_at), in_window(g.c.s_at)),
        func.coalesce(g.c.s_status, "") != SKIPPED,  # SKIPPED in the shadow ledger = baseline seeded at the fork
        func.coalesce(g.c.l_status, "") != PROCESSING,
        func.coalesce(g.c.s_status, "") != PROCESSING,
    )
    return g, kind, where


def _brief(status, records, run_id, error) -> dict:
    return {"status": status, "records": records, "run_id": run_id, "error": error}


def _details(engine, ingestion_id: str, paths: list[str]) -> dict[tuple[str, str], dict]:
    """Run id and error of the differing files only (by the unique key)."""
    out = {}
    with engine.connect() as conn:
        for i in range(0, len(paths), 500):
            chunk = paths[i:i + 500]
            for r in conn.execute(select(t_pf.c.path, t_pf.c.namespace, t_pf.c.run_id, t_pf.c.error).where(
                    t_pf.c.ingestion_id == ingestion_id, t_pf.c.path.in_(chunk))):
                out[(r.path, r.namespace)] = {"run_id": r.run_id, "error": r.error}
    return out


def check_ledger(engine, ingestion_id: str, *, since: datetime | None, until: datetime, grace_s: float = 0.0,
                 max_findings: int = MAX_FINDINGS) -> CheckResult:
    since, cutoff = _utc(since), _utc(until - timedelta(seconds=grace_s))
    g, kind, where = _grouped(ingestion_id, since, cutoff)
    with engine.connect() as conn:
        by_kind = dict(conn.execute(select(kind, func.count()).select_from(g).where(where).group_by(kind)).all())
        rows = []
        if any(k != "ok" for k in by_kind):  # a second pass only when something differs
            rows = conn.execute(select(g, kind).where(where, kind != "ok").order_by(g.c.path).limit(max_findings)).all()
        baseline = conn.execute(select(func.count()).select_from(t_pf).where(
            t_pf.c.ingestion_id == ingestion_id, t_pf.c.namespace == "shadow", t_pf.c.status == SKIPPED)).scalar()
    details = _details(engine, ingestion_id, [r.path for r in rows])
    findings = []
    for r in rows:
        lx, sx = details.get((r.path, "live"), {}), details.get((r.path, "shadow"), {})
        le = _brief(r.l_status, r.l_records, lx.get("run_id"), lx.get("error"))
        se = _brief(r.s_status, r.s_records, sx.get("run_id"), sx.get("error"))
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
