"""parity [check] ID..., parity history, waive, waivers list|remove (the work: cutover.commands.verdicts)."""

from __future__ import annotations

from pathlib import Path

import click

from cutover.cli.app import App, DefaultGroup, exit_with, pass_app
from cutover.commands import verdicts as C
from cutover.core.workspace import Workspace


@click.group(cls=DefaultGroup, default="check")
def parity() -> None:
    """Verdict per ingestion from runs, ledgers, Iceberg counts and data quality.

    `cutover parity [ID...]` runs the checks (`parity check`); `cutover parity history
    [INGESTION]` shows stored verdicts and streaks.
    """


@parity.command("check")
@click.argument("ingestion_ids", nargs=-1)
@click.option("--since", default="24h", show_default=True, help="Window: runs and files of the last DURATION; 'fork' = since the shadow fork.")
@click.option("--format", "fmt", default="text", show_default=True, help="Comma-separated: text,json,md,html,junit.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), help="Write one report file per format here.")
@click.option("--checks", "checks_", default=C.DEFAULT_CHECKS, show_default=True)
@click.option("--no-store", is_flag=True, help="Do not record this run in the parity history.")
@pass_app
def check(app: App, ingestion_ids, since, fmt, out_dir, checks_, no_store) -> None:
    """Verdict per ingestion (default: every ingestion in SHADOW).

    Exit 0 when every ingestion passes, 1 when any fails or a check could not
    run. `cutover parity history [INGESTION]` shows stored verdicts and streaks.
    """
    formats = C.report_formats(fmt)
    res = C.parity(Workspace(app.settings), ingestion_ids, since=since, checks=checks_, store=not no_store,
                   formats=formats, out_dir=out_dir)
    if out_dir:
        for p in res.written:
            app.info(f"wrote {p}")
        app.echo(res.render("text"))
    else:
        for f in formats:
            app.echo(res.render(f))
    exit_with(res.exit_code)


@parity.command("history")
@click.argument("ingestion_id", required=False)
@click.option("--limit", type=int, default=30, show_default=True, help="Rows to show.")
@click.option("--json", "as_json", is_flag=True, help="{rows: [...], streaks: {ingestion: n}} (docs/json.md).")
@pass_app
def history(app: App, ingestion_id, limit, as_json) -> None:
    """Stored verdicts, newest first, and each ingestion's clean streak."""
    res = C.parity_history(Workspace(app.settings), ingestion_id, limit=limit)
    if as_json:
        app.json({"rows": res.rows, "streaks": res.streaks})
        return
    if not res.rows:
        app.echo("no parity runs stored yet: run `cutover parity`")
        return
    app.table([(r["at"], r["ingestion"], r["verdict"], r["findings"], r["parity_run_id"][:12]) for r in res.rows],
              ("at", "ingestion", "verdict", "findings", "parity run"))
    app.echo("clean streaks: " + ", ".join(f"{k} {v}" for k, v in sorted(res.streaks.items())))


@click.command()
@click.argument("ingestion_id")
@click.option("--check", "check", required=True, type=click.Choice(["runs", "ledger", "counts", "values", "quality"]))
@click.option("--reason", required=True)
@click.option("--owner", required=True)
@click.option("--expires", required=True, help="YYYY-MM-DD (end of day UTC) or an ISO date-time.")
@click.option("--dry-run", is_flag=True)
@pass_app
def waive(app: App, ingestion_id, check, reason, owner, expires, dry_run) -> None:
    """Waive one check of one ingestion until a date (it expires by itself)."""
    w = C.waive(Workspace(app.settings), ingestion_id, check, reason=reason, owner=owner, expires=expires,
                dry_run=dry_run)
    if dry_run:
        app.echo(f"would waive {check} for {ingestion_id} until {w.expires_at.isoformat()} (owner {owner}): {reason}")
        return
    app.echo(f"waiver {w.id}: {check} of {ingestion_id} waived until {w.expires_at.isoformat()} (owner {owner})")


@click.group()
def waivers() -> None:
    """List and remove waivers."""


@waivers.command("list")
@click.option("--all", "all_", is_flag=True, help="Include expired waivers.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def waivers_list(app: App, all_, as_json) -> None:
    rows = C.waivers_list(Workspace(app.settings), include_expired=all_)
    if as_json:
        app.json(rows)
    elif not rows:
        app.echo("no waivers")
    else:
        app.table([(w["id"], w["ingestion"], w["check"], w["owner"], w["expires_at"], "expired" if w["expired"] else "active",
                    w["reason"]) for w in rows], ("id", "ingestion", "check", "owner", "expires (UTC)", "state", "reason"))


@waivers.command("remove")
@click.argument("waiver_id", type=int)
@click.option("--dry-run", is_flag=True)
@pass_app
def waivers_remove(app: App, waiver_id, dry_run) -> None:
    C.waivers_remove(Workspace(app.settings), waiver_id, dry_run=dry_run)
    app.echo(f"{'would remove' if dry_run else 'removed'} waiver {waiver_id}")
