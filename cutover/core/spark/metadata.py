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
