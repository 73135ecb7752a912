"""cutover.core.iceberg.memo_transaction: cutover's appends compute a transaction's metadata once per
state instead of pyiceberg's deep copy on every read, and commit exactly what pyiceberg's own
append commits."""

from __future__ import annotations

import pyarrow as pa


def _rows(i: int) -> pa.Table:
    return pa.table({"id": pa.array([i, i + 1], pa.int64()), "name": pa.array([f"n{i}", f"m{i}"])})


def test_memo_transaction_reads_once_per_state_and_matches_pyiceberg(workspace_env):
    from pyiceberg.table.update import update_table_metadata

    from cutover.core.workspace import Workspace
    from cutover.core.iceberg import memo_transaction

    ws = Workspace()
    ours = ws.catalog.load_or_create("t.ours", _rows(0).schema)
    theirs = ws.catalog.load_or_create("t.theirs", _rows(0).schema)

    tx = memo_transaction(ours)
    first = tx.table_metadata
    assert tx.table_metadata is first  # no new deep copy while nothing changed
    tx.append(_rows(0), snapshot_properties={"cutover.file": "f0"})
    staged = tx.table_metadata
    assert staged is not first and tx.table_metadata is staged
    plain = update_table_metadata(ours.metadata, tx._updates)
    assert staged.model_dump(exclude={"last_updated_ms"}) == plain.model_dump(exclude={"last_updated_ms"})
    tx.commit_transaction()

    for i in range(1, 6):  # the rest through Catalog.append, the twin through pyiceberg's own append
        ws.catalog.append("t.ours", _rows(i), branch="main", properties={"cutover.file": f"f{i}"})
    theirs.append(_rows(0), snapshot_properties={"cutover.file": "f0"})
    for i in range(1, 6):
        theirs.append(_rows(i), snapshot_properties={"cutover.file": f"f{i}"})
    ours, theirs = ws.catalog.load("t.ours"), ws.catalog.load("t.theirs")

    def history(tbl):
        keep = ("cutover.file", "added-records", "total-records", "added-data-files", "total-data-files", "operation")
        return [{k: v for k, v in {**s.summary.additional_properties, "operation": s.summary.operation.value}.items()
                 if k in keep} for s in tbl.metadata.snapshots]

    assert history(ours) == history(theirs) and len(history(ours)) == 6
    assert ours.scan().to_arrow().sort_by("id").equals(theirs.scan().to_arrow().sort_by("id"))
    assert ws.catalog.total_records("t.ours") == 12
