"""Read-only views: runs, ledger, Iceberg counts (the work: cutover.commands.ingestions)."""

from __future__ import annotations

from datetime import datetime, timezone

import click

from cutover.cli.app import App, pass_app
from cutover.commands import ingestions as C
from cutover.core.workspace import Workspace


def _t(dt: datetime | None) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if dt else ""


@click.command()
@click.option("--ingestion", "ingestion_id", help="Only this ingestion.")
@click.option("--since", help="Only runs started within this window, e.g. 24h.")
@click.option("--orchestrator", type=click.Choice(["legacy", "prefect"]))
@click.option("--mode", type=click.Choice(["live", "shadow"]))
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def runs(app: App, ingestion_id, since, orchestrator, mode, limit, as_json) -> None:
    """Run records, newest first."""
    res = C.runs(Workspace(app.settings), ingestion_id=ingestion_id, since=since, orchestrator=orchestrator,
                 mode=mode, limit=limit)
    if as_json:
        app.json(res.as_dict())
        return
    if not res.records:
        app.echo("no runs")
        return
    app.table([(r.id[:12], r.ingestion_id, r.orchestrator, r.mode, r.trigger, r.status, _t(r.started_at),
                f"{r.duration_s:.2f}s" if r.duration_s is not None else "", r.files_processed, r.files_failed,
                r.files_skipped, r.records_ingested) for r in res.records],
              ("run", "ingestion", "orch", "mode", "trigger", "status", "started (UTC)", "took", "files", "failed",
               "skipped", "records"))


@click.command()
@click.argument("ingestion_id")
@click.option("--namespace", type=click.Choice(["live", "shadow"]), default="live", show_default=True)
@click.option("--status", type=click.Choice(["PROCESSING", "SUCCESS", "FAILED", "SKIPPED"]))
@click.option("--summary", is_flag=True, help="Counts per status only.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def ledger(app: App, ingestion_id, namespace, status, summary, as_json) -> None:
    """The processed-file ledger of one ingestion and namespace."""
    res = C.ledger(Workspace(app.settings), ingestion_id, namespace=namespace, status=status, summary=summary)
    if as_json:
        app.json(res.as_dict())
        return
    if res.counts is not None:
        app.echo(", ".join(f"{k} {v}" for k, v in sorted(res.counts.items())) or "empty")
        return
    if not res.entries:
        app.echo("ledger is empty")
        return
    app.table([(e.path, e.status, e.records_ingested if e.records_ingested is not None else "", e.size,
                (e.run_id or e.claimed_by or "")[:12], _t(e.processed_at or e.claimed_at), e.error or "")
               for e in res.entries],
              ("file", "status", "records", "bytes", "run", "at (UTC)", "error"))


@click.group()
def table() -> None:
    """Iceberg tables of the ingestions."""


@table.command("counts")
@click.argument("ingestion_ids", nargs=-1)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def counts(app: App, ingestion_ids, as_json) -> None:
    """Row counts per branch from snapshot metadata (no scan)."""
    out = C.table_counts(Workspace(app.settings), ingestion_ids).tables
    if as_json:
        app.json(out)
        return
    app.table([(o["ingestion"], o["table"], o["main_total_records"] if o["exists"] else "(no table yet)",
                o["main_snapshots"] or "", "" if o["shadow_total_records"] is None else o["shadow_total_records"])
               for o in out],
              ("ingestion", "table", "rows (main)", "snapshots", "rows (cutover-shadow)"))


@table.command("maintain")
@click.argument("ingestion_id")
@click.option("--retain", default="24h", show_default=True, help="Expire snapshots older than this (ref heads are kept).")
@click.option("--orphan-age", default="1h", show_default=True,
              help="Remove unreferenced files only when older than this (in-flight batches write files first).")
@click.option("--dry-run", is_flag=True, help="Show what would be expired and removed; change nothing.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def maintain(app: App, ingestion_id, retain, orphan_age, dry_run, as_json) -> None:
    """Expire old snapshots, remove orphan and old metadata files (safe while both sides ingest)."""
    from cutover.commands.table import maintain as do_maintain

    res = do_maintain(Workspace(app.settings), ingestion_id, retain=retain, orphan_age=orphan_age, dry_run=dry_run)
    if as_json:
        app.json(res.as_dict())
        return
    verb = "would expire" if dry_run else "expired"
    app.echo(f"{res.table}: {verb} {res.snapshots_expired} of {res.snapshots_before} snapshot(s), kept refs "
             f"{', '.join(sorted(res.kept_refs))}; {'would remove' if dry_run else 'removed'} {res.orphans_removed} "
             f"orphan file(s) and {res.metadata_files_removed} old metadata file(s), {res.orphan_bytes / 1e6:.1f} MB; "
             f"metadata {res.metadata_bytes_before / 1e6:.1f} MB -> {res.metadata_bytes_after / 1e6:.1f} MB")
    app.echo(f"compaction: {res.compaction}")


@table.command("snapshots")
@click.argument("table_name")
@click.option("--branch", default="main", show_default=True)
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def snapshots(app: App, table_name, branch, limit, as_json) -> None:
    """Snapshots of a branch, newest first, with their cutover properties."""
    res = C.table_snapshots(Workspace(app.settings), table_name, branch=branch, limit=limit)
    if as_json:
        app.json(res.as_dict())
        return
    app.table([(s.snapshot_id, datetime.fromtimestamp(s.timestamp_ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
                s.added_records, s.total_records, s.properties.get("cutover.orchestrator", ""),
                s.properties.get("cutover.mode", ""), (s.run_id or "")[:12],
                s.file or (f"batch {s.properties['cutover.batch'][:8]}: {s.properties.get('cutover.batch-files', '?')} file(s)"
                           if s.properties.get("cutover.batch") else "")) for s in res.snapshots],
              ("snapshot", "at (UTC)", "added", "total", "orch", "mode", "run", "file(s)"))
