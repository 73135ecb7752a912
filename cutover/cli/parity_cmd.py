from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import click

from cutover.cli.app import App, pass_app
from cutover.core.errors import EXIT_FAIL, InputError
from cutover.core.workspace import Workspace


def _formats(text: str) -> list[str]:
    from checks.report import FORMATS

    out = [f.strip() for f in text.split(",") if f.strip()]
    bad = [f for f in out if f not in FORMATS]
    if bad or not out:
        raise InputError(f"unknown report format(s) {', '.join(bad) or '(none)'}", fix=f"use {','.join(FORMATS)}")
    return out


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("ingestion_ids", nargs=-1)
@click.option("--since", default="24h", show_default=True, help="Window: runs and files of the last DURATION; 'fork' = since the shadow fork.")
@click.option("--format", "fmt", default="text", show_default=True, help="Comma-separated: text,json,md,html,junit.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), help="Write one report file per format here.")
@click.option("--checks", "checks_", default="runs,ledger,counts,quality", show_default=True)
@click.option("--no-store", is_flag=True, help="Do not record this run in the parity history.")
@click.option("--limit", type=int, default=30, show_default=True, help="With `history`: rows to show.")
@pass_app
def parity(app: App, ingestion_ids, since, fmt, out_dir, checks_, no_store, limit) -> None:
    """Verdict per ingestion from runs, ledgers, Iceberg counts and data quality.

    Exit 0 when every ingestion passes, 1 when any fails or a check could not
    run. `cutover parity history [INGESTION]` shows stored verdicts and streaks.
    """
    from checks.model import CHECKS, PASS

    ws = Workspace(app.settings)
    if ingestion_ids and ingestion_ids[0] == "history":
        return _history(app, ws, ingestion_ids[1:], limit)
    formats = _formats(fmt)
    chosen = [c.strip() for c in checks_.split(",") if c.strip()]
    if not chosen or any(c not in CHECKS for c in chosen):
        raise InputError(f"--checks {checks_!r} names an unknown check", fix=f"use {','.join(CHECKS)}")
    if since == "fork":
        window = None
    else:
        from cutover.core.config import parse_duration

        window = datetime.now(timezone.utc) - timedelta(seconds=parse_duration(since, what="--since"))
    if ingestion_ids:
        items = ws.ingestions.resolve(ingestion_ids)
    else:  # every ingestion with a shadow to compare: those in SHADOW
        from cutover.core.state import states

        current = states.get_states(ws.state_engine)
        items = [i for i in ws.ingestions.list() if current.get(i.id) == states.SHADOW]
        if not items:
            raise InputError("no ingestion is in SHADOW: there is nothing to compare",
                             fix="start shadows with `cutover shadow start`, or name ingestions explicitly")
    from checks.parity import run_parity
    from checks.report import render_html, render_json, render_junit, render_md, render_text, write_reports

    report = run_parity(ws, items, since=window, checks=chosen, store=not no_store)
    d = report.as_dict()
    if out_dir:
        for p in write_reports(d, formats, out_dir, report.series):
            app.info(f"wrote {p}")
        app.echo(render_text(d))
    else:
        for f in formats:
            app.echo({"text": lambda: render_text(d), "json": lambda: render_json(d), "md": lambda: render_md(d),
                      "html": lambda: render_html(d, report.series), "junit": lambda: render_junit(d)}[f]())
    if report.verdict != PASS:
        raise click.exceptions.Exit(EXIT_FAIL)


def _history(app: App, ws, ids, limit) -> None:
    from checks.parity import history, streak

    if len(ids) > 1:
        raise InputError("history takes at most one ingestion", fix="cutover parity history [INGESTION]")
    iid = ids[0] if ids else None
    if iid:
        ws.ingestions.get(iid)
    rows = history(ws.state_engine, iid, limit)
    if not rows:
        app.echo("no parity runs stored yet: run `cutover parity`")
        return
    streaks = {r["ingestion"]: streak(ws.state_engine, r["ingestion"]) for r in rows}
    app.table([(r["at"][:19], r["ingestion"], r["verdict"], r["findings"], r["parity_run_id"][:12]) for r in rows],
              ("at (UTC)", "ingestion", "verdict", "findings", "parity run"))
    app.echo("clean streaks: " + ", ".join(f"{k} {v}" for k, v in sorted(streaks.items())))


@click.command()
@click.argument("ingestion_id")
@click.option("--check", "check", required=True, type=click.Choice(["runs", "ledger", "counts", "quality"]))
@click.option("--reason", required=True)
@click.option("--owner", required=True)
@click.option("--expires", required=True, help="YYYY-MM-DD (end of day UTC) or an ISO date-time.")
@click.option("--dry-run", is_flag=True)
@pass_app
def waive(app: App, ingestion_id, check, reason, owner, expires, dry_run) -> None:
    """Waive one check of one ingestion until a date (it expires by itself)."""
    from cutover.core.state.waivers import WaiverStore, parse_expiry

    ws = Workspace(app.settings)
    ws.ingestions.get(ingestion_id)
    exp = parse_expiry(expires)
    if dry_run:
        app.echo(f"would waive {check} for {ingestion_id} until {exp.isoformat()} (owner {owner}): {reason}")
        return
    wid = WaiverStore(ws.state_engine).add(ingestion_id, check, reason=reason, owner=owner, expires_at=exp)
    from cutover.core.state.audit import record

    record(ws.state_engine, "waive", target=f"{ingestion_id}:{check}", reason=reason,
           detail={"waiver_id": wid, "owner": owner, "expires_at": exp.isoformat()})
    app.echo(f"waiver {wid}: {check} of {ingestion_id} waived until {exp.isoformat()} (owner {owner})")


@click.group()
def waivers() -> None:
    """List and remove waivers."""


@waivers.command("list")
@click.option("--all", "all_", is_flag=True, help="Include expired waivers.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def waivers_list(app: App, all_, as_json) -> None:
    from cutover.core.state.waivers import WaiverStore

    rows = WaiverStore(Workspace(app.settings).state_engine).list(include_expired=all_)
    if as_json:
        app.json(rows)
    elif not rows:
        app.echo("no waivers")
    else:
        app.table([(w["id"], w["ingestion"], w["check"], w["owner"], w["expires_at"][:19], "expired" if w["expired"] else "active",
                    w["reason"]) for w in rows], ("id", "ingestion", "check", "owner", "expires (UTC)", "state", "reason"))


@waivers.command("remove")
@click.argument("waiver_id", type=int)
@click.option("--dry-run", is_flag=True)
@pass_app
def waivers_remove(app: App, waiver_id, dry_run) -> None:
    from cutover.core.state.waivers import WaiverStore

    ws = Workspace(app.settings)
    store = WaiverStore(ws.state_engine)
    if dry_run:
        match = [w for w in store.list(include_expired=True) if w["id"] == waiver_id]
        if not match:
            raise InputError(f"no waiver {waiver_id}", fix="see `cutover waivers list --all`")
        app.echo(f"would remove waiver {waiver_id}")
        return
    w = store.remove(waiver_id)
    from cutover.core.state.audit import record

    record(ws.state_engine, "unwaive", target=f"{w['ingestion']}:{w['check']}", detail={"waiver_id": waiver_id})
    app.echo(f"removed waiver {waiver_id}")
