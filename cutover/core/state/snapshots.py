"""The ``pause_snapshots`` rows: what `cutover pause` recorded before changing anything.

A row holds one pause: its selection, the state of every fence target before the fences went
up (``fences``: {side name: JSON}), the state of every schedule of the selection on every side
before the durable pause (``sides``: {side name: JSON}, each side's own format, see
``cutover.protocol.IncidentReader``), progress timestamps and problems. Status ACTIVE until
`cutover resume` restored it, then RESUMED.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import delete, insert, select, update

from cutover.core.errors import NotFound
from cutover.core.state.models import pause_snapshots as t

VERSION = 2
ACTIVE, RESUMED = "ACTIVE", "RESUMED"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt is not None else None


def parse_iso(s: str | None) -> datetime | None:
    if not s:
        return None
    dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


@dataclass
class Snapshot:
    id: str
    created_at: datetime
    created_by: str | None
    reason: str | None
    status: str
    body: dict

    @property
    def progress(self) -> dict:
        return self.body.setdefault("progress", {})

    @property
    def ids(self) -> list[str]:
        return self.body["selection"]["ids"]

    @property
    def sides(self) -> dict:
        """{side name: that side's schedule states} (a side not read yet is absent)."""
        return self.body.setdefault("sides", {})

    @property
    def fences(self) -> dict:
        """{side name: the fence target's state before the fence went up}."""
        return self.body.setdefault("fences", {})


    def summary(self) -> dict:
        """The row for `cutover pause list` (counts as the pause stored them in ``body["counts"]``)."""
        b = self.body
        p = self.progress
        c = b.get("counts") or {}
        return {"id": self.id, "status": self.status, "created_at": iso(self.created_at), "created_by": self.created_by,
                "reason": self.reason, "scope": "all" if b["selection"]["all"] else b["selection"]["select"],
                "ingestions": len(self.ids), "deployments": c.get("deployments"),
                "apscheduler_jobs": c.get("apscheduler_jobs", 0), "batch_flags": c.get("batch_flags", 0),
                "counts": c, "pool_fence": b.get("pool_fence"), "fenced": dict(p.get("fenced") or {}),
                "durable": dict(p.get("durable") or {}), "safe_at": p.get("safe_at"), "durable_at": p.get("durable_at"),
                "resumed_at": p.get("resumed_at"), "problems": b.get("problems") or [],
                "timelines": p.get("timelines") or []}


def upgrade_body(body: dict) -> dict:
    """A version-1 body (before the sides had their own part) in today's form."""
    if body.get("version", 1) >= VERSION:
        return body
    legacy = body.get("legacy")
    pf = body.get("prefect") or {}
    sides: dict = {}
    fences: dict = {}
    if legacy is not None:
        sides["legacy"] = {k: legacy[k] for k in ("jobs", "batch", "no_job") if k in legacy}
        if legacy.get("rq") is not None and not legacy["rq"].get("error"):
            sides["rq"] = {"holds": legacy["rq"].get("holds") or {}}
    if pf.get("deployments") is not None:
        sides["prefect"] = {"deployments": pf["deployments"], "complete": bool(pf.get("deployments_complete")),
                            "api_url": pf.get("api_url")}
    if pf.get("pools") is not None:
        fences["prefect"] = {"pools": pf["pools"]}
    if body.get("rq_fence") is not None:
        fences["rq"] = body["rq_fence"]
    p = dict(body.get("progress") or {})
    fenced = {"legacy": p.get("legacy_fence_at"), "rq": p.get("rq_fence_at"), "prefect": p.get("pool_fence_at")}
    durable = {"legacy": p.get("legacy_durable_at"), "rq": p.get("legacy_durable_at"),
               "prefect": p.get("prefect_durable_at")}
    p["fenced"] = {k: v for k, v in fenced.items() if v}
    p["durable"] = {k: v for k, v in durable.items() if v}
    counts = {"deployments": None if pf.get("deployments") is None else len(pf["deployments"]),
              "apscheduler_jobs": len((legacy or {}).get("jobs") or {}),
              "batch_flags": len((legacy or {}).get("batch") or {})}
    return {"version": VERSION, "selection": body["selection"], "pool_fence": bool(body.get("pool_fence")),
            "counts": counts,
            "sides": sides, "fences": fences, "progress": p, "problems": body.get("problems") or [],
            **({"resume": body["resume"]} if "resume" in body else {})}


def _row(r) -> Snapshot:
    body = r.body if isinstance(r.body, dict) else json.loads(r.body)
    at = r.created_at if r.created_at.tzinfo else r.created_at.replace(tzinfo=timezone.utc)
    return Snapshot(r.id, at, r.created_by, r.reason, r.status, upgrade_body(body))


def list_snapshots(engine, limit: int = 50) -> list[Snapshot]:
    with engine.connect() as conn:
        rows = conn.execute(select(t).order_by(t.c.created_at.desc()).limit(limit)).all()
    return [_row(r) for r in rows]


def load(engine, snapshot_id: str) -> Snapshot:
    with engine.connect() as conn:
        r = conn.execute(select(t).where(t.c.id == snapshot_id)).first()
    if r is None:
        raise NotFound(f"no pause snapshot {snapshot_id!r}", fix="see `cutover pause list`")
    return _row(r)


def active(engine) -> Snapshot | None:
    """The pause in force (ACTIVE), if any."""
    with engine.connect() as conn:
        r = conn.execute(select(t).where(t.c.status == ACTIVE).order_by(t.c.created_at.desc())).first()
    return _row(r) if r else None


def active_summary(engine) -> dict | None:
    """{"id", "reason", "created_at"} of the pause in force (one narrow read, for status and watch)."""
    with engine.connect() as conn:
        r = conn.execute(select(t.c.id, t.c.reason, t.c.created_at).where(t.c.status == ACTIVE)
                         .order_by(t.c.created_at.desc())).first()
    return {"id": r.id, "reason": r.reason, "created_at": str(r.created_at)} if r else None


def insert_snapshot(engine, snap: Snapshot) -> None:
    with engine.begin() as conn:
        conn.execute(insert(t).values(id=snap.id, created_at=snap.created_at, created_by=snap.created_by,
                                      reason=snap.reason, status=snap.status, body=snap.body))


def save(engine, snap: Snapshot, *, expect: str | None = None) -> bool:
    """Store status and body; ``expect``: only if the stored status is still that one. True if stored."""
    q = update(t).where(t.c.id == snap.id)
    if expect is not None:
        q = q.where(t.c.status == expect)
    with engine.begin() as conn:
        return conn.execute(q.values(status=snap.status, body=snap.body)).rowcount > 0


def delete_snapshot(engine, snapshot_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(delete(t).where(t.c.id == snapshot_id))
