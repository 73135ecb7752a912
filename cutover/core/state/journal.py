"""The journal: every step of a mutating operation, recorded as it runs.

Re-running an operation with the same id resumes it: DONE steps are skipped,
a step left RUNNING by a crash is run again (every step is idempotent), a
FAILED step is retried.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from cutover.core.state.models import journal as t_journal
from cutover.core.state.models import plans as t_plans

PENDING, RUNNING, DONE, FAILED, SKIPPED = "PENDING", "RUNNING", "DONE", "FAILED", "SKIPPED"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Journal:
    def __init__(self, engine, operation_id: str, operation: str):
        self.engine = engine
        self.operation_id = operation_id
        self.operation = operation

    def register(self, steps: list[str]) -> None:
        """Record the steps of the operation (idempotent: existing rows are kept)."""
        ins = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        with self.engine.begin() as conn:
            for seq, step in enumerate(steps):
                conn.execute(ins(t_journal).values(operation_id=self.operation_id, operation=self.operation, seq=seq,
                                                   step=step, status=PENDING)
                             .on_conflict_do_nothing(index_elements=["operation_id", "seq"]))

    def statuses(self) -> dict[int, tuple[str, str, str | None]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t_journal.c.seq, t_journal.c.step, t_journal.c.status, t_journal.c.detail)
                                .where(t_journal.c.operation_id == self.operation_id)).all()
        return {r.seq: (r.step, r.status, r.detail) for r in rows}

    def mark(self, seq: int, status: str, detail: str | None = None) -> None:
        vals = {"status": status, "detail": detail}
        if status == RUNNING:
            vals["started_at"] = utcnow()
        else:
            vals["ended_at"] = utcnow()
        with self.engine.begin() as conn:
            conn.execute(update(t_journal).where(t_journal.c.operation_id == self.operation_id, t_journal.c.seq == seq)
                         .values(**vals))


def operations(engine, limit: int = 50) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(t_journal).order_by(t_journal.c.id.desc()).limit(limit * 20)).all()
    ops: dict[str, dict] = {}
    for r in rows:
        op = ops.setdefault(r.operation_id, {"operation_id": r.operation_id, "operation": r.operation, "steps": []})
        op["steps"].append({"seq": r.seq, "step": r.step, "status": r.status, "detail": r.detail})
    for op in ops.values():
        op["steps"].sort(key=lambda s: s["seq"])
    return list(ops.values())[:limit]


def save_operation_plan(engine, operation_id: str, kind: str, body: dict, *, by: str | None = None) -> None:
    """Keep what a one-wave operation (rollback, shadow start/stop ...) set out to do, beside its
    journal (idempotent), so a re-run after a crash can resume it even when the moves it would
    compute now are fewer (an ingestion already moved before the crash)."""
    ins = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    with engine.begin() as conn:
        conn.execute(ins(t_plans).values(id=operation_id, created_at=utcnow(), created_by=by, fingerprint=kind,
                                         body=body).on_conflict_do_nothing(index_elements=["id"]))


def unfinished_operation_plans(engine, kind: str) -> list[tuple[str, dict]]:
    """(operation id, saved plan body) of every operation of ``kind`` whose journal has a step not
    DONE, oldest first."""
    with engine.connect() as conn:
        open_ops = select(t_journal.c.operation_id).where(t_journal.c.status != DONE).distinct().subquery()
        rows = conn.execute(select(t_plans.c.id, t_plans.c.body).where(t_plans.c.fingerprint == kind,
                                                                        t_plans.c.id.in_(select(open_ops.c.operation_id)))
                            .order_by(t_plans.c.created_at)).all()
    return [(r.id, r.body) for r in rows]
