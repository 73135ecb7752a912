"""The inventory: every ingestion with its schedules, queue, cutover state and parity standing."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from cutover.core.errors import InputError
from cutover.core.progress import track
from cutover.core.schedule.translate import translate
from cutover.core.schedule.triggers import build_trigger, describe, next_fire_times
from cutover.core.state import states
from cutover.engine.execute import verify_schedule
from cutover.registry import parity_history, parity_streak


def fires_per_day(ing, *, days: int = 7, now: datetime | None = None) -> float:
    if ing.schedule is None:
        return 0.0
    now = now or datetime.now(timezone.utc)
    trig = build_trigger(ing.schedule, ing.timezone)
    if hasattr(trig, "jitter"):
        trig.jitter = None
    return len(next_fire_times(trig, now, until=now + timedelta(days=days))) / days


def translation(ing) -> tuple[str | None, str | None]:
    """(prefect schedule text, error)"""
    if ing.schedule is None:
        return "manual", None
    try:
        return translate(ing.schedule, ing.timezone).describe(), None
    except InputError as e:
        return None, e.one_line()


def build_inventory(ws, *, verify: bool = True, horizon_days: int | None = None) -> list[dict]:
    st = states.get_states(ws.state_engine)
    rows = []
    proofs: dict[str, tuple[bool, str]] = {}  # identical schedules are verified once
    for ing in track(ws.items.list(), "inventory: verifying schedules" if verify else "inventory"):
        prefect_schedule, translate_error = translation(ing)
        verified = None
        if verify:
            key = repr((ing.schedule, ing.timezone))
            if key not in proofs:
                proofs[key] = verify_schedule(ing, horizon_days) if translate_error is None else (False, translate_error)
            ok, detail = proofs[key]
            verified = "equivalent" if ok else detail
        last = parity_history(ws.state_engine, ing.id, limit=1)
        rows.append({
            "ingestion": ing,
            "id": ing.id,
            "legacy_schedule": describe(ing.schedule),
            "timezone": ing.schedule_timezone,
            "prefect_schedule": prefect_schedule,
            "schedule_verification": verified,
            "work_queue": ing.work_queue,
            "state": st.get(ing.id, states.LEGACY),
            "last_parity": last[0]["verdict"] if last else None,
            "last_parity_at": last[0]["at"] if last else None,
            "streak": parity_streak(ws.state_engine, ing.id),
            "fires_per_day": round(fires_per_day(ing), 3),
            "size_class": ing.size_class,
        })
    return rows


def public(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "ingestion"}
