"""Iceberg metadata read through Spark, shaped like pyiceberg's so the same code walks it.

``SELECT ... FROM cat.ns.tbl.snapshots`` and ``... .refs`` (statements from
:mod:`cutover.core.spark.sql`) return rows; :func:`table_from_rows` turns them into a
:class:`SparkIcebergTable` whose ``metadata`` has what ``checks.counts`` and
``cutover.core.iceberg.Catalog.ancestry`` use from a pyiceberg table (``refs[name].snapshot_id``,
``snapshots``, ``snapshot_by_id``, each snapshot's ``snapshot_id`` / ``parent_snapshot_id`` /
``timestamp_ms`` / ``summary``). Counts and the "already committed?" recovery check
are therefore the same code on both engines, fed from snapshot metadata only.

Pure: rows may be pyspark ``Row`` objects or plain mappings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from cutover.core.iceberg import P_FILE, P_INGESTION, P_MODE, Catalog, SnapshotInfo


@dataclass(frozen=True)
class Ref:
    snapshot_id: int
    type: str = "branch"


@dataclass(frozen=True)
class Snapshot:
    snapshot_id: int
    parent_snapshot_id: int | None
    timestamp_ms: int
    summary: dict[str, str]


@dataclass
class MetadataView:
    refs: dict[str, Ref] = field(default_factory=dict)
    snapshots: list[Snapshot] = field(default_factory=list)

    def snapshot_by_id(self, snapshot_id: int | None) -> Snapshot | None:
        for s in self.snapshots:
            if s.snapshot_id == snapshot_id:
                return s
        return None


@dataclass
class SparkIcebergTable:
    """An Iceberg table seen through Spark's metadata tables (read-only)."""

    identifier: str
    metadata: MetadataView


def _get(row: Any, key: str) -> Any:
    if isinstance(row, Mapping):
        return row.get(key)
    return row[key]


def _millis(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, datetime):
        if value.tzinfo is None:  # Spark returns session-local naive datetimes
            return int(value.timestamp() * 1000)
        return int(value.astimezone(timezone.utc).timestamp() * 1000)
    return int(value)


def snapshot_from_row(row: Any) -> Snapshot:
    summary = dict(_get(row, "summary") or {})
    op = _get(row, "operation")
    if op is not None:
        summary.setdefault("operation", str(op))
    parent = _get(row, "parent_id")
    return Snapshot(snapshot_id=int(_get(row, "snapshot_id")),
                    parent_snapshot_id=int(parent) if parent is not None else None,
                    timestamp_ms=_millis(_get(row, "committed_at")),
                    summary={str(k): str(v) for k, v in summary.items()})


def table_from_rows(identifier: str, snapshot_rows: Iterable[Any], ref_rows: Iterable[Any]) -> SparkIcebergTable:
    snaps = sorted((snapshot_from_row(r) for r in snapshot_rows), key=lambda s: (s.timestamp_ms, s.snapshot_id))
    refs = {}
    for r in ref_rows:
        kind = str(_get(r, "type") or "branch").lower()
        if kind == "branch":
            refs[str(_get(r, "name"))] = Ref(int(_get(r, "snapshot_id")), kind)
    return SparkIcebergTable(identifier, MetadataView(refs=refs, snapshots=snaps))


def find_file_snapshot(tbl: SparkIcebergTable | None, *, branch: str, path: str, mode: str,
                       ingestion_id: str) -> SnapshotInfo | None:
    """The snapshot on ``branch``'s ancestry that holds ``path`` for this ingestion and mode.

    The same rule as ``cutover.core.iceberg.Catalog.find_file_snapshot`` (pyiceberg side).
    """
    if tbl is None or branch not in tbl.metadata.refs:
        return None
    for info in Catalog.ancestry(tbl, branch):
        p = info.properties
        if p.get(P_FILE) == path and p.get(P_MODE) == mode and p.get(P_INGESTION, ingestion_id) == ingestion_id:
            return info
    return None


# -- batch commits: one Spark write per batch, one data file per source file ---------------------
#
# A batch is written as ONE DataFrame: the fitted DataFrame of each source file with an integer
# key column, ``repartition(n, key)`` with n = the number of files, the key dropped. Spark's hash
# partitioning sends a row to partition ``pmod(murmur3_32(key, seed 42), n)``; :func:`partition_keys`
# picks one key per file so that file i lands alone in partition i, and every writer (Iceberg's
# ``%05d-<task>-<query>-<n>.parquet``, Spark's ``part-%05d-<job>...parquet``) starts its data file
# names with the partition id: :func:`file_partition` reads it back, so each data file is known to
# hold the rows of exactly one source file.

MARKER = "spark-partition:"  # a staged ledger entry's data file before the write: the file's partition


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & 0xFFFFFFFF


def murmur3_int(value: int, seed: int = 42) -> int:
    """Spark's ``hash(<int>)`` (Murmur3_x86_32.hashInt, seed 42) as a signed 32-bit int."""
    k = value & 0xFFFFFFFF
    k = (k * 0xCC9E2D51) & 0xFFFFFFFF
    k = _rotl(k, 15)
    k = (k * 0x1B873593) & 0xFFFFFFFF
    h = (seed & 0xFFFFFFFF) ^ k
    h = _rotl(h, 13)
    h = (h * 5 + 0xE6546B64) & 0xFFFFFFFF
    h ^= 4
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    return h - (1 << 32) if h & 0x80000000 else h


def partition_of(key: int, n: int) -> int:
    """The partition Spark's ``repartition(n, <int column>)`` sends ``key`` to (``pmod(hash(key), n)``)."""
    return murmur3_int(key) % n


def partition_keys(n: int) -> list[int]:
    """``keys[i]``: the smallest non-negative int that Spark's hash partitioning into ``n`` partitions sends to i."""
    if n < 1:
        raise ValueError("a batch has at least one file")
    keys: list[int | None] = [None] * n
    missing, k = n, 0
    while missing:
        p = partition_of(k, n)
        if keys[p] is None:
            keys[p] = k
            missing -= 1
        k += 1
    return [int(x) for x in keys]  # type: ignore[arg-type]


_PARTITION_NAME = re.compile(r"^(?:part-)?(\d{5,})-")


def file_partition(path: str) -> int | None:
    """The Spark partition (task) id a data file name starts with, or None for a name of another shape."""
    m = _PARTITION_NAME.match(str(path).rstrip("/").rsplit("/", 1)[-1])
    return int(m.group(1)) if m else None


_SPARK_WRITE_ID = re.compile(r"^part-\d{5,}-(.+?)-c\d{3,}")


def write_id(path: str) -> str | None:
    """The job id of a file written by Spark's own writer (``part-00003-<job id>-c000.snappy.parquet``)."""
    m = _SPARK_WRITE_ID.match(str(path).rstrip("/").rsplit("/", 1)[-1])
    return m.group(1) if m else None


def files_by_partition(rows: Iterable[Any]) -> dict[int, list[tuple[str, int | None]]]:
    """Data files (rows with ``file_path`` and optionally ``record_count``) grouped by partition id.
    Raises ValueError for a name without one: the one-file-per-source mapping cannot be trusted."""
    out: dict[int, list[tuple[str, int | None]]] = {}
    for r in rows:
        path = str(_get(r, "file_path"))
        p = file_partition(path)
        if p is None:
            raise ValueError(f"data file {path} does not name its Spark partition")
        try:
            n = _get(r, "record_count")
        except (KeyError, ValueError):  # a Row without the column
            n = None
        out.setdefault(p, []).append((path, int(n) if n is not None else None))
    for files in out.values():
        files.sort()
    return out


class Evidence(ValueError):
    """A batch committed but its data files are no longer in the branch: never ingest the file again."""


@dataclass(frozen=True)
class StagedEntry:
    """What the ledger holds for a claimed file of a batch: before the write ``data_files`` is one
    :data:`MARKER` (its partition), after the commit the data file paths."""

    path: str
    batch_id: str
    data_files: tuple[str, ...]


def marker(partition: int) -> str:
    return f"{MARKER}{int(partition)}"


def staged_partition(data_files: Iterable[str]) -> int | None:
    files = list(data_files)
    if len(files) == 1 and files[0].startswith(MARKER):
        return int(files[0][len(MARKER):])
    return None


def batch_outcome(entries: Iterable[StagedEntry], *, current_files: Mapping[str, int],
                  batch_files: Mapping[str, Mapping[int, list[tuple[str, int | None]]] | None]
                  ) -> dict[str, tuple[int, list[str]] | Evidence]:
    """Recovery: which staged files of (possibly) committed batches are in the branch's current state.

    ``current_files``: the branch's current data files (its ``files`` metadata table), path ->
    record count. ``batch_files``: per batch id, the data files its snapshot added, by partition
    (from the snapshot whose summary carries the batch id and its ``entries``), or None when no
    snapshot carries it. Returns path -> (records, data files) for a committed file, or
    :class:`Evidence` for one whose batch committed but whose data files are gone from the branch;
    a file missing from the answer was not committed (ingest it again).

    - data file paths recorded (the ledger was updated after the commit): the batch committed;
      the files must all be in ``current_files`` -- they are, after any snapshot expiry;
    - only the partition marker (the run died between the commit and that update): the batch's
      snapshot, when one carries its id, names the partition's data files, which must be current.
    """
    out: dict[str, tuple[int, list[str]] | Evidence] = {}
    for e in entries:
        part = staged_partition(e.data_files)
        if part is None:
            paths = list(e.data_files)
        else:
            landed = batch_files.get(e.batch_id)
            if landed is None:
                continue  # never committed (or its snapshot is gone: see docs/spark.md)
            paths = [p for p, _ in landed.get(part, [])]
            if not paths:
                out[e.path] = Evidence(f"batch {e.batch_id} committed without a data file for partition {part}; "
                                       "not ingested again")
                continue
        hits = [p for p in paths if p in current_files]
        if paths and len(hits) == len(paths):
            out[e.path] = (sum(int(current_files[p]) for p in paths), paths)
        else:
            out[e.path] = Evidence(f"committed in batch {e.batch_id} but {len(paths) - len(hits)} of its {len(paths)} "
                                   f"data file(s) are no longer in the branch; not ingested again")
    return out
