"""Seeding the shadow ledger at the fork.

The shadow branch starts as a copy of main at the fork snapshot, so the files
whose rows are already in that snapshot must not be ingested again by the
shadow: they are entered in the shadow ledger namespace as SKIPPED baseline
rows. Which files those are comes from the live ledger (each file's data files)
and the shadow branch's current manifests, not from snapshot summaries, so an
expiry before ``shadow start`` changes nothing. Files the legacy side FAILED before the fork are copied as FAILED (same
size/etag), so the shadow retries them exactly when legacy would: when they
change. Files legacy processes after the fork are left for the shadow to
process -- those are what parity compares.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from cutover.core.db import write_tx
from cutover.core.icebatch import live_data_files
from cutover.core.iceberg import P_FILE, P_INGESTION, P_MODE, SHADOW_BRANCH, snapshot_info
from cutover.core.records.ledger import BASELINE, FAILED, SKIPPED
from cutover.core.records.tables import processed_files as t_pf


def _in_fork(tbl, ingestion, fork_snapshot_id: int | None, live: dict) -> dict[str, int | None]:
    """Files of this ingestion whose rows are in the shadow branch as forked: path -> snapshot id.

    From the ledger and the table's current state: a live ledger row whose data files are all
    in the shadow branch's current manifests (the branch holds everything main held at the
    fork, and shadow runs only add data files of their own) -- so it holds after any snapshot
    expiry. Rows from before batch commits (no data files recorded) fall back to the
    per-file snapshots of the fork's ancestry, where they still exist."""
    out: dict[str, int | None] = {}
    if tbl is None:
        return out
    if SHADOW_BRANCH in tbl.metadata.refs:
        present = live_data_files(tbl, SHADOW_BRANCH)
        for path, lr in live.items():
            if lr.status == "SUCCESS" and lr.data_files and all(d in present for d in lr.data_files):
                out[path] = present[lr.data_files[0]].snapshot_id
    if fork_snapshot_id is not None:
        by_id = {s.snapshot_id: s for s in tbl.metadata.snapshots}
        sid = fork_snapshot_id
        while sid is not None and sid in by_id:
            info = snapshot_info(by_id[sid])
            p = info.properties
            if p.get(P_FILE) and p.get(P_MODE) == "live" and p.get(P_INGESTION, ingestion.id) == ingestion.id:
                out.setdefault(p[P_FILE], info.snapshot_id)
            sid = info.parent_id
    return out


def seed_baseline(ws, ingestion, fork_snapshot_id: int | None, *, dry_run: bool = False) -> dict[str, int]:
    """Idempotent; returns how many rows were (or would be) seeded per status."""
    tbl = ws.catalog.find(ingestion.table)
    engine = ws.autoloader_engine
    with engine.connect() as conn:
        live = {r.path: r for r in conn.execute(select(t_pf).where(
            t_pf.c.ingestion_id == ingestion.id, t_pf.c.namespace == "live"))}
        have = set(conn.execute(select(t_pf.c.path).where(
            t_pf.c.ingestion_id == ingestion.id, t_pf.c.namespace == "shadow")).scalars())
    in_fork = _in_fork(tbl, ingestion, fork_snapshot_id, live)
    fork_time = None
    if tbl is not None and fork_snapshot_id is not None and tbl.metadata.snapshot_by_id(fork_snapshot_id) is not None:
        fork_time = datetime.fromtimestamp(tbl.metadata.snapshot_by_id(fork_snapshot_id).timestamp_ms / 1000, timezone.utc)
    rows = []
    now = datetime.now(timezone.utc)
    for path, sid in in_fork.items():
        if path in have:
            continue
        lr = live.get(path)
        rows.append(dict(ingestion_id=ingestion.id, namespace="shadow", path=path, size=lr.size if lr else None,
                         etag=lr.etag if lr else None, mtime=lr.mtime if lr else None, status=SKIPPED,
                         records_ingested=lr.records_ingested if lr else None, snapshot_id=sid, error=BASELINE,
                         batch_id=lr.batch_id if lr else None, data_files=lr.data_files if lr else None,
                         attempts=0, processed_at=now))
    for path, lr in live.items():
        if path in have or path in in_fork or lr.status != FAILED:
            continue
        processed = lr.processed_at if lr.processed_at is None or lr.processed_at.tzinfo else lr.processed_at.replace(tzinfo=timezone.utc)
        if fork_time is not None and processed is not None and processed > fork_time:
            continue
        rows.append(dict(ingestion_id=ingestion.id, namespace="shadow", path=path, size=lr.size, etag=lr.etag,
                         mtime=lr.mtime, status=FAILED, records_ingested=0, error=f"baseline: {lr.error}",
                         attempts=0, processed_at=processed or now))
    counts = {SKIPPED: sum(1 for r in rows if r["status"] == SKIPPED), FAILED: sum(1 for r in rows if r["status"] == FAILED)}
    if dry_run or not rows:
        return counts
    pg = engine.dialect.name == "postgresql"
    with write_tx(engine) as conn:
        for r in rows:
            stmt = (postgresql.insert(t_pf) if pg else sqlite.insert(t_pf)).values(**r)
            conn.execute(stmt.on_conflict_do_nothing(index_elements=["ingestion_id", "namespace", "path"]))
    return counts


__all__ = ["seed_baseline"]
