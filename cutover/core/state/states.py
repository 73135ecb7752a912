"""The per-ingestion cutover state machine (DESIGN §4).

LEGACY -> SHADOW -> CUTOVER -> DONE, and ROLLED_BACK from SHADOW, CUTOVER, DONE.
An ingestion never seen by cutover is LEGACY.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from cutover.core.errors import InputError
from cutover.core.state.models import cutover_states as t_states

LEGACY, SHADOW, CUTOVER, DONE, ROLLED_BACK = "LEGACY", "SHADOW", "CUTOVER", "DONE", "ROLLED_BACK"
STATES = (LEGACY, SHADOW, CUTOVER, DONE, ROLLED_BACK)
TRANSITIONS = {
    LEGACY: {SHADOW},
    SHADOW: {CUTOVER, ROLLED_BACK, LEGACY},
    CUTOVER: {DONE, ROLLED_BACK},
    DONE: {ROLLED_BACK},
    ROLLED_BACK: {SHADOW, LEGACY},
}
# who owns live ingestion in each state
LIVE_OWNER = {LEGACY: "legacy", SHADOW: "legacy", CUTOVER: "prefect", DONE: "prefect", ROLLED_BACK: "legacy"}


def get_states(engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {r.ingestion_id: r.state for r in conn.execute(select(t_states.c.ingestion_id, t_states.c.state))}


def get_state(engine, ingestion_id: str) -> str:
    return get_states(engine).get(ingestion_id, LEGACY)


def set_state(engine, ingestion_id: str, new: str, *, by: str | None = None, force: bool = False) -> bool:
    """Move to ``new``; True if it changed. Same state again is a no-op (idempotent)."""
    if new not in STATES:
        raise ValueError(new)
    cur = get_state(engine, ingestion_id)
    if cur == new:
        return False
    if not force and new not in TRANSITIONS[cur]:
        raise InputError(f"ingestion {ingestion_id} cannot go from {cur} to {new}",
                         fix=f"allowed from {cur}: {', '.join(sorted(TRANSITIONS[cur])) or 'nothing'}")
    now = datetime.now(timezone.utc)
    ins = (postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert)(t_states).values(
        ingestion_id=ingestion_id, state=new, updated_at=now, updated_by=by)
    ins = ins.on_conflict_do_update(index_elements=["ingestion_id"], set_={"state": new, "updated_at": now, "updated_by": by})
    with engine.begin() as conn:
        conn.execute(ins)
    return True


def state_stamp(engine, ingestion_id: str) -> str:
    """When the state last changed ('never' for an ingestion cutover has not touched)."""
    with engine.connect() as conn:
        r = conn.execute(select(t_states.c.updated_at).where(t_states.c.ingestion_id == ingestion_id)).first()
    return str(r[0]) if r else "never"
