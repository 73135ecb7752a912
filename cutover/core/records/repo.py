"""What the inventory's two tables (ingestions, a team's jobs) share: one row per id, read,
planned and written the same way. Each repository names its table, its noun, how a row becomes
a record and which columns a record fills (:mod:`cutover.core.records.ingestions`,
:mod:`cutover.core.records.jobs`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime, timezone
from typing import Any, Generic, Iterable, TypeVar

from sqlalchemy import Engine, Table, delete, insert, select, update

from cutover.core.errors import InputError, NotFound

T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Repo(ABC, Generic[T]):
    """CRUD on one inventory table. Subclasses set ``table``, ``noun``, ``empty_hint`` and
    implement :meth:`from_row` and :meth:`values`."""

    table: Table
    noun: str  # "ingestion" | "job"
    empty_hint: str  # the fix when the table is empty

    def __init__(self, engine: Engine):
        self.engine = engine

    # -- what a subclass says ------------------------------------------------------------
    @abstractmethod
    def from_row(self, row) -> T:
        """The record of one table row."""

    @abstractmethod
    def values(self, item: T) -> dict[str, Any]:
        """The columns a definition fills (compared by :meth:`plan_upsert`, written by upsert)."""

    def created_values(self, item: T) -> dict[str, Any]:
        """Columns set on creation only, beside :meth:`values`."""
        return {}

    # -- reads -----------------------------------------------------------------------------
    def list(self) -> list[T]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(self.table).order_by(self.table.c.id)).all()
        return [self.from_row(r) for r in rows]

    def find(self, item_id: str) -> T | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(self.table).where(self.table.c.id == item_id)).first()
        return self.from_row(row) if row else None

    def get(self, item_id: str) -> T:
        item = self.find(item_id)
        if item is None:
            known = [i.id for i in self.list()]
            hint = f"known: {', '.join(known[:10])}" if known else self.empty_hint
            raise NotFound(f"no {self.noun} {item_id!r}", fix=hint)
        return item

    def resolve(self, ids: Iterable[str], *, all_: bool = False) -> list[T]:
        ids = list(ids)
        if all_:
            return self.list()
        if not ids:
            raise InputError(f"no {self.noun} named", fix=f"name one or more {self.noun} ids, or pass --all")
        return [self.get(i) for i in ids]

    # -- writes ----------------------------------------------------------------------------
    def plan_upsert(self, items: Iterable[T]) -> list[tuple[str, T]]:
        """[(create|update|unchanged, item)] -- what `upsert` would do."""
        out = []
        for item in items:
            cur = self.find(item.id)
            if cur is None:
                out.append(("create", item))
            elif self.values(cur) == self.values(item):
                out.append(("unchanged", item))
            else:
                out.append(("update", item))
        return out

    def upsert(self, items: list[T], *, replace_existing: bool) -> list[tuple[str, T]]:
        """Create or update in one transaction: all of them, or none."""
        actions = self.plan_upsert(items)
        existing = [i.id for a, i in actions if a == "update"]
        if existing and not replace_existing:
            raise InputError(f"{self.noun}(s) {', '.join(existing)} already exist with another definition",
                             fix="pass --replace to update them")
        now = utcnow()
        with self.engine.begin() as conn:
            for action, item in actions:
                if action == "create":
                    conn.execute(insert(self.table).values(id=item.id, created_at=now, updated_at=now,
                                                           **self.created_values(item), **self.values(item)))
                elif action == "update":
                    conn.execute(update(self.table).where(self.table.c.id == item.id)
                                 .values(updated_at=now, **self.values(item)))
        return actions

    def remove(self, item_id: str) -> T:
        item = self.get(item_id)
        with self.engine.begin() as conn:
            conn.execute(delete(self.table).where(self.table.c.id == item_id))
        return item

    def set_columns(self, item_id: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(self.table).where(self.table.c.id == item_id).values(updated_at=utcnow(), **values))

    def set_flag(self, item_id: str, column: str, value: bool) -> bool:
        """Set a boolean column (the record's attribute of the same name); whether it changed."""
        if getattr(self.get(item_id), column) == value:
            return False
        self.set_columns(item_id, **{column: value})
        return True

    def set_prefect_ids(self, item_id: str, deployment_id: str | None, flow_id: str | None) -> None:
        self.set_columns(item_id, prefect_deployment_id=deployment_id, prefect_flow_id=flow_id)
