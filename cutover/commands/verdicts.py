"""parity, parity history, waive, waivers list|remove: the verdicts that gate a cut-over."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from checks.model import CHECKS, PASS
from checks.parity import history, run_parity, streak
from checks.report import FORMATS, render_html, render_json, render_junit, render_md, render_text, write_reports
from cutover.commands.ingestions import since_time
from cutover.commands.result import Result
from cutover.core.errors import EXIT_FAIL, InputError
from cutover.core.extras import require_installed
from cutover.core.validate import check_limit
from cutover.core.state import audit, states
from cutover.core.state.waivers import WaiverStore, parse_expiry
from cutover.core.workspace import Workspace
from cutover.registry import orphan_runs

DEFAULT_CHECKS = "runs,ledger,counts,values,quality"


def report_formats(text: str) -> list[str]:
    """'text,json' -> ['text', 'json'], every one a known report format (else InputError)."""
    out = [f.strip() for f in text.split(",") if f.strip()]
    bad = [f for f in out if f not in FORMATS]
    if bad or not out:
        raise InputError(f"unknown report format(s) {', '.join(bad) or '(none)'}", fix=f"use {','.join(FORMATS)}")
    return out


def render_report(report, fmt: str) -> str:
    """A parity report (checks.model.ParityReport) as text, json, md, html (with its plots) or junit."""
    d = report.as_dict()
    if fmt == "text":
        return render_text(d)
    if fmt == "json":
        return render_json(d)
    if fmt == "md":
        return render_md(d)
    if fmt == "html":
        return render_html(d, report.series)
    if fmt == "junit":
        return render_junit(d)
    raise InputError(f"--format {fmt} is not one of {', '.join(FORMATS)}", fix=f"use {','.join(FORMATS)}")


@dataclass
class Parity(Result):
    report: object  # checks.model.ParityReport
    written: list[Path] = field(default_factory=list)  # report files, with out_dir

    @property
    def exit_code(self) -> int:
        return 0 if self.report.verdict == PASS else EXIT_FAIL

    def render(self, fmt: str) -> str:
        return render_report(self.report, fmt)

    def as_dict(self) -> dict:
        return self.report.as_dict()


def parity(ws: Workspace, ingestion_ids=(), *, since: str = "24h", checks: str = DEFAULT_CHECKS, store: bool = True,
           formats: list[str] | None = None, out_dir: Path | None = None) -> Parity:
    """The verdict per ingestion from runs, ledgers, Iceberg counts and data quality; by default
    every ingestion in SHADOW. ``since``: a duration back from now, or 'fork' (since the shadow
    fork). With ``out_dir`` one report file per format of ``formats`` is written there."""
    chosen = [c.strip() for c in checks.split(",") if c.strip()]
    if not chosen or any(c not in CHECKS for c in chosen):
        raise InputError(f"--checks {checks!r} names an unknown check", fix=f"use {','.join(CHECKS)}")
    window = None if since == "fork" else since_time(since)
    if "quality" in chosen:  # Great Expectations on both engines (Spark hands it a sample)
        require_installed("great_expectations", what="the quality parity check",
                          otherwise=f"leave it out: --checks {','.join(c for c in chosen if c != 'quality') or 'runs'}")
    if "html" in (formats or []):
        require_installed("matplotlib", what="the HTML parity report", otherwise="choose another --format")
    if ingestion_ids:
        items = ws.items.resolve(ingestion_ids)
    else:  # every ingestion with a shadow to compare: those in SHADOW
        current = states.get_states(ws.state_engine)
        items = [i for i in ws.items.list() if current.get(i.id) == states.SHADOW]
        if not items:
            raise InputError("no ingestion is in SHADOW: there is nothing to compare",
                             fix="start shadows with `cutover shadow start`, or name ingestions explicitly")
    orphans, notes = (orphan_runs(ws, since=window, ingestion_ids=[i.id for i in items])
                      if "runs" in chosen else (None, None))
    report = run_parity(ws, items, since=window, checks=chosen, store=store, orphan_runs=orphans, orphan_notes=notes)
    res = Parity(report)
    if out_dir:
        res.written = list(write_reports(report.as_dict(), formats or ["text"], out_dir, report.series))
    return res


@dataclass
class ParityHistory(Result):
    rows: list[dict]  # stored verdicts, newest first
    streaks: dict[str, int]  # ingestion -> clean streak


def parity_history(ws: Workspace, ingestion_id: str | None = None, *, limit: int = 30) -> ParityHistory:
    """Stored parity verdicts (of one ingestion, or all) and each ingestion's clean streak."""
    if ingestion_id:
        ws.items.get(ingestion_id)
    check_limit(limit)
    rows = history(ws.state_engine, ingestion_id, limit)
    return ParityHistory(rows, {r["ingestion"]: streak(ws.state_engine, r["ingestion"]) for r in rows})


@dataclass
class Waiver(Result):
    id: int | None  # None in a dry run
    ingestion: str
    check: str
    owner: str
    reason: str
    expires_at: datetime


def waive(ws: Workspace, ingestion_id: str, check: str, *, reason: str, owner: str, expires: str,
          dry_run: bool = False) -> Waiver:
    """Waive one check of one ingestion until a date (it expires by itself); audited."""
    ws.items.get(ingestion_id)
    exp = parse_expiry(expires)
    if dry_run:
        return Waiver(None, ingestion_id, check, owner, reason, exp)
    wid = WaiverStore(ws.state_engine).add(ingestion_id, check, reason=reason, owner=owner, expires_at=exp)
    audit.record(ws.state_engine, "waive", target=f"{ingestion_id}:{check}", reason=reason,
                 detail={"waiver_id": wid, "owner": owner, "expires_at": exp.isoformat()})
    return Waiver(wid, ingestion_id, check, owner, reason, exp)


def waivers_list(ws: Workspace, *, include_expired: bool = False) -> list[dict]:
    """The waivers (active ones, or all with ``include_expired``)."""
    return WaiverStore(ws.state_engine).list(include_expired=include_expired)


def waivers_remove(ws: Workspace, waiver_id: int, *, dry_run: bool = False) -> dict | None:
    """Remove a waiver (audited); returns it (None in a dry run, which only checks it exists)."""
    store = WaiverStore(ws.state_engine)
    if dry_run:
        if not [w for w in store.list(include_expired=True) if w["id"] == waiver_id]:
            raise InputError(f"no waiver {waiver_id}", fix="see `cutover waivers list --all`")
        return None
    w = store.remove(waiver_id)
    audit.record(ws.state_engine, "unwaive", target=f"{w['ingestion']}:{w['check']}", detail={"waiver_id": waiver_id})
    return w
