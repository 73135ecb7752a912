"""The operator lock: one mutating operation at a time, with the holder on record."""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from datetime import datetime, timezone

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from cutover.core.errors import CutoverError, NotFound
from cutover.core.osutil import pid_alive as _pid_alive
from cutover.core.state.audit import record, who
from cutover.core.state.models import locks as t_locks

NAME = "cutover"


class Locked(CutoverError):
    exit_code = 1


def holder(engine, name: str = NAME) -> dict | None:
    with engine.connect() as conn:
        r = conn.execute(select(t_locks).where(t_locks.c.name == name)).first()
    if r is None:
        return None
    at = r.acquired_at if r.acquired_at.tzinfo else r.acquired_at.replace(tzinfo=timezone.utc)
    d = {"id": r.id, "name": r.name, "holder": r.holder, "host": r.host, "pid": r.pid, "acquired_at": at.isoformat(),
         "reason": r.reason}
    d["stale"] = r.host == socket.gethostname() and not _pid_alive(r.pid)
    return d


def acquire(engine, reason: str, name: str = NAME) -> str:
    lock_id = uuid.uuid4().hex[:12]
    try:
        with engine.begin() as conn:
            conn.execute(insert(t_locks).values(name=name, id=lock_id, holder=who(), host=socket.gethostname(),
                                                pid=os.getpid(), acquired_at=datetime.now(timezone.utc), reason=reason))
    except IntegrityError:
        h = holder(engine, name)
        if h is None:  # released in between: try once more
            return acquire(engine, reason, name)
        if h["stale"]:
            # The holder ran on this host and its process is gone (killed, crashed): taking
            # over is what lets a re-run resume after a crash. Other hosts need `cutover unlock`.
            with engine.begin() as conn:
                conn.execute(delete(t_locks).where(t_locks.c.name == name, t_locks.c.id == h["id"]))
            record(engine, "lock-takeover", target=h["id"], reason="holder process is gone", detail=h)
            return acquire(engine, reason, name)
        hint = " (that process is gone: the lock is stale)" if h["stale"] else ""
        raise Locked(f"locked by {h['holder']} (host {h['host']}, pid {h['pid']}) since {h['acquired_at'][:19]} "
                     f"for {h['reason']!r}{hint}",
                     fix=f"wait for it to finish, or break a stale lock with `cutover unlock {h['id']}`") from None
    return lock_id


def release(engine, lock_id: str, name: str = NAME) -> None:
    with engine.begin() as conn:
        conn.execute(delete(t_locks).where(t_locks.c.name == name, t_locks.c.id == lock_id))


def unlock(engine, lock_id: str, name: str = NAME) -> dict:
    h = holder(engine, name)
    if h is None or h["id"] != lock_id:
        raise NotFound(f"no lock {lock_id!r}" + (f" (the current lock is {h['id']})" if h else " (nothing is locked)"),
                       fix="see `cutover status` for the current holder")
    release(engine, lock_id, name)
    return h


@contextlib.contextmanager
def locked(engine, reason: str, name: str = NAME):
    lock_id = acquire(engine, reason, name)
    try:
        yield lock_id
    finally:
        release(engine, lock_id, name)
