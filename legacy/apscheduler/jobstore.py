"""The APScheduler 3 job store table as cutover reads and writes it: the table, its rows, the
pickled job states (read without running foreign code), and triggers compared by their firing.

See ``legacy.apscheduler.scheduler`` for how the store is used.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Column, Float, LargeBinary, MetaData, String, Table

from cutover.core.schedule.triggers import next_fire_times


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


# -- reading pickled job states safely ------------------------------------------------------

_SAFE_MODULES = ("apscheduler.triggers", "datetime", "zoneinfo", "pytz", "dateutil.tz", "tzlocal", "decimal",
                 "uuid", "collections", "fractions", "pathlib")
_SAFE_BUILTINS = {"set", "frozenset", "bytearray", "complex", "range", "slice", "object", "list", "dict", "tuple",
                  "str", "int", "float", "bool", "bytes"}


class Opaque:
    """Stands in for an object of a class we will not (or cannot) import while reading a job state."""

    ref = "?"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state

    def __repr__(self) -> str:
        return f"<unreadable {self.ref}>"


_opaque_classes: dict[str, type] = {}


def _opaque(module: str, name: str) -> type:
    ref = f"{module}:{name}"
    cls = _opaque_classes.get(ref)
    if cls is None:
        cls = _opaque_classes[ref] = type(f"Opaque_{name.replace('.', '_')}", (Opaque,), {"ref": ref})
    return cls


def _is_safe_module(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in _SAFE_MODULES)


def _safe_getattr(obj, name: str):
    """``getattr`` as pickles use it (``ZoneInfo._unpickle``), on the allowed classes only."""
    if isinstance(obj, type) and not issubclass(obj, Opaque) and _is_safe_module(obj.__module__) \
            and not name.startswith("__"):
        return getattr(obj, name)
    return _opaque(getattr(obj, "__module__", "?"), f"{getattr(obj, '__name__', type(obj).__name__)}.{name}")


class _StateUnpickler(pickle.Unpickler):
    """Unpickles job states importing only trigger, date/time and plain container classes.

    Anything else (a team's own classes in job args, a module that no longer
    exists) becomes an :class:`Opaque` placeholder: reading a job store never
    runs its code and never fails on a missing module.
    """

    def find_class(self, module: str, name: str):
        if module == "builtins" and name == "getattr":
            return _safe_getattr
        safe = (
            (module == "builtins" and name in _SAFE_BUILTINS)
            or (module == "copyreg" and name in ("_reconstructor", "__newobj__", "__newobj_ex__"))
            or (module == "_codecs" and name == "encode")
            or _is_safe_module(module)
        )
        if safe:
            try:
                return super().find_class(module, name)
            except (ImportError, AttributeError):
                pass
        return _opaque(module, name)


def load_job_state(blob: bytes) -> dict:
    """A job's state dict from its ``job_state`` column, without importing its code."""
    import io

    state = _StateUnpickler(io.BytesIO(blob)).load()
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
