"""Vixie (Debian) cron expressions: validation, fields, fire times, and an APScheduler-3-style trigger.

A ``{"crontab": "M H DOM MON DOW"}`` schedule is run by cron itself (``legacy/cron``), so it keeps
*standard* cron semantics: 0 and 7 are Sunday, and when day-of-month and day-of-week are both
restricted (neither starts with ``*``) a day matches if EITHER matches. Fire times come from
``cronsim`` (a Debian-cron simulator, including its DST rules: a fixed-time job in the skipped hour
runs at the jump, and once in the repeated hour; hourly-style jobs run in both repeated hours).

Pure schedule model: used by the schedule checks (``triggers``, ``translate``, ``crontab``,
``verify``) and by the crontab legacy side.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from cutover.core.errors import InputError

UTC = timezone.utc
MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
_NAMES = re.compile(r"\b(JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC|SUN|MON|TUE|WED|THU|FRI|SAT)\b")


# -- cron expressions (Vixie / Debian semantics) -------------------------------------------


def normalize_expr(expr: str) -> str:
    """Validate a crontab schedule and return it in canonical form (whitespace collapsed,
    macros expanded). Raises InputError naming the problem."""
    text = " ".join(str(expr).split())
    if not text:
        raise InputError("crontab schedule is empty", fix="give the 5 fields, e.g. '15 * * * *'")
    if text.startswith("@"):
        if text.lower() == "@reboot":
            raise InputError("@reboot is not a schedule (it runs once when cron starts)",
                             fix="give the job a real schedule, or run it by hand")
        if text.lower() not in MACROS:
            raise InputError(f"crontab macro {text!r} is not known", fix=f"use one of {', '.join(MACROS)}")
        text = MACROS[text.lower()]
    parts = text.split(" ")
    if len(parts) != 5:
        raise InputError(f"crontab schedule {text!r} must have 5 fields",
                         fix="minute hour day-of-month month day-of-week, e.g. '15 * * * *'")
    if re.search(r"[LW#?]", _NAMES.sub("", text.upper())):
        raise InputError(f"crontab schedule {text!r} uses an extension (L, W, #, ?) standard cron does not have",
                         fix="write it with numbers, names, ranges, steps and lists only")
    _cronsim(text, datetime(2026, 1, 1, tzinfo=UTC))  # raises InputError when invalid
    return text


def _cronsim(expr: str, start: datetime):
    try:
        from cronsim import CronSim, CronSimError
    except ImportError:  # pragma: no cover - a dependency of prefect (pydocket)
        raise InputError("the cronsim package is missing", fix="pip install cronsim") from None
    try:
        return CronSim(expr, start)
    except CronSimError as e:
        raise InputError(f"crontab schedule {expr!r} is not valid ({e})", fix="fix the cron fields") from None


@dataclass(frozen=True)
class CronFields:
    """The parsed fields of a Vixie cron expression."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday (7 folded to 0)
    day_and: bool  # Vixie: dom or dow starts with '*' -> both must match; else either
    texts: tuple[str, str, str, str, str]

    @property
    def dom_full(self) -> bool:
        return self.days == frozenset(range(1, 32))

    @property
    def dow_full(self) -> bool:
        return self.weekdays == frozenset(range(7))


def fields(expr: str) -> CronFields:
    expr = normalize_expr(expr)
    cs = _cronsim(expr, datetime(2026, 1, 1, tzinfo=UTC))
    return CronFields(frozenset(cs.minutes), frozenset(cs.hours), frozenset(cs.days), frozenset(cs.months),
                      frozenset(d % 7 for d in cs.weekdays if isinstance(d, int)), bool(cs.day_and),
                      tuple(expr.split(" ")))  # type: ignore[arg-type]


def fire_times(expr: str, tz: str, start: datetime, end: datetime, *, max_fires: int = 200_000,
               normalized: bool = False) -> tuple[list[datetime], bool]:
    """Debian cron's fire times in [start, end] as UTC instants; (times, capped)."""
    zone = ZoneInfo(tz)
    if not normalized:
        expr = normalize_expr(expr)
    first = (start - timedelta(seconds=1)).astimezone(zone)
    if first.microsecond:
        first = first.replace(microsecond=0) + timedelta(seconds=1)
    it = _cronsim(expr, first)
    out: list[datetime] = []
    for nxt in it:
        u = nxt.replace(tzinfo=zone).astimezone(UTC) if nxt.tzinfo is None else nxt.astimezone(UTC)
        if u > end:
            return out, False
        if u >= start and (not out or u > out[-1]):
            out.append(u)
        if len(out) >= max_fires:
            return out, True
    return out, False


def next_fire_time(expr: str, tz: str, after: datetime, *, normalized: bool = False) -> datetime | None:
    """The first fire time at or after ``after`` (UTC)."""
    times, _ = fire_times(expr, tz, after, after + timedelta(days=366 * 8), max_fires=1, normalized=normalized)
    return times[0] if times else None


class VixieCronTrigger:
    """An APScheduler-3-style trigger for a crontab schedule: ``get_next_fire_time`` works (the
    inventory and the schedule checks use it), but it refuses to be stored in an APScheduler job
    store, because cron -- not APScheduler -- runs these jobs: ``cutover legacy sync`` then
    reports the ingestion instead of scheduling it a second time."""

    jitter = None

    def __init__(self, expr: str, tz: str):
        self.expr = normalize_expr(expr)
        self.timezone = ZoneInfo(tz)
        self.tz_name = tz
        self.start_date = None
        self.end_date = None

    def get_next_fire_time(self, previous_fire_time, now):
        start = now
        if previous_fire_time is not None:
            start = max(now, previous_fire_time + timedelta(microseconds=1))
        nxt = next_fire_time(self.expr, self.tz_name, start.astimezone(UTC), normalized=True)
        return nxt.astimezone(self.timezone) if nxt else None

    def __copy__(self):
        return VixieCronTrigger(self.expr, self.tz_name)

    def __reduce_ex__(self, protocol):
        raise InputError(f"the crontab schedule '{self.expr}' is run by cron, not by APScheduler",
                         fix="manage it with `cutover cron` (the legacy crontab), not `cutover legacy sync`")

    def __str__(self) -> str:
        return f"crontab[{self.expr}, {self.tz_name}]"

    __repr__ = __str__
