"""Iceberg through pyiceberg: the destination of every ingestion.

Every append is one snapshot carrying the snapshot properties
``cutover.run-id``, ``cutover.orchestrator``, ``cutover.mode``, ``cutover.file``
(and ``cutover.ingestion``). Row counts come from snapshot summaries
(``added-records``, ``total-records``), never from a scan.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any, Iterator

from cutover.core.errors import InputError
from cutover.core.redact import redact_text

SHADOW_BRANCH = "cutover-shadow"
MAIN = "main"
FORK_TAG = "cutover-fork"  # the shadow's fork snapshot, kept through snapshot expiry
P_RUN, P_ORCH, P_MODE, P_FILE, P_INGESTION = (
    "cutover.run-id", "cutover.orchestrator", "cutover.mode", "cutover.file", "cutover.ingestion")


@dataclass(frozen=True)
class SnapshotInfo:
    snapshot_id: int
    parent_id: int | None
    timestamp_ms: int
    operation: str | None
    added_records: int
    total_records: int | None
    properties: dict[str, str]

    @property
    def file(self) -> str | None:
        return self.properties.get(P_FILE)

    @property
    def run_id(self) -> str | None:
        return self.properties.get(P_RUN)


def _summary_dict(snapshot) -> dict[str, str]:
    s = snapshot.summary
    if s is None:
        return {}
    d = dict(s.additional_properties) if hasattr(s, "additional_properties") else dict(s)
    if getattr(s, "operation", None) is not None:
        d["operation"] = str(s.operation.value if hasattr(s.operation, "value") else s.operation)
    return d


def snapshot_info(snapshot) -> SnapshotInfo:
    d = _summary_dict(snapshot)
    props = {k: v for k, v in d.items() if k.startswith("cutover.")}
    total = d.get("total-records")
    return SnapshotInfo(
        snapshot_id=snapshot.snapshot_id,
        parent_id=snapshot.parent_snapshot_id,
        timestamp_ms=snapshot.timestamp_ms,
        operation=d.get("operation"),
        added_records=int(d.get("added-records", 0) or 0),
        total_records=int(total) if total is not None else None,
        properties=props,
    )


_MEMO_TX = None


def memo_transaction(tbl, *, before_retry=None):
    """A pyiceberg Transaction on ``tbl`` whose ``table_metadata`` is computed once per state.

    pyiceberg 0.12's ``Transaction.table_metadata`` re-applies every staged update to the
    table's metadata and deep-copies the result on *each* read -- about 18 reads per append,
    each copying every snapshot the table has. Profiled: 82 % of an append's time at a few
    hundred snapshots, so appends slowed down as a table grew. The value is a pure function
    of (the table's metadata object, the staged updates tuple), both replaced, never
    mutated, when they change, and the models are frozen; so it is cached on exactly that
    pair (holding both, so their ids cannot be reused). Measured: 300 one-file appends in
    35.8 s -> 12.5 s. Only cutover's own appends use it; pyiceberg itself is not patched.

    ``before_retry``: called in pyiceberg's own commit retry, after it reloaded the table and
    before it re-applies the snapshot on the new state; raising there stops the retry (the
    fence of a batch commit, see cutover.core.records.ledger).
    """
    global _MEMO_TX
    if _MEMO_TX is None:
        from pyiceberg.table import Transaction
        from pyiceberg.table.update import update_table_metadata

        if not isinstance(getattr(Transaction, "table_metadata", None), property) \
                or not hasattr(Transaction, "_rebuild_snapshot_updates"):  # pragma: no cover
            raise RuntimeError("pyiceberg's Transaction.table_metadata / _rebuild_snapshot_updates changed: "
                               "re-check cutover.core.iceberg.memo_transaction against this pyiceberg")

        class MemoTransaction(Transaction):
            _memo: tuple | None = None
            _before_retry = None

            def _rebuild_snapshot_updates(self):
                if self._before_retry is not None:
                    self._before_retry()
                return super()._rebuild_snapshot_updates()

            @property
            def table_metadata(self):
                base, updates = self._table.metadata, self._updates
                memo = self._memo
                if memo is None or memo[0] is not base or memo[1] is not updates:
                    memo = self._memo = (base, updates, update_table_metadata(base, updates))
                return memo[2]

        _MEMO_TX = MemoTransaction
    tx = _MEMO_TX(tbl)
    tx._before_retry = before_retry
    return tx


class Catalog:
    """A pyiceberg catalog from cutover settings (SQL catalog on SQLite by default)."""

    def __init__(self, name: str, properties: dict[str, str], *, commit_retries: int = 12):
        self.name = name
        self.properties = dict(properties)
        self.commit_retries = commit_retries
        self._catalog = None

    @classmethod
    def from_settings(cls, settings) -> "Catalog":
        return cls(settings.catalog_name, settings.catalog_properties, commit_retries=settings.commit_retries)

    @property
    def catalog(self):
        if self._catalog is None:
            from pyiceberg.catalog import load_catalog

            props = dict(self.properties)
            wh = props.get("warehouse", "")
            if wh.startswith("file://"):
                from pathlib import Path
                from urllib.parse import urlparse

                Path(urlparse(wh).path).mkdir(parents=True, exist_ok=True)
            last: Exception | None = None
            for attempt in range(5):  # several processes may create the SQL catalog's tables at once
                try:
                    self._catalog = load_catalog(self.name, **props)
                    break
                except Exception as e:  # noqa: BLE001 - reported below, redacted
                    last = e
                    if "already exists" not in str(e) and "locked" not in str(e):
                        raise InputError(f"cannot open Iceberg catalog {self.name!r} ({redact_text(str(e)).splitlines()[0]})",
                                         fix="check [catalog] in cutover.toml / CUTOVER_CATALOG_*") from None
                    time.sleep(0.2 * (attempt + 1))
            else:
                raise InputError(f"cannot open Iceberg catalog {self.name!r} ({redact_text(str(last))})",
                                 fix="check [catalog] in cutover.toml") from None
        return self._catalog

    # -- tables ----------------------------------------------------------------------
    def table_exists(self, identifier: str) -> bool:
        return self.catalog.table_exists(identifier)

    def load(self, identifier: str):
        return self.catalog.load_table(identifier)

    def find(self, identifier: str):
        from pyiceberg.exceptions import NoSuchTableError

        try:
            return self.catalog.load_table(identifier)
        except NoSuchTableError:
            return None

    def load_or_create(self, identifier: str, arrow_schema):
        tbl = self.find(identifier)
        if tbl is not None:
            return tbl
        namespace = identifier.rsplit(".", 1)[0]
        try:
            self.catalog.create_namespace_if_not_exists(namespace)
        except Exception:  # noqa: BLE001 - the SQL catalog checks then inserts: a concurrent
            # creator makes it raise IntegrityError instead of NamespaceAlreadyExistsError
            if not self.catalog.namespace_exists(namespace):
                raise
        return self.catalog.create_table_if_not_exists(identifier, schema=arrow_schema)

    # -- writes ----------------------------------------------------------------------
    def append(self, identifier: str, data, *, branch: str, properties: dict[str, str], tbl=None) -> int:
        """Append ``data`` as one snapshot on ``branch``; returns its snapshot id.

        pyiceberg first retries a lost optimistic commit itself (cheaply: it re-applies
        the metadata change without rewriting data). When it gives up, the append is
        retried on a fresh table, but only after checking that no other run committed
        the same file meanwhile. (Turning pyiceberg's own retry off made the check
        airtight but starved one of two busy writers: every retry rewrote the data.)
        """
        from pyiceberg.exceptions import CommitFailedException

        tbl = tbl or self.load(identifier)
        path = properties.get(P_FILE)
        for attempt in range(self.commit_retries + 1):
            try:
                with memo_transaction(tbl) as tx:  # = tbl.append(...), minus the repeated deep copies
                    tx.append(data, snapshot_properties=properties, branch=branch)
                return tbl.metadata.refs[branch].snapshot_id
            except CommitFailedException:
                if attempt == self.commit_retries:
                    raise
                time.sleep(min(2.0, 0.05 * 2 ** attempt) * (0.5 + random.random()))
                tbl = self.load(identifier)
                if path:
                    for info in self.ancestry(tbl, branch):
                        p = info.properties
                        if p.get(P_FILE) == path and p.get(P_MODE) == properties.get(P_MODE) \
                                and p.get(P_INGESTION) == properties.get(P_INGESTION):
                            return info.snapshot_id  # someone else committed this very file
        raise AssertionError("unreachable")

    def create_branch(self, identifier: str, branch: str, snapshot_id: int) -> None:
        tbl = self.load(identifier)
        if branch in tbl.metadata.refs:
            return
        tbl.manage_snapshots().create_branch(snapshot_id=snapshot_id, branch_name=branch).commit()

    def ensure_tag(self, identifier: str, tag: str, snapshot_id: int | None) -> bool:
        """Tag ``snapshot_id`` (expiry keeps tagged snapshots); False when it is gone or already tagged."""
        if snapshot_id is None:
            return False
        for attempt in range(self.commit_retries + 1):
            tbl = self.load(identifier)
            if tag in tbl.metadata.refs or tbl.metadata.snapshot_by_id(snapshot_id) is None:
                return False
            try:
                tbl.manage_snapshots().create_tag(snapshot_id=snapshot_id, tag_name=tag).commit()
                return True
            except Exception:  # noqa: BLE001 - a concurrent commit: reload and look again
                if attempt == self.commit_retries:
                    raise
                time.sleep(min(2.0, 0.05 * 2 ** attempt) * (0.5 + random.random()))
        return False

    # -- reads -----------------------------------------------------------------------
    @staticmethod
    def head(tbl, branch: str = MAIN) -> int | None:
        ref = tbl.metadata.refs.get(branch)
        return ref.snapshot_id if ref else None

    @staticmethod
    def ancestry(tbl, branch: str = MAIN, *, stop_at: int | None = None) -> Iterator[SnapshotInfo]:
        """Snapshots of ``branch`` from its head back to (excluding) ``stop_at``."""
        by_id = {s.snapshot_id: s for s in tbl.metadata.snapshots}
        sid = Catalog.head(tbl, branch)
        while sid is not None and sid != stop_at:
            snap = by_id.get(sid)
            if snap is None:  # expired
                break
            yield snapshot_info(snap)
            sid = snap.parent_snapshot_id

    def find_file_snapshot(self, identifier: str, *, branch: str, path: str, mode: str,
                           ingestion_id: str) -> SnapshotInfo | None:
        """The snapshot on ``branch`` that already holds ``path`` for this ingestion and mode."""
        tbl = self.find(identifier)
        if tbl is None:
            return None
        for info in self.ancestry(tbl, branch):
            p = info.properties
            if p.get(P_FILE) == path and p.get(P_MODE) == mode and p.get(P_INGESTION, ingestion_id) == ingestion_id:
                return info
        return None

    def total_records(self, identifier: str, branch: str = MAIN) -> int | None:
        tbl = self.find(identifier)
        if tbl is None:
            return None
        sid = self.head(tbl, branch)
        if sid is None:
            return 0
        info = snapshot_info(tbl.metadata.snapshot_by_id(sid))
        return info.total_records

    def describe(self, identifier: str) -> dict[str, Any] | None:
        tbl = self.find(identifier)
        if tbl is None:
            return None
        branches = {}
        for name, ref in tbl.metadata.refs.items():
            info = snapshot_info(tbl.metadata.snapshot_by_id(ref.snapshot_id))
            branches[name] = {"snapshot_id": ref.snapshot_id, "total_records": info.total_records,
                              "snapshots": sum(1 for _ in self.ancestry(tbl, name))}
        return {"table": identifier, "location": tbl.location(), "branches": branches,
                "schema": [f"{f.name}: {f.field_type}" for f in tbl.schema().fields]}
