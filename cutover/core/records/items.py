"""The inventory as the engine sees it: every ingestion and every generic job, by id.

Ingestions and jobs share ids (``cutover.core.records.jobs``), so one id names one item; the
engine's verbs (shadow, plan, execute, pause, rollback, status) take either. A job answers what
the engine reads of an ingestion (``size_class``, ``work_queue``, ``definition()`` ...), and
:func:`is_job` tells them apart where they differ.
"""

from __future__ import annotations

from typing import Iterable

from cutover.core.errors import InputError, NotFound
from cutover.core.records.ingestions import Ingestion, IngestionRepo
from cutover.core.records.jobs import Job, JobRepo

Item = Ingestion | Job


def is_job(item) -> bool:
    return isinstance(item, Job)


class Items:
    def __init__(self, ingestions: IngestionRepo, jobs: JobRepo):
        self.ingestions, self.jobs = ingestions, jobs

    def list(self) -> list[Item]:
        return [*self.ingestions.list(), *self.jobs.list()]

    def find(self, iid: str) -> Item | None:
        return self.ingestions.find(iid) or self.jobs.find(iid)

    def get(self, iid: str) -> Item:
        item = self.find(iid)
        if item is None:
            known = [i.id for i in self.list()]
            raise NotFound(f"no ingestion or job {iid!r}",
                           fix=f"known: {', '.join(known[:10])}" if known else "add or import some first")
        return item

    def resolve(self, ids: Iterable[str], *, all_: bool = False) -> list[Item]:
        ids = list(ids)
        if all_:
            return self.list()
        if not ids:
            raise InputError("no ingestion or job named", fix="name one or more ids, or pass --all")
        return [self.get(i) for i in ids]
