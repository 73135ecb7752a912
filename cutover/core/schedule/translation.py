"""A Prefect 3 schedule as cutover computes it (:class:`Translation`), and the timezone and cron
text facts both translations use: ``translate`` (APScheduler triggers) and ``crontab`` (Vixie
cron lines).

prefect is imported only inside :meth:`Translation.to_prefect_schedule`.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone as dt_timezone
from typing import Any
from zoneinfo import ZoneInfo

from cutover.core.errors import InputError

UTC = dt_timezone.utc
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # APScheduler numbering: 0 = Monday
RRULE_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
CRON_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # cron numbering: 0 = Sunday
_ORDINALS = ("1st", "2nd", "3rd", "4th", "5th", "last")
DEFAULT_RRULE_START = datetime(2020, 1, 1)  # Prefect's own implicit DTSTART


@dataclass(frozen=True, kw_only=True)
class Translation:
    """A Prefect 3 schedule equivalent to one legacy schedule (kind None = manual only)."""

    kind: str | None  # 'cron' | 'interval' | 'rrule' | None
    timezone: str = "UTC"
    cron: str | None = None
    day_or: bool = True
    interval_seconds: float | None = None
    anchor_date: str | None = None  # ISO 8601 with offset
    rrule: str | None = None
    exact: bool = True
    notes: list[str] = field(default_factory=list)
    approximated: list[str] = field(default_factory=list)  # what Prefect cannot express, dropped (--allow-approx)

    def _key(self) -> tuple:
        return (self.kind, self.timezone, self.cron, self.day_or, self.interval_seconds, self.anchor_date, self.rrule)

    def to_prefect_schedule(self):
        """The ``prefect.client.schemas.schedules`` object (None for manual); a fresh copy each call."""
        if self.kind is None:
            return None
        key = ("client", *self._key())
        if key not in _BUILT:
            _BUILT[key] = self._build_client()
        return _BUILT[key].model_copy(deep=True)

    def _build_client(self):
        ps = _prefect_schedules()
        try:
            if self.kind == "cron":
                return ps.CronSchedule(cron=self.cron, timezone=self.timezone, day_or=self.day_or)
            if self.kind == "interval":
                return ps.IntervalSchedule(interval=timedelta(seconds=self.interval_seconds),
                                           anchor_date=datetime.fromisoformat(self.anchor_date),
                                           timezone=self.timezone)
            if self.kind == "rrule":
                return ps.RRuleSchedule(rrule=self.rrule, timezone=self.timezone)
        except ValueError as e:  # pydantic ValidationError is a ValueError
            first = str(e).splitlines()
            raise InputError(f"Prefect does not accept the {self.kind} schedule {self.describe()} "
                             f"({' '.join(first[-2:]).strip() if first else e})",
                             fix="check the timezone name and the schedule fields") from None
        raise ValueError(f"unknown schedule kind {self.kind!r}")

    def to_server_schedule(self):
        """The same schedule as the Prefect *server* holds it (``prefect.server.schemas.schedules``):
        the client object serialized to JSON and parsed back, as the API does (built once per
        distinct schedule: callers only read it)."""
        if self.kind is None:
            return None
        key = ("server", *self._key())
        if key not in _BUILT:
            client = self.to_prefect_schedule()
            from prefect.server.schemas import schedules as ss

            cls = {"cron": ss.CronSchedule, "interval": ss.IntervalSchedule, "rrule": ss.RRuleSchedule}[self.kind]
            _BUILT[key] = cls.model_validate(client.model_dump(mode="json"))
        return _BUILT[key]

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["notes"] = list(self.notes)
        d["approximated"] = list(self.approximated)
        d["text"] = self.describe()
        return d

    def describe(self) -> str:
        if self.kind is None:
            return "manual"
        if self.kind == "cron":
            return f"cron {self.cron}{'' if self.day_or else ' (day AND weekday)'} {self.timezone}"
        if self.kind == "interval":
            return f"every {_human_seconds(self.interval_seconds)} from {self.anchor_date} {self.timezone}"
        return f"rrule {self.rrule.replace(chr(10), ' ')} {self.timezone}"


_BUILT: dict[tuple, Any] = {}  # Prefect schedule objects by content: validating one costs ~10-70 ms
_ZONES_MEMOIZED = False


def _prefect_schedules():
    """``prefect.client.schemas.schedules``, with Prefect's IANA zone list memoized: its timezone
    validator calls ``zoneinfo.available_timezones()`` -- a walk of the tz database on disk (~70 ms
    here) -- for every schedule it validates, and that list cannot change within a process."""
    global _ZONES_MEMOIZED
    from prefect.client.schemas import schedules as ps

    if not _ZONES_MEMOIZED:
        _ZONES_MEMOIZED = True
        try:
            from prefect._internal.schemas import validators
        except ImportError:  # pragma: no cover - another Prefect layout: only slower
            return ps
        if callable(getattr(validators, "get_timezones", None)):
            validators.get_timezones = functools.cache(validators.get_timezones)
    return ps


def _human_seconds(secs: float | None) -> str:
    if secs is None:
        return "?"
    s = float(secs)
    for unit, n in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n and s % n == 0:
            return f"{int(s // n)}{unit}"
    return f"{int(s)}s" if s.is_integer() else f"{s}s"


# -- timezone facts ------------------------------------------------------------------------


def _zone(tz):
    return ZoneInfo(tz) if isinstance(tz, str) else tz


@functools.lru_cache(maxsize=256)
def zone_offsets(tz: str) -> frozenset[int]:
    """Every UTC offset (seconds) the zone uses from 2000 to 2100 (sampled every 3 days)."""
    z = ZoneInfo(tz)
    out = set()
    d = datetime(2000, 1, 1, 12, tzinfo=UTC)
    end = datetime(2100, 1, 1, tzinfo=UTC)
    while d < end:
        out.add(int(d.astimezone(z).utcoffset().total_seconds()))
        d += timedelta(days=3)
    return frozenset(out)


@functools.lru_cache(maxsize=256)
def dst_transitions(tz: str, first_year: int = 2020, last_year: int = 2040) -> tuple[tuple[datetime, int, int], ...]:
    """(instant UTC, offset before, offset after) for every offset change in [first_year, last_year)."""
    z = ZoneInfo(tz)

    def off(t: datetime) -> int:
        return int(t.astimezone(z).utcoffset().total_seconds())

    out = []
    d = datetime(first_year, 1, 1, tzinfo=UTC)
    end = datetime(last_year, 1, 1, tzinfo=UTC)
    prev = off(d)
    while d < end:
        nxt = d + timedelta(days=1)
        o = off(nxt)
        if o != prev:
            lo, hi = d, nxt  # off(lo) == prev, off(hi) == o
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                if off(mid) == prev:
                    lo = mid
                else:
                    hi = mid
            out.append((hi.replace(microsecond=0), prev, o))
            prev = o
        d = nxt
    return tuple(out)


def dst_windows(tz: str) -> list[tuple[str, datetime, datetime]]:
    """Wall-clock windows the zone skips ('gap') or repeats ('fold') from this year on for 20
    years: (kind, start, end), naive."""
    this_year = datetime.now(UTC).year
    out = []
    for t, before, after in dst_transitions(tz, this_year, this_year + 20):
        a = (t + timedelta(seconds=before)).replace(tzinfo=None)
        b = (t + timedelta(seconds=after)).replace(tzinfo=None)
        out.append(("gap", a, b) if after > before else ("fold", b, a))
    return out


def cron_field(values: set[int], lo: int, hi: int) -> str:
    """Shortest faithful cron text for a set of values."""
    vals = sorted(values)
    if not vals:
        raise ValueError("empty field")
    if vals == list(range(lo, hi + 1)):
        return "*"
    if len(vals) >= 3:
        step = vals[1] - vals[0]
        if step > 1 and all(b - a == step for a, b in zip(vals, vals[1:])):
            if vals[0] == lo and vals[-1] + step > hi:
                return f"*/{step}"
            return f"{vals[0]}-{vals[-1]}/{step}"
    parts, i = [], 0
    while i < len(vals):
        j = i
        while j + 1 < len(vals) and vals[j + 1] == vals[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"{vals[i]}-{vals[j]}")
        else:
            parts.extend(str(v) for v in vals[i:j + 1])
        i = j + 1
    return ",".join(parts)


def rrule_dt(dt: datetime) -> str:
    return dt.strftime("%Y%m%dT%H%M%S")
