"""The legacy fence: one row that stops every legacy run from starting, whatever the job count.

The row lives in the state DB's ``locks`` table under the name ``legacy-fence``
(holder, host, pid and time on record like the operator lock; its ``id`` is the
pause snapshot's id; ``reason`` holds JSON ``{"snapshot", "reason", "ids"}``, ``ids``
null meaning every ingestion). Setting it is one INSERT, lifting it one DELETE.

Who checks it, right before a run would start (one primary-key read):

- ``legacy.apscheduler.scheduler.run_scheduled`` — every APScheduler job (scheduled or one-off)
  of the foreground scheduler process: the job fires, sees the fence, skips. The
  scheduler process keeps running (nothing to restart after the incident); the
  durable pause that follows sets each job's ``next_run_time`` to NULL, so the
  scheduler then stops firing them at all;
- ``legacy.batch.orchestrator.BatchOrchestrator.run_ingestion`` — manual/batch runs
  (``cutover legacy run``, ``shadow run --once``'s legacy side): refused with
  ``IngestionPaused``.

A run already in flight when the fence goes up finishes (the ledger fences
overlaps); the fence only stops new ones.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from datetime import datetime, timezone

from sqlalchemy import delete, insert, select

from cutover.core.db import ensure_schema, get_engine
from cutover.core.redact import redact_text
from cutover.core.state.audit import who
from cutover.core.state.models import locks as t

FENCE = "legacy-fence"
log = logging.getLogger("cutover.scheduler")


def read(engine) -> dict | None:
    """The fence as a dict (snapshot, reason, ids, since, holder), or None when no fence is up."""
    with engine.connect() as conn:
        r = conn.execute(select(t.c.id, t.c.holder, t.c.acquired_at, t.c.reason).where(t.c.name == FENCE)).first()
    if r is None:
        return None
    try:
        body = json.loads(r.reason or "{}")
    except ValueError:
        body = {}
    at = r.acquired_at if r.acquired_at.tzinfo else r.acquired_at.replace(tzinfo=timezone.utc)
    return {"snapshot": r.id, "holder": r.holder, "since": at.isoformat(), "reason": body.get("reason"),
            "ids": body.get("ids")}


def covers(fence: dict | None, ingestion_id: str) -> bool:
    return fence is not None and (fence.get("ids") is None or ingestion_id in fence["ids"])


def check(engine, ingestion_id: str) -> str | None:
    """Why a legacy run of this ingestion must not start now (None: it may)."""
    f = read(engine)
    if not covers(f, ingestion_id):
        return None
    why = f" ({f['reason']})" if f.get("reason") else ""
    return f"the legacy side is fenced by pause snapshot {f['snapshot']}{why} since {f['since'][:19]}"


def check_settings(settings, ingestion_id: str) -> str | None:
    """:func:`check` for code that has settings but no workspace engine at hand."""
    ensure_schema(settings)
    return check(get_engine(settings.state_url), ingestion_id)


def raise_fence(engine, snapshot_id: str, *, reason: str | None, ids: list[str] | None) -> bool:
    """Put the fence up for ``snapshot_id``; True if it was put up now, False if already up for it.

    Raises ValueError if another snapshot holds the fence (one pause at a time)."""
    from sqlalchemy.exc import IntegrityError

    cur = read(engine)
    if cur is not None:
        if cur["snapshot"] == snapshot_id:
            return False
        raise ValueError(f"the legacy fence is held by pause snapshot {cur['snapshot']}")
    body = json.dumps({"snapshot": snapshot_id, "reason": reason, "ids": sorted(ids) if ids is not None else None})
    try:
        with engine.begin() as conn:
            conn.execute(insert(t).values(name=FENCE, id=snapshot_id, holder=who(), host=socket.gethostname(),
                                          pid=os.getpid(), acquired_at=datetime.now(timezone.utc), reason=body))
    except IntegrityError:  # raced with another process: whoever holds it now decides
        cur = read(engine)
        if cur is not None and cur["snapshot"] == snapshot_id:
            return False
        raise ValueError(f"the legacy fence is held by pause snapshot {cur['snapshot'] if cur else '?'}") from None
    return True


def lift(engine, snapshot_id: str) -> bool:
    """Take the fence of ``snapshot_id`` down; True if it was up."""
    with engine.begin() as conn:
        res = conn.execute(delete(t).where(t.c.name == FENCE, t.c.id == snapshot_id))
    return res.rowcount > 0


def legacy_fence(ws, ingestion_id: str) -> str | None:
    """Why no legacy run of this ingestion may start now: the incident fence of ``cutover pause``
    (``cutover.core.state.fence``), checked right before every legacy run starts. None: it may start.

    Fails open: when the state DB cannot be read the run goes ahead (logged), as it did before
    cutover existed; the durable pause (``next_run_time`` NULL, batch flag) does not depend on it."""
    try:
        return check(ws.state_engine, ingestion_id)
    except Exception as e:  # noqa: BLE001 - see the docstring
        log.error("could not read the legacy fence (%s); running %s", redact_text(str(e)).splitlines()[0]
                  if str(e) else type(e).__name__, ingestion_id)
        return None
