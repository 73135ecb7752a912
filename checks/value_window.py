"""The rows of one parity window, per side: which Iceberg data files to read for the values check.

A window's rows are never found by scanning the table. They are the data files that the
window's commits added, known from two pieces of metadata:

1. **the ledger** (per-file provenance): every source file both sides ingested (SUCCESS on
   both, not a baseline seeded at the fork), processed within the window on either side,
   contributes on each side the data files its ledger row recorded (``data_files``; for rows
   from before batch commits, the data files its own snapshot added). A source file that only
   one side has ingested, or that is still in flight, is the ledger check's finding, not
   compared here (else every in-flight file would look like missing rows);
2. **the snapshots' manifests**: data files in the branch's current state, added after the fork
   by a snapshot of the window, that no ledger row owns — rows appended by hand, twice, by a
   shadow write on main, or the rewritten remainder of a file whose rows were deleted. They
   belong to their side, so such rows surface as rows on one side, duplicates or changed values.

Only data files in the branch's *current* state are read (a data file replaced by a delete or
an overwrite is not), from the branch head's manifests, which snapshot expiry never removes.
Local paths (``file://`` or plain) are read by DuckDB directly; any other file system through
pyiceberg's FileIO as an Arrow dataset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import unquote, urlparse

from sqlalchemy import select

from checks.model import CheckResult
from checks.spark_values import compare_on_spark
from checks.values import check_result, compare, spec_for
from cutover.core.errors import InputError
from cutover.core.icebatch import P_BATCH, live_data_files
from cutover.core.iceberg import MAIN, SHADOW_BRANCH, Catalog
from cutover.core.records.ledger import SKIPPED, SUCCESS
from cutover.core.records.tables import processed_files as t_pf


@dataclass
class WindowFiles:
    legacy: list[str] = field(default_factory=list)  # data file paths (URIs) on main
    shadow: list[str] = field(default_factory=list)  # ... on the cutover-shadow branch
    source_files: int = 0  # source files both sides ingested in the window
    one_side: dict[str, int] = field(default_factory=dict)  # legacy|shadow -> source files only that side ingested
    unowned: dict[str, int] = field(default_factory=dict)  # legacy|shadow -> data files no ledger row owns
    replaced: dict[str, int] = field(default_factory=dict)  # legacy|shadow -> recorded data files gone from the branch

    def metrics(self) -> dict:
        return {"source_files": self.source_files, "data_files_legacy": len(self.legacy),
                "data_files_shadow": len(self.shadow), "source_files_one_side": self.one_side,
                "unowned_data_files": self.unowned, "replaced_data_files": self.replaced}


def _utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt.astimezone(timezone.utc) if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _in_window(at: datetime | None, since: datetime | None, until: datetime) -> bool:
    at = _utc(at)
    return at is not None and at <= until and (since is None or at >= since)


def _chunks(items: list, n: int = 500):
    for i in range(0, len(items), n):
        yield items[i:i + n]


def window_files(tbl, autoloader_engine, ingestion_id: str, *, fork_snapshot_id: int | None,
                 since: datetime | None, until: datetime) -> WindowFiles:
    """The data files to read per side. The ledger is queried for the window only (never read
    whole): the rows processed in the window, their counterparts, and the rows that own the
    data files the window's snapshots added."""
    since, until = _utc(since), _utc(until)
    cols = (t_pf.c.ingestion_id, t_pf.c.namespace, t_pf.c.path, t_pf.c.status, t_pf.c.data_files,
            t_pf.c.snapshot_id, t_pf.c.error)
    with autoloader_engine.connect() as conn:
        q = select(t_pf.c.path).where(t_pf.c.ingestion_id == ingestion_id, t_pf.c.status == SUCCESS,
                                      t_pf.c.processed_at.is_not(None), t_pf.c.processed_at <= until)
        if since is not None:
            q = q.where(t_pf.c.processed_at >= since)
        in_window = sorted(set(conn.execute(q).scalars()))
        rows = []  # every row of those paths, both namespaces (counterparts outside the window too)
        for chunk in _chunks(in_window):
            rows += conn.execute(select(*cols).where(t_pf.c.ingestion_id == ingestion_id,
                                                     t_pf.c.path.in_(chunk))).all()
    live = {r.path: r for r in rows if r.namespace == "live" and r.status == SUCCESS}
    shadow = {r.path: r for r in rows if r.namespace == "shadow" and r.status == SUCCESS}
    baseline = {r.path for r in rows if r.namespace == "shadow" and r.status == SKIPPED
                and (r.error or "").startswith("baseline")}
    window = [p for p in in_window if p not in baseline]
    both = [p for p in window if p in live and p in shadow]
    out = WindowFiles(source_files=len(both))
    out.one_side = {"legacy": sum(1 for p in window if p in live and p not in shadow),
                    "shadow": sum(1 for p in window if p in shadow and p not in live)}
    for side, branch, entries in (("legacy", MAIN, live), ("shadow", SHADOW_BRANCH, shadow)):
        present = live_data_files(tbl, branch)
        by_snap: dict[int, list[str]] = {}
        for path, p in present.items():
            if p.snapshot_id is not None:
                by_snap.setdefault(p.snapshot_id, []).append(path)
        files: list[str] = []
        replaced = 0
        for src in both:
            r = entries[src]
            if r.data_files:
                files += [d for d in r.data_files if d in present]
                replaced += sum(1 for d in r.data_files if d not in present)
            elif r.snapshot_id is not None:  # committed before batch commits: its own snapshot's data files
                files += by_snap.get(r.snapshot_id, [])
        out.replaced[side] = replaced
        out.unowned[side] = 0
        # data files the window's snapshots added on this branch that no ledger row (of any
        # ingestion writing this table) owns
        snaps = {i.snapshot_id: i for i in Catalog.ancestry(tbl, branch, stop_at=fork_snapshot_id)
                 if _in_window(datetime.fromtimestamp(i.timestamp_ms / 1000, timezone.utc), since, until)}
        candidates = sorted({f for sid in snaps for f in by_snap.get(sid, [])} - set(files))
        if candidates:
            batches = sorted({i.properties[P_BATCH] for i in snaps.values() if i.properties.get(P_BATCH)})
            owned: set[str] = set()
            with autoloader_engine.connect() as conn:
                for chunk in _chunks(batches):
                    for dfs in conn.execute(select(t_pf.c.data_files).where(t_pf.c.batch_id.in_(chunk))).scalars():
                        owned.update(dfs or ())
                for chunk in _chunks(sorted(snaps)):
                    for sid, dfs in conn.execute(select(t_pf.c.snapshot_id, t_pf.c.data_files)
                                                 .where(t_pf.c.snapshot_id.in_(chunk))).all():
                        owned.update(dfs or by_snap.get(sid, []))
            extra = [f for f in candidates if f not in owned]
            out.unowned[side] = len(extra)
            files += extra
        setattr(out, side, sorted(set(files)))
    return out


def readable(tbl, paths: list[str]):
    """``paths`` as something checks.values.compare reads: local file paths as a list (DuckDB
    streams them), else an Arrow dataset over pyiceberg's file system for their scheme."""
    if not paths:
        return []
    parsed = [urlparse(p) for p in paths]
    if all(u.scheme in ("", "file") for u in parsed):
        return [unquote(u.path) if u.scheme == "file" else p for u, p in zip(parsed, paths)]
    import pyarrow.dataset as ds

    if not hasattr(tbl.io, "fs_by_scheme"):
        raise RuntimeError(f"data files at {parsed[0].scheme}:// need pyiceberg's PyArrowFileIO "
                           f"(the catalog uses {type(tbl.io).__name__})")
    locs = [tbl.io.parse_location(p) for p in paths]
    fs = tbl.io.fs_by_scheme(locs[0][0], locs[0][1])
    return ds.dataset([path for _, _, path in locs], filesystem=fs, format="parquet")


def check_values(tbl, autoloader_engine, ing, *, fork_snapshot_id: int | None, since: datetime | None,
                 until: datetime, memory_limit: str = "1GB", spark=None):
    """The ``values`` check of one ingestion and window (checks/values.py does the comparing;
    with ``spark``, a Spark Connect session, the hashing pass runs on the cluster:
    checks/spark_values.py)."""
    if tbl is None:
        return CheckResult.errored("values", "the table does not exist yet: run the legacy side first")
    if SHADOW_BRANCH not in tbl.metadata.refs:
        return CheckResult.errored("values", f"branch {SHADOW_BRANCH} does not exist: start the shadow first")
    try:
        spec = spec_for(ing.values, ing.key_columns)
    except InputError as e:
        return CheckResult.errored("values", f"{ing.id}: {e.one_line()}")
    wf = window_files(tbl, autoloader_engine, ing.id, fork_snapshot_id=fork_snapshot_id, since=since, until=until)
    if spark is not None:  # the data files are read where they are, by the cluster
        diff = compare_on_spark(spark, wf.legacy, wf.shadow, spec, memory_limit=memory_limit)
    else:
        diff = compare(readable(tbl, wf.legacy), readable(tbl, wf.shadow), spec, memory_limit=memory_limit)
    return check_result(diff, metrics={**wf.metrics(), "engine": "spark" if spark is not None else "duckdb"})
