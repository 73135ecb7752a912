"""Iceberg table maintenance that is safe while legacy and shadow ingest the table.

:func:`maintain`:

1. expire snapshots older than the retention -- pyiceberg's ``expire_snapshots`` keeps
   every ref's head; cutover's refs are ``main``, the ``cutover-shadow`` branch and the
   ``cutover-fork`` tag, so the fork snapshot parity needs stays. Retried on every commit
   conflict (a concurrent batch commit) on a reloaded table, like batch commits;
2. remove orphan files under the table's location: files no snapshot, manifest, manifest
   list or metadata file of the current metadata refers to, and older than ``orphan_age``
   -- a batch writes its data files *before* its commit, so a file younger than that may be
   about to be committed; the default (1 h) is far above a batch's time bound;
3. remove old metadata files: previous ``*.metadata.json`` older than the retention (the
   newest 10 are kept), and older than ``orphan_age`` on disk. Their entries stay in the
   metadata log (history no reader follows).

Compaction of small files: pyiceberg 0.12 has no data-file rewrite action, and cutover's
per-file provenance *is* one data file per source file (the ledger records its path), so
there is nothing to compact into without losing it; reported as not available.

Nothing is changed with ``dry_run``: the figures are what would be expired / removed (the
orphan figures leave out the files that the expiry itself would orphan).
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import urlparse

from cutover.core.icebatch import is_conflict

log = logging.getLogger("cutover.maintenance")


@dataclass
class MaintainResult:
    table: str
    dry_run: bool
    retain_s: float
    orphan_age_s: float
    snapshots_before: int = 0
    snapshots_expired: int = 0
    kept_refs: dict[str, int] = field(default_factory=dict)
    orphans_removed: int = 0
    orphan_bytes: int = 0
    metadata_files_removed: int = 0
    metadata_bytes_before: int = 0
    metadata_bytes_after: int = 0
    commit_retries: int = 0
    compaction: str = "not available: pyiceberg 0.12 has no data-file rewrite, and one data file per source file is the provenance"

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _local_dir(location: str) -> str | None:
    u = urlparse(location)
    if u.scheme in ("", "file"):
        return u.path
    return None


def _dir_bytes(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


KEEP_METADATA_LOG = 10  # the newest previous metadata files are always kept


def referenced_files(tbl, *, log_cutoff_ms: int | None = None) -> set[str]:
    """Every file the table's current metadata refers to: metadata files (current + log),
    manifest lists, manifests and data/delete files of every snapshot, statistics files.
    With ``log_cutoff_ms``, previous metadata files older than it (except the newest
    ``KEEP_METADATA_LOG``) are left out: old metadata files, removable (no reader reads the
    log; it is history)."""
    md = tbl.metadata
    out = {tbl.metadata_location}
    log_entries = sorted(md.metadata_log, key=lambda e: e.timestamp_ms)
    for i, e in enumerate(log_entries):
        if log_cutoff_ms is None or e.timestamp_ms >= log_cutoff_ms or i >= len(log_entries) - KEEP_METADATA_LOG:
            out.add(e.metadata_file)
    for st in getattr(md, "statistics", []) or []:
        out.add(st.statistics_path)
    for st in getattr(md, "partition_statistics", []) or []:
        out.add(st.statistics_path)
    seen_manifests: set[str] = set()
    for snap in md.snapshots:
        out.add(snap.manifest_list)
        for m in snap.manifests(tbl.io):
            if m.manifest_path in seen_manifests:
                continue
            seen_manifests.add(m.manifest_path)
            out.add(m.manifest_path)
            for entry in m.fetch_manifest_entry(tbl.io, discard_deleted=False):
                out.add(entry.data_file.file_path)
    return out


def _norm(path: str) -> str:
    u = urlparse(path)
    return u.path if u.scheme in ("", "file") else path


def _expire(catalog, identifier: str, cutoff: datetime, *, dry_run: bool, retries: int, res: MaintainResult):
    for attempt in range(retries + 1):
        tbl = catalog.load(identifier)
        res.snapshots_before = len(tbl.metadata.snapshots)
        res.kept_refs = {name: ref.snapshot_id for name, ref in tbl.metadata.refs.items()}
        heads = set(res.kept_refs.values())
        cutoff_ms = int(cutoff.timestamp() * 1000)
        doomed = [s.snapshot_id for s in tbl.metadata.snapshots
                  if s.timestamp_ms < cutoff_ms and s.snapshot_id not in heads]
        if dry_run or not doomed:
            res.snapshots_expired = len(doomed)
            return tbl
        try:
            tbl.maintenance.expire_snapshots().by_ids(doomed).commit()
            res.snapshots_expired = len(doomed)
            return catalog.load(identifier)
        except Exception as e:  # noqa: BLE001 - only conflicts are retried
            if not is_conflict(e) or attempt == retries:
                raise
            res.commit_retries += 1
            time.sleep(min(2.0, 0.05 * 2 ** attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")


def maintain(catalog, identifier: str, *, retain_s: float, orphan_age_s: float = 3600.0, dry_run: bool = False,
             retries: int = 12, now: datetime | None = None) -> MaintainResult:
    now = now or datetime.now(timezone.utc)
    res = MaintainResult(identifier, dry_run, retain_s, orphan_age_s)
    tbl = catalog.load(identifier)
    local = _local_dir(tbl.location())
    meta_dir = os.path.join(local, "metadata") if local else None
    if meta_dir:
        res.metadata_bytes_before = _dir_bytes(meta_dir)
    tbl = _expire(catalog, identifier, now - timedelta(seconds=retain_s), dry_run=dry_run, retries=retries, res=res)
    if local is None:
        log.warning("orphan removal only supports local (file://) warehouses for now: %s", tbl.location())
        return res
    refs = {_norm(p) for p in referenced_files(tbl, log_cutoff_ms=int((now.timestamp() - retain_s) * 1000))}
    age_cutoff = now.timestamp() - orphan_age_s
    for sub in ("data", "metadata"):
        root = os.path.join(local, sub)
        for dirpath, _, files in os.walk(root):
            for f in files:
                p = os.path.join(dirpath, f)
                try:
                    st = os.stat(p)
                except OSError:
                    continue
                if p in refs or st.st_mtime > age_cutoff:
                    continue
                if not dry_run:  # a commit since we listed only adds files younger than the age cutoff
                    try:
                        os.remove(p)
                    except OSError:
                        continue
                if sub == "metadata" and f.endswith(".metadata.json"):
                    res.metadata_files_removed += 1
                else:
                    res.orphans_removed += 1
                res.orphan_bytes += st.st_size
    res.metadata_bytes_after = _dir_bytes(meta_dir) if meta_dir else 0
    return res
