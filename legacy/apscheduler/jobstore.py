"""The APScheduler 3 job store table as cutover reads and writes it: the table, its rows, the
pickled job states (read without running foreign code), and triggers compared by their firing.

See ``legacy.apscheduler.scheduler`` for how the store is used.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Column, Float, LargeBinary, MetaData, String, Table, inspect

from cutover.core.db import sqlite_path
from cutover.core.safepickle import Opaque, safe_loads
from cutover.core.schedule.triggers import next_fire_times

__all__ = ["Opaque", "load_job_state", "dump_job_state"]  # Opaque: re-exported for the importers


FUNC_REF = "legacy.apscheduler.scheduler:run_scheduled"
REMOVED = "removed"
ONE_OFF_PREFIX = "manual-"
ORCHESTRATOR = "apscheduler"
UTC = timezone.utc


def utcnow() -> datetime:
    return datetime.now(UTC)


def timestamp(dt: datetime | None) -> float | None:
    from apscheduler.util import datetime_to_utc_timestamp

    return datetime_to_utc_timestamp(dt)


# -- reading pickled job states safely (cutover.core.safepickle) -------------------------------


def load_job_state(blob: bytes) -> dict:
    """A job's state dict from its ``job_state`` column, without importing its code."""
    state = safe_loads(blob)
    if not isinstance(state, dict):
        raise ValueError(f"job state is a {type(state).__name__}, not a dict")
    return state


def dump_job_state(state: dict) -> bytes:
    return pickle.dumps(state, pickle.HIGHEST_PROTOCOL)


# -- the job store table ---------------------------------------------------------------------

_tables: dict[str, Table] = {}


def jobs_table(name: str) -> Table:
    """APScheduler 3's SQLAlchemyJobStore table layout."""
    t = _tables.get(name)
    if t is None:
        t = _tables[name] = Table(
            name, MetaData(),
            Column("id", String(191), primary_key=True),
            Column("next_run_time", Float(25), index=True),
            Column("job_state", LargeBinary, nullable=False),
        )
    return t


def table_exists(engine, url: str, table: Table) -> bool:
    """Whether the job store table exists -- never creating the database (a SQLite file that is
    not there is not opened) nor the table."""
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return False
    with engine.connect() as conn:
        return inspect(conn).has_table(table.name)


@dataclass
class JobRow:
    id: str
    next_run_time: float | None
    blob: bytes
    state: dict | None  # None: unreadable
    error: str | None = None

    @property
    def paused(self) -> bool:
        return self.next_run_time is None

    @property
    def ours(self) -> bool:
        return self.state is not None and self.state.get("func") == FUNC_REF

    @property
    def kwargs(self) -> dict:
        kw = (self.state or {}).get("kwargs")
        return kw if isinstance(kw, dict) else {}

    @property
    def is_schedule_job(self) -> bool:
        """One of our per-ingestion jobs (not a one-off manual run)."""
        return self.ours and self.kwargs.get("ingestion_id") == self.id

    @property
    def is_one_off(self) -> bool:
        return self.ours and self.id.startswith(ONE_OFF_PREFIX)


def job_row(r) -> JobRow:
    try:
        state, err = load_job_state(r.job_state), None
    except Exception as e:  # noqa: BLE001 - a corrupt row is reported, never deleted
        state, err = None, f"{type(e).__name__}: {e}"
    return JobRow(r.id, r.next_run_time, r.job_state, state, err)


# -- triggers -----------------------------------------------------------------------------


def trigger_fingerprint(trigger, *, ignore_interval_start: bool = False) -> tuple:
    """What makes two triggers fire alike (APScheduler triggers define no equality)."""
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.date import DateTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    def iso(dt):
        return dt.isoformat() if dt is not None else None

    tz = str(getattr(trigger, "timezone", ""))
    if isinstance(trigger, CronTrigger):
        return ("cron", tz, tuple((f.name, str(f)) for f in trigger.fields), iso(trigger.start_date),
                iso(trigger.end_date), trigger.jitter)
    if isinstance(trigger, IntervalTrigger):
        return ("interval", tz, trigger.interval.total_seconds(),
                None if ignore_interval_start else iso(trigger.start_date), iso(trigger.end_date), trigger.jitter)
    if isinstance(trigger, DateTrigger):
        return ("date", iso(trigger.run_date))
    return ("other", type(trigger).__name__, pickle.dumps(trigger))


def describe_trigger(trigger) -> str:
    """``cron[hour='2', minute='0'] Europe/Berlin``: APScheduler's own form plus the zone."""
    tz = getattr(trigger, "timezone", None)
    return f"{trigger} {tz}" if tz is not None else str(trigger)


def _without_jitter(trigger):
    import copy

    t = copy.copy(trigger)
    if getattr(t, "jitter", None):
        t.jitter = None
    return t


def same_firing(a, b, *, count: int = 50, start: datetime | None = None) -> bool:
    """True when two triggers fire at the same instants (next ``count`` times) with the same jitter."""
    if a is None or b is None:
        return a is None and b is None
    if (getattr(a, "jitter", None) or None) != (getattr(b, "jitter", None) or None):
        return False
    if getattr(a, "end_date", None) != getattr(b, "end_date", None):
        return False
    start = start or utcnow()
    return (next_fire_times(_without_jitter(a), start, count) == next_fire_times(_without_jitter(b), start, count))
