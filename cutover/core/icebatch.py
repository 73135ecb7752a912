"""Batch commits to Iceberg: many source files, one snapshot, provenance per source file.

Per batch:

1. :func:`start_writing` writes each source file's rows as its own Parquet data file
   (in pyiceberg's writer threads, while the caller reads the next files) whose name
   carries the batch id: ``00000-<n>-<batch id>.parquet``;
2. the caller records the intent in the ledger (batch id + data file paths per source
   file), then :func:`commit_batch` adds every data file in ONE fast-append snapshot whose
   summary carries ``cutover.batch`` = the batch id;
3. the caller marks the files SUCCESS.

Crash recovery (a run takes over a dead run's staged claims) asks :func:`find_data_files`
which of the recorded data files are in the branch's *current* state -- the manifests of
its head, which expiry never removes -- never the snapshot ancestry.

:func:`commit_batch` retries every conflict pyiceberg 0.12 raises on a concurrent commit:
``CommitFailedException`` (after pyiceberg's own retries), ``CommitStateUnknownException``,
and the ``ValueError: Cannot add snapshot with sequence number N older than last sequence
number N`` the SQL catalog raises when main and a branch are committed at once
(apache/iceberg#15001). Each retry reloads the table and re-applies the same data files (no
rewrite), after checking whether the batch landed meanwhile (its snapshot id in the
metadata), so a batch is never lost and never added twice.

Fencing: ``check`` (the ledger's :meth:`check_held` of the batch's claims) runs before every
attempt -- ours and pyiceberg's own retry (``memo_transaction(before_retry=...)``) -- after
the table state the attempt commits against is loaded. A run taking over a staged claim
first moves the branch head with :func:`fence_branch`. Together (see
cutover.core.records.ledger): a frozen run's batch lands before the fence snapshot or not at all.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from cutover.core.iceberg import memo_transaction, snapshot_info

log = logging.getLogger("cutover.iceberg")

P_BATCH = "cutover.batch"
P_BATCH_FILES = "cutover.batch-files"
P_FENCE = "cutover.fence"  # highest fencing token of the batch's claims (0: no claim was ever taken over)
P_FENCED = "cutover.fenced-batches"  # on a fence snapshot: the taken-over batches it fences off


def new_batch_id() -> str:
    return str(uuid.uuid4())


class _FlatWriter:
    """pyiceberg's ``write_file`` for one data file per small table, with the per-table work done
    once per batch instead of once per file (schema conversions, statistics plan, location
    provider, writer options): the same Parquet bytes and DataFile fields, ~2x less CPU per
    small file. Only for what it covers exactly -- unpartitioned tables whose column names
    need no sanitizing and arrow types that already equal the table's -- else ``None``
    (pyiceberg's own path is used)."""

    def __init__(self, tbl, batch_id: str):
        import pyarrow as pa
        from pyiceberg.io.pyarrow import (
            _get_parquet_writer_kwargs,
            compute_statistics_plan,
            parquet_path_to_id_mapping,
            schema_to_pyarrow,
        )
        from pyiceberg.schema import sanitize_column_names
        from pyiceberg.table import TableProperties
        from pyiceberg.table.locations import load_location_provider
        from pyiceberg.utils.properties import property_as_int

        md = tbl.metadata
        self.ok = md.spec().is_unpartitioned() and sanitize_column_names(md.schema()) == md.schema() and \
            md.properties.get(TableProperties.WRITE_FILE_FORMAT, "parquet").lower() == "parquet"
        if not self.ok:
            return
        self.io, self.md, self.batch_id = tbl.io, md, batch_id
        schema = md.schema()
        self.arrow_schema = schema_to_pyarrow(schema, include_field_ids=True).remove_metadata()
        self.plain_types = [f.type for f in self.arrow_schema]
        self.stats_columns = compute_statistics_plan(schema, md.properties)
        self.mapping = parquet_path_to_id_mapping(schema)
        self.kwargs = _get_parquet_writer_kwargs(md.properties)
        self.row_group_size = property_as_int(md.properties, TableProperties.PARQUET_ROW_GROUP_LIMIT,
                                              TableProperties.PARQUET_ROW_GROUP_LIMIT_DEFAULT)
        self.locations = load_location_provider(table_location=md.location, table_properties=md.properties)
        self.pa = pa

    def fits(self, t) -> bool:
        return self.ok and [f.type for f in t.schema] == self.plain_types

    def write(self, task_id: int, t):
        import pyarrow.parquet as pq
        from pyiceberg.io.pyarrow import data_file_statistics_from_parquet_metadata
        from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
        from pyiceberg.typedef import Record

        table = self.pa.Table.from_arrays(t.columns, schema=self.arrow_schema)
        path = self.locations.new_data_location(data_file_name=f"00000-{task_id}-{self.batch_id}.parquet")
        fo = self.io.new_output(path)
        with fo.create(overwrite=True) as fos:
            writer = pq.ParquetWriter(fos, schema=table.schema, store_decimal_as_integer=True, **self.kwargs)
            writer.write(table, row_group_size=self.row_group_size)
            writer.close()
        stats = data_file_statistics_from_parquet_metadata(parquet_metadata=writer.writer.metadata,
                                                           stats_columns=self.stats_columns,
                                                           parquet_column_mapping=self.mapping)
        return DataFile.from_args(content=DataFileContent.DATA, file_path=path, file_format=FileFormat.PARQUET,
                                  partition=Record(), file_size_in_bytes=len(fo), sort_order_id=None,
                                  spec_id=self.md.default_spec_id, equality_ids=None, key_metadata=None,
                                  **stats.to_serialized_dict())


def flat_writer(tbl, batch_id: str) -> _FlatWriter:
    """The per-batch writer state for :func:`start_writing` (build it once per batch)."""
    return _FlatWriter(tbl, batch_id)


def start_writing(tbl, tables: Sequence, batch_id: str, *, first_task: int = 0, writer: _FlatWriter | None = None):
    """Write each arrow table of ``tables`` (already fitted to ``tbl``'s schema) as its own data
    file, in the background (pyiceberg's writer pool): returns a function
    that waits for the files and returns them, so the caller can read the next files meanwhile.
    ``writer``: the batch's :func:`flat_writer` (else built for this call)."""
    if not tables:
        return lambda: []
    fw = writer if writer is not None else _FlatWriter(tbl, batch_id)
    if all(fw.fits(t) for t in tables):
        from pyiceberg.utils.concurrent import ExecutorFactory

        futures = [ExecutorFactory.get_or_create().submit(fw.write, first_task + i, t) for i, t in enumerate(tables)]
        return lambda: [[f.result()] for f in futures]
    from pyiceberg.io.pyarrow import pyarrow_to_schema, write_file
    from pyiceberg.table import WriteTask

    md = tbl.metadata
    schema = pyarrow_to_schema(tables[0].schema, name_mapping=md.schema().name_mapping,
                               format_version=md.format_version)
    wid = uuid.UUID(batch_id)
    tasks = [WriteTask(write_uuid=wid, task_id=first_task + i, schema=schema, record_batches=t.to_batches())
             for i, t in enumerate(tables)]
    pending = write_file(tbl.io, md, iter(tasks))  # executor.map: submitted now, one file per task, in order

    def wait() -> list[list]:
        written = list(pending)
        if len(written) != len(tables):  # pragma: no cover - guards a change in pyiceberg's writer
            raise RuntimeError(f"pyiceberg wrote {len(written)} data files for {len(tables)} tasks")
        return [[d] for d in written]

    return wait


def is_conflict(e: BaseException) -> bool:
    from pyiceberg.exceptions import CommitFailedException, CommitStateUnknownException

    if isinstance(e, (CommitFailedException, CommitStateUnknownException)):
        return True
    text = str(e)
    if isinstance(e, ValueError) and "sequence number" in text:
        return True  # apache/iceberg#15001: main and a branch committed at once
    # the SQL catalog on SQLite under concurrent writers
    return type(e).__name__ == "OperationalError" and "locked" in text


def landed(tbl, batch_id: str) -> int | None:
    """The snapshot id carrying ``batch_id`` in ``tbl``'s metadata, if any (a flat look, no ancestry)."""
    for s in reversed(tbl.metadata.snapshots):
        if s.summary is not None and s.summary.get(P_BATCH) == batch_id:
            return s.snapshot_id
    return None


def commit_batch(catalog, identifier: str, tbl, data_files: Iterable, *, branch: str, properties: dict[str, str],
                 batch_id: str, retries: int = 12, max_wait: float = 2.0, check: Callable[[], None] | None = None):
    """Add ``data_files`` to ``branch`` in one snapshot; returns (table after the commit, snapshot id).

    Retries every conflict (see the module doc) with a bounded, jittered exponential backoff,
    re-applying the same data files on a reloaded table. ``check``: the fence, called before
    every attempt on the state that attempt commits against; whatever it raises stops the commit.
    """
    data_files = list(data_files)
    props = dict(properties)
    props[P_BATCH] = batch_id
    props[P_BATCH_FILES] = str(len(data_files))
    for attempt in range(retries + 1):
        try:
            if check is not None:
                check()
            with memo_transaction(tbl, before_retry=check) as tx:
                with tx.update_snapshot(snapshot_properties=props, branch=branch).fast_append() as fa:
                    for d in data_files:
                        fa.append_data_file(d)
            return tbl, tbl.metadata.refs[branch].snapshot_id
        except Exception as e:  # noqa: BLE001 - only conflicts are retried, the rest re-raised
            if not is_conflict(e) or attempt == retries:
                raise
            wait = min(max_wait, 0.05 * 2 ** attempt) * (0.5 + random.random())
            log.warning("commit of batch %s to %s@%s conflicted (%s: %s); retrying (%d/%d) in %.2f s",
                        batch_id[:8], identifier, branch, type(e).__name__, str(e).splitlines()[0][:120],
                        attempt + 1, retries, wait)
            time.sleep(wait)
            tbl = catalog.load(identifier)
            sid = landed(tbl, batch_id)
            if sid is not None:  # an attempt whose outcome was unknown did land
                return tbl, sid
    raise AssertionError("unreachable")


def fence_branch(catalog, identifier: str, *, branch: str, properties: dict[str, str], fenced: Iterable[str],
                 retries: int = 12, max_wait: float = 2.0):
    """Move ``branch``'s head with an empty snapshot (no data file) carrying ``cutover.fenced-batches``:
    a batch staged by a run whose claims were just taken over can no longer commit against the
    head it loaded (Iceberg's ref assertion fails, and its retry re-checks the fencing tokens).
    Returns the table after the fence snapshot, the state in which to look for those batches."""
    props = dict(properties)
    props[P_FENCED] = ",".join(sorted(set(fenced)))
    tbl = catalog.load(identifier)
    for attempt in range(retries + 1):
        try:
            with memo_transaction(tbl) as tx:
                with tx.update_snapshot(snapshot_properties=props, branch=branch).fast_append():
                    pass
            return tbl
        except Exception as e:  # noqa: BLE001 - only conflicts are retried
            if not is_conflict(e) or attempt == retries:
                raise
            time.sleep(min(max_wait, 0.05 * 2 ** attempt) * (0.5 + random.random()))
            tbl = catalog.load(identifier)
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Present:
    record_count: int
    snapshot_id: int | None  # the snapshot that added the data file


def live_data_files(tbl, branch: str, *, only_added_by: int | None = None) -> dict[str, Present]:
    """Every data file in the current state of ``branch`` (its head's manifests): path -> record
    count and adding snapshot. With ``only_added_by``, only manifests that snapshot wrote."""
    from pyiceberg.manifest import ManifestContent

    ref = tbl.metadata.refs.get(branch)
    if ref is None:
        return {}
    snap = tbl.metadata.snapshot_by_id(ref.snapshot_id)
    if snap is None:
        return {}
    out: dict[str, Present] = {}
    for m in snap.manifests(tbl.io):
        if m.content != ManifestContent.DATA:
            continue
        if only_added_by is not None and m.added_snapshot_id != only_added_by:
            continue
        for entry in m.fetch_manifest_entry(tbl.io, discard_deleted=True):
            df = entry.data_file
            out[df.file_path] = Present(int(df.record_count), entry.snapshot_id)
    return out


def find_data_files(tbl, branch: str, batches: dict[str, set[str]]) -> dict[str, Present]:
    """Which of the given data files (grouped by batch id) are in ``branch``'s current state.

    A batch whose snapshot is still in the metadata is looked up in the manifests that
    snapshot wrote (one manifest); otherwise (expired, or manifests rewritten) in every
    manifest of the branch head."""
    found: dict[str, Present] = {}
    rest: set[str] = set()
    for batch_id, paths in batches.items():
        sid = landed(tbl, batch_id)
        if sid is not None:
            cur = live_data_files(tbl, branch, only_added_by=sid)
            hit = {p: cur[p] for p in paths if p in cur}
            found.update(hit)
            if len(hit) == len(paths):
                continue
        rest |= set(paths) - set(found)
    if rest:
        cur = live_data_files(tbl, branch)
        found.update({p: cur[p] for p in rest if p in cur})
    return found


def file_snapshots_flat(tbl, paths: set[str], *, mode: str, ingestion_id: str, file_prop: str, mode_prop: str,
                        ingestion_prop: str) -> dict[str, object]:
    """Per-file snapshots written before batch commits (one snapshot per file carrying the
    file's path), found in a flat pass over the metadata: path -> SnapshotInfo."""
    out: dict[str, object] = {}
    if not paths:
        return out
    for s in tbl.metadata.snapshots:
        info = snapshot_info(s)
        p = info.properties
        f = p.get(file_prop)
        if f in paths and p.get(mode_prop) == mode and p.get(ingestion_prop, ingestion_id) == ingestion_id:
            out.setdefault(f, info)
    return out
