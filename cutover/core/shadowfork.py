"""The shadow fork: branch ``cutover-shadow`` of the production table (DESIGN §2).

Shadow runs write to the Iceberg branch ``cutover-shadow``, forked at the main
snapshot that is current when the shadow starts; the fork snapshot id is
recorded in the state DB (``shadow_forks``) so that parity can compare
"records added on main since the fork" with "records added on the branch since
the fork".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from cutover.core.errors import InputError
from cutover.core.iceberg import FORK_TAG, MAIN, SHADOW_BRANCH
from cutover.core.state.models import shadow_forks


@dataclass(frozen=True)
class Fork:
    ingestion_id: str
    table_name: str
    branch: str
    fork_snapshot_id: int | None
    created_at: datetime


def _row(r) -> Fork:
    created = r.created_at
    if created is not None and created.tzinfo is None:
        created = created.replace(tzinfo=timezone.utc)
    return Fork(r.ingestion_id, r.table_name, r.branch, r.fork_snapshot_id, created)


def read_fork(ws, ingestion_id: str) -> Fork | None:
    with ws.state_engine.connect() as conn:
        r = conn.execute(select(shadow_forks).where(shadow_forks.c.ingestion_id == ingestion_id)).first()
    return _row(r) if r else None


def _fork_point(catalog, tbl, branch: str) -> int | None:
    """The newest snapshot of ``branch`` that is also an ancestor of main (where it forked)."""
    on_main = {s.snapshot_id for s in catalog.ancestry(tbl, MAIN)}
    for s in catalog.ancestry(tbl, branch):
        if s.snapshot_id in on_main:
            return s.snapshot_id
    return catalog.head(tbl, branch)


def ensure_fork(ws, ingestion) -> int:
    """Make sure the shadow branch of ``ingestion.table`` exists and its fork is recorded.

    Idempotent: an existing branch is kept (its recorded fork snapshot is
    returned); a missing branch is created at the current main snapshot. Returns
    the fork snapshot id. Raises InputError when the table does not exist yet
    (the legacy side has never written it) or has no snapshot on main.
    """
    catalog = ws.catalog
    tbl = catalog.find(ingestion.table)
    if tbl is None:
        raise InputError(f"cannot fork {ingestion.table} for the shadow of {ingestion.id}: the table does not exist yet",
                         fix=f"run the legacy side first (cutover legacy run {ingestion.id})")
    recorded = read_fork(ws, ingestion.id)
    if SHADOW_BRANCH in tbl.metadata.refs:
        if recorded is not None and recorded.table_name == ingestion.table and recorded.branch == SHADOW_BRANCH:
            if FORK_TAG not in tbl.metadata.refs:  # a fork from before the tag: tag it while it exists
                catalog.ensure_tag(ingestion.table, FORK_TAG, recorded.fork_snapshot_id)
            return recorded.fork_snapshot_id  # type: ignore[return-value]
        fork_id = _fork_point(catalog, tbl, SHADOW_BRANCH)  # created by someone else (or another ingestion)
    else:
        fork_id = catalog.head(tbl, MAIN)
        if fork_id is None:
            raise InputError(f"cannot fork {ingestion.table} for the shadow of {ingestion.id}: main has no snapshot",
                             fix=f"run the legacy side first (cutover legacy run {ingestion.id})")
        try:
            catalog.create_branch(ingestion.table, SHADOW_BRANCH, fork_id)
        except Exception:  # noqa: BLE001 - a concurrent creator may have won the commit
            tbl = catalog.load(ingestion.table)
            if SHADOW_BRANCH not in tbl.metadata.refs:
                raise
            fork_id = _fork_point(catalog, tbl, SHADOW_BRANCH)
    catalog.ensure_tag(ingestion.table, FORK_TAG, fork_id)  # parity needs the fork snapshot after expiry
    _record(ws, ingestion, fork_id, replace=recorded is not None)
    return fork_id  # type: ignore[return-value]


def _record(ws, ingestion, fork_id: int | None, *, replace: bool) -> None:
    values = dict(table_name=ingestion.table, branch=SHADOW_BRANCH, fork_snapshot_id=fork_id,
                  created_at=datetime.now(timezone.utc))
    with ws.state_engine.begin() as conn:
        if replace:
            conn.execute(update(shadow_forks).where(shadow_forks.c.ingestion_id == ingestion.id).values(**values))
            return
    try:
        with ws.state_engine.begin() as conn:
            conn.execute(insert(shadow_forks).values(ingestion_id=ingestion.id, **values))
    except IntegrityError:  # recorded concurrently: theirs is as good
        pass
