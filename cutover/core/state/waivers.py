"""Waivers: a known, owned, expiring exception to one check of one ingestion."""

from __future__ import annotations

from datetime import date, datetime, time, timezone

from sqlalchemy import insert, select, update

from cutover.core.errors import InputError, NotFound
from cutover.core.state.audit import who
from cutover.core.state.models import waivers as t_waivers

CHECKS = ("runs", "ledger", "counts", "values", "quality")  # the parity checks (checks/), the names a waiver may name


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def parse_expiry(text: str, *, now: datetime | None = None) -> datetime:
    """``2026-12-31`` (end of that day, UTC) or an ISO date-time; must be in the future."""
    now = now or utcnow()
    try:
        if len(text) == 10:
            dt = datetime.combine(date.fromisoformat(text), time(23, 59, 59), tzinfo=timezone.utc)
        else:
            dt = _aware(datetime.fromisoformat(text))
    except ValueError:
        raise InputError(f"--expires {text!r} is not a date", fix="give YYYY-MM-DD or an ISO date-time") from None
    if dt <= now:
        raise InputError(f"--expires {text} is in the past", fix="a waiver must expire in the future")
    return dt


class WaiverStore:
    def __init__(self, engine):
        self.engine = engine

    def add(self, ingestion_id: str, check: str, *, reason: str, owner: str, expires_at: datetime) -> int:
        if check not in CHECKS:
            raise InputError(f"unknown check {check!r}", fix=f"use one of {', '.join(CHECKS)}")
        if not reason.strip() or not owner.strip():
            raise InputError("a waiver needs a reason and an owner", fix="pass --reason and --owner")
        with self.engine.begin() as conn:
            return conn.execute(insert(t_waivers).values(
                ingestion_id=ingestion_id, check_name=check, reason=reason, owner=owner, expires_at=expires_at,
                created_at=utcnow())).inserted_primary_key[0]

    def list(self, *, include_expired: bool = False, at: datetime | None = None) -> list[dict]:
        at = at or utcnow()
        with self.engine.connect() as conn:
            rows = conn.execute(select(t_waivers).where(t_waivers.c.removed_at.is_(None))
                                .order_by(t_waivers.c.id)).all()
        out = []
        for r in rows:
            exp = _aware(r.expires_at)
            if exp <= at and not include_expired:
                continue
            out.append({"id": r.id, "ingestion": r.ingestion_id, "check": r.check_name, "reason": r.reason,
                        "owner": r.owner, "expires_at": exp.isoformat(), "expired": exp <= at,
                        "created_at": _aware(r.created_at).isoformat()})
        return out

    def active_for(self, ingestion_id: str, check: str, *, at: datetime | None = None) -> dict | None:
        for w in self.list(at=at):
            if w["ingestion"] == ingestion_id and w["check"] == check:
                return {k: w[k] for k in ("id", "owner", "reason", "expires_at")}
        return None

    def open_for(self, ingestion_id: str, *, at: datetime | None = None) -> list[dict]:
        return [w for w in self.list(at=at) if w["ingestion"] == ingestion_id]

    def remove(self, waiver_id: int) -> dict:
        found = [w for w in self.list(include_expired=True) if w["id"] == waiver_id]
        if not found:
            raise NotFound(f"no waiver {waiver_id}", fix="see `cutover waive list --all`")
        with self.engine.begin() as conn:
            # kept as a row: the id is never reused, and what was waived stays on record
            conn.execute(update(t_waivers).where(t_waivers.c.id == waiver_id)
                         .values(removed_at=utcnow(), removed_by=who()))
        return found[0]
