"""Parity: run the checks per ingestion, apply waivers, store every run, keep streaks."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Iterable

from sqlalchemy import insert, select

from checks import spark_checks
from checks.counts import check_counts
from checks.jobparity import applicable, check_fire_times
from checks.ledger import check_ledger
from checks.model import CHECKS, ERROR, FAIL, PASS, CheckResult, combine
from checks.quality import check_quality
from checks.runs import check_runs
from checks.spark_checks import has_shadow, processor_for
from checks.value_window import check_values

from cutover.core.iceberg import MAIN, SHADOW_BRANCH, Catalog
from cutover.core.progress import track
from cutover.core.records.ledger import Ledger
from cutover.core.redact import redact_text
from cutover.core.state import states
from cutover.core.state.models import cutover_states as t_states, parity_results as t_results, shadow_forks as t_forks
from cutover.core.state.waivers import WaiverStore

log = logging.getLogger("cutover.parity")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class IngestionParity:
    id: str
    verdict: str
    checks: list[CheckResult]
    streak: int = 0
    fork_snapshot_id: int | None = None
    table: str | None = None
    heads: dict[str, int | None] = field(default_factory=dict)  # branch -> head snapshot judged (reports)

    def as_dict(self) -> dict:
        return {"id": self.id, "verdict": self.verdict, "streak": self.streak, "table": self.table,
                "heads": self.heads, "checks": [c.as_dict() for c in self.checks]}


@dataclass
class ParityReport:
    parity_run_id: str
    generated_at: datetime
    since: datetime | None
    until: datetime
    ingestions: list[IngestionParity] = field(default_factory=list)
    series: dict[str, dict] = field(default_factory=dict)  # per ingestion: runs over time, for plots

    @property
    def verdict(self) -> str:
        verdicts = [i.verdict for i in self.ingestions]
        if FAIL in verdicts:
            return FAIL
        if ERROR in verdicts:
            return ERROR
        return PASS

    def as_dict(self) -> dict:
        return {
            "verdict": self.verdict,
            "generated_at": self.generated_at.isoformat(),
            "window": {"since": self.since.isoformat() if self.since else None, "until": self.until.isoformat()},
            "parity_run_id": self.parity_run_id,
            "ingestions": [i.as_dict() for i in self.ingestions],
        }


def fork_of(state_engine, ingestion_id: str) -> tuple[int | None, datetime | None]:
    """(fork snapshot id, when the shadow was forked) or (None, None)."""
    with state_engine.connect() as conn:
        row = conn.execute(select(t_forks.c.fork_snapshot_id, t_forks.c.created_at)
                           .where(t_forks.c.ingestion_id == ingestion_id)).first()
    if not row:
        return None, None
    at = row[1] if row[1] is None or row[1].tzinfo else row[1].replace(tzinfo=timezone.utc)
    return row[0], at


def _job_checks(ws, job, checks: list[str], *, since, until, fork, forked_at, thresholds) -> list[CheckResult]:
    """The checks that apply to a generic job (see checks.jobparity), in the order asked."""
    names = applicable(job, checks)
    if not names:
        return [CheckResult.errored(c, f"{job.id} is a {job.kind} job declared shadow: {job.shadow}; the checks that "
                                       f"apply to it: {', '.join(applicable(job, list(CHECKS)))}") for c in checks]
    shadow_start = forked_at or _in_state_since(ws, job.id, states.SHADOW)
    start = max(t for t in (since, shadow_start) if t is not None) if (since or shadow_start) else None
    out = []
    for name in names:
        if name == "runs" and job.shadow == "observe":
            res = _guard(name, lambda: check_fire_times(
                job, ws.runs.list(ingestion_id=job.id, since=start, orchestrator="legacy", mode="live"),
                since=start or until - timedelta(days=1), until=until, thresholds=thresholds))
        elif name == "runs":
            res = _guard(name, lambda: check_runs(
                ws.runs.list(ingestion_id=job.id, since=start, orchestrator="legacy", mode="live"),
                ws.runs.list(ingestion_id=job.id, since=start, orchestrator="prefect", mode="shadow"),
                until=until, thresholds=thresholds))
        elif name == "ledger":
            res = _guard(name, lambda: check_ledger(ws.autoloader_engine, job.id, since=since, until=until,
                                                    grace_s=float(thresholds.get("ledger_grace", 0)),
                                                    claim_timeout_s=ws.settings.claim_timeout))
        else:
            res = _guard(name, lambda: check_counts(
                _guard_table(ws, job.table), fork_snapshot_id=fork, ingestion_id=job.id,
                live=Ledger(ws.autoloader_engine, job.id, "live", claim_timeout=0).entries(),
                shadow=Ledger(ws.autoloader_engine, job.id, "shadow", claim_timeout=0).entries()))
        out.append(res)
    return out


def _in_state_since(ws, iid: str, state: str) -> datetime | None:
    """When ``iid`` entered ``state``, if it is in it now (a job without a fork: its shadow start)."""
    with ws.state_engine.connect() as conn:
        row = conn.execute(select(t_states.c.state, t_states.c.updated_at).where(t_states.c.ingestion_id == iid)).first()
    if row is None or row[0] != state or row[1] is None:
        return None
    return row[1] if row[1].tzinfo else row[1].replace(tzinfo=timezone.utc)


def _guard(name: str, fn) -> CheckResult:
    t0 = time.perf_counter()
    try:
        res = fn()
    except Exception as e:  # noqa: BLE001 - a check that cannot run is an `error` verdict, not a crash
        log.debug("check %s failed", name, exc_info=True)
        first = str(e).splitlines()[0] if str(e) else ""
        res = CheckResult.errored(name, redact_text(f"{type(e).__name__}: {first}"))
    res.seconds = time.perf_counter() - t0
    return res


def run_parity(ws, ingestions: Iterable, *, since: datetime | None, checks: Iterable[str] = CHECKS,
               store: bool = True, now: datetime | None = None, orphan_runs: list | None = None,
               orphan_notes: list[str] | None = None) -> ParityReport:
    """``orphan_runs``: runs the orchestrators say crashed before writing a run record
    (cutover.protocol.OrphanRun, gathered by the caller through cutover.registry.orphan_runs);
    ``orphan_notes``: the sides that could not be asked."""
    checks = [c for c in CHECKS if c in set(checks)]
    until = now or utcnow()
    report = ParityReport(uuid.uuid4().hex, until, since, until)
    thresholds = ws.settings.parity
    waivers = WaiverStore(ws.state_engine)
    spark = _spark(ws)  # [ingest] engine = "spark": counts and quality through Spark Connect
    current = states.get_states(ws.state_engine)
    for ing in track(ingestions, "parity"):
        state = current.get(ing.id, states.LEGACY)
        if state in (states.CUTOVER, states.DONE):
            # Prefect is live now: there is no shadow to compare any more (and its live runs
            # would look like "missing in shadow"). Explicitly named, it is an error verdict.
            res = [CheckResult.errored(n, f"{ing.id} is {state}: parity compares legacy with a Prefect shadow; "
                                          "watch the live side with `cutover watch`") for n in checks]
            report.ingestions.append(IngestionParity(ing.id, ERROR, res))
            continue
        fork, forked_at = fork_of(ws.state_engine, ing.id)
        # runs from before the shadow existed have no counterpart by construction
        runs_since = max(t for t in (since, forked_at) if t is not None) if (since or forked_at) else None
        results: list[CheckResult] = []
        tbl = None
        if getattr(ing, "kind", None) in ("callable", "command"):  # a team's own job (checks.jobparity)
            results = _job_checks(ws, ing, checks, since=since, until=until, fork=fork, forked_at=forked_at,
                                  thresholds=thresholds)
        elif forked_at is None and not (_spark_has_shadow(spark, ing) if spark else _has_shadow(ws, ing)):
            for name in checks:
                results.append(CheckResult.errored(name, f"no shadow for {ing.id}: run `cutover shadow start {ing.id}` first"))
        else:
            tbl = None if spark else _guard_table(ws, ing.table)
            for name in checks:
                if name == "runs":
                    res = _guard(name, lambda: check_runs(
                        ws.runs.list(ingestion_id=ing.id, since=runs_since, orchestrator="legacy", mode="live"),
                        ws.runs.list(ingestion_id=ing.id, since=runs_since, orchestrator="prefect", mode="shadow"),
                        until=until, thresholds=thresholds,
                        orphans=None if orphan_runs is None else [
                            o for o in orphan_runs if o.ingestion_id == ing.id
                            and (runs_since is None or o.at is None or o.at >= runs_since)],
                        orphan_notes=orphan_notes))
                elif name == "ledger":
                    res = _guard(name, lambda: check_ledger(
                        ws.autoloader_engine, ing.id, since=since, until=until,
                        grace_s=float(thresholds.get("ledger_grace", 0)), claim_timeout_s=ws.settings.claim_timeout))
                elif name == "counts":
                    res = _guard(name, lambda: check_counts(
                        tbl, fork_snapshot_id=fork, ingestion_id=ing.id,
                        live=Ledger(ws.autoloader_engine, ing.id, "live", claim_timeout=0).entries(),
                        shadow=Ledger(ws.autoloader_engine, ing.id, "shadow", claim_timeout=0).entries()))
                elif name == "values":  # the window's data files: hashed by DuckDB, or by the Spark cluster
                    res = _guard(name, lambda: check_values(
                        (spark.iceberg_table(ing.table) if spark.iceberg else None) if spark else tbl,
                        ws.autoloader_engine, ing, fork_snapshot_id=fork, since=since, until=until,
                        spark=spark.spark if spark and spark.iceberg else None))
                elif spark:
                    res = _guard(name, lambda: spark_checks.check_quality(
                        spark, ing.table, key_columns=list(ing.key_columns),
                        sample_rows=int(thresholds.get("quality_sample_rows", 0))))
                else:
                    res = _guard(name, lambda: check_quality(tbl, key_columns=list(ing.key_columns),
                                                             sample_rows=int(thresholds.get("quality_sample_rows", 0)),
                                                             fork_snapshot_id=fork, since=since))
                results.append(res)
        for res in results:
            if res.verdict == FAIL:
                w = waivers.active_for(ing.id, res.name, at=until)
                if w is not None:
                    res.waiver = w
        heads = {b: Catalog.head(tbl, b) for b in (MAIN, SHADOW_BRANCH)} if not spark and tbl is not None else {}
        report.ingestions.append(IngestionParity(ing.id, combine(results), results, fork_snapshot_id=fork,
                                                 table=ing.table, heads=heads))
        report.series[ing.id] = _series(ws, ing.id, since)
    if store:
        _store(ws.state_engine, report)
    for ip in report.ingestions:
        ip.streak = streak(ws.state_engine, ip.id) if store else (1 if ip.verdict == PASS else 0)
    return report


def _spark(ws):
    """The Spark processor when the workspace runs on Spark, else None (no pyspark import)."""
    if getattr(ws.settings, "engine", "arrow") != "spark":
        return None
    return processor_for(ws)


def _spark_has_shadow(proc, ing) -> bool:
    try:
        return has_shadow(proc, ing.table)
    except Exception:  # noqa: BLE001 - the checks report why (unreachable cluster, ...)
        return True


def _has_shadow(ws, ing) -> bool:
    tbl = ws.catalog.find(ing.table)
    return tbl is not None and "cutover-shadow" in tbl.metadata.refs


def _guard_table(ws, name):
    try:
        return ws.catalog.find(name)
    except Exception:  # noqa: BLE001 - the checks report the missing table as an error
        return None


def _series(ws, ingestion_id: str, since) -> dict:
    runs = ws.runs.list(ingestion_id=ingestion_id, since=since)
    out = {"legacy": [], "shadow": []}
    for r in sorted(runs, key=lambda r: r.started_at):
        side = "legacy" if (r.orchestrator, r.mode) == ("legacy", "live") else "shadow" if (r.orchestrator, r.mode) == ("prefect", "shadow") else None
        if side and r.status != "RUNNING":
            out[side].append({"at": r.started_at.isoformat(), "records": r.records_ingested,
                              "duration_s": r.duration_s, "status": r.status})
    return out


def _store(engine, report: ParityReport) -> None:
    with engine.begin() as conn:
        for ip in report.ingestions:
            conn.execute(insert(t_results).values(
                parity_run_id=report.parity_run_id, ingestion_id=ip.id, run_at=report.generated_at,
                verdict=ip.verdict, report=ip.as_dict()))


def streak(engine, ingestion_id: str) -> int:
    """Consecutive `pass` verdicts, newest first."""
    with engine.connect() as conn:
        verdicts = conn.execute(select(t_results.c.verdict).where(t_results.c.ingestion_id == ingestion_id)
                                .order_by(t_results.c.run_at.desc(), t_results.c.id.desc()).limit(1000)).scalars().all()
    n = 0
    for v in verdicts:
        if v != PASS:
            break
        n += 1
    return n


def history(engine, ingestion_id: str | None = None, limit: int = 50) -> list[dict]:
    q = select(t_results.c.parity_run_id, t_results.c.ingestion_id, t_results.c.run_at, t_results.c.verdict,
               t_results.c.report).order_by(t_results.c.run_at.desc(), t_results.c.id.desc()).limit(limit)
    if ingestion_id:
        q = q.where(t_results.c.ingestion_id == ingestion_id)
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    out = []
    for r in rows:
        findings = sum(len(c.get("findings", [])) for c in (r.report or {}).get("checks", []))
        at = r.run_at if r.run_at.tzinfo else r.run_at.replace(tzinfo=timezone.utc)
        out.append({"parity_run_id": r.parity_run_id, "ingestion": r.ingestion_id, "at": at.isoformat(),
                    "verdict": r.verdict, "findings": findings})
    return out
