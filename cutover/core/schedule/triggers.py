"""Legacy schedules: the three forms an ingestion's schedule takes, and the
APScheduler 3 trigger each becomes.

1. frequency + time: ``{"frequency": "hourly", "at": ":15"}``,
   ``{"frequency": "daily", "at": "02:30"}``,
   ``{"frequency": "weekly", "at": "06:00", "day": "mon"}`` (no ``day``: Monday, and the
   normalized spec and every output then say ``mon``);
2. a crontab line: ``{"cron": "0 2 * * 1-5"}`` -- fired exactly as APScheduler 3
   fires it (``CronTrigger.from_crontab``: day_of_week 0 is *Monday* there, and
   day-of-month AND day-of-week must both match), because that is what the
   legacy system really does;
3. an APScheduler trigger spec as APScheduler takes it:
   ``{"trigger": "cron", "day": "last", "hour": 2, "minute": 0, "second": 30, "jitter": 60}``,
   ``{"trigger": "interval", "hours": 6, "start_date": "2026-01-01T00:30:00"}``,
   ``{"trigger": "date", "run_date": "2026-12-24T18:00:00"}``;
4. a line of a real crontab: ``{"crontab": "15 * * * *"}`` -- standard (Vixie/Debian)
   cron semantics, as cron itself runs it (0 and 7 = Sunday; day-of-month OR
   day-of-week when both are restricted). Cron runs these jobs, never APScheduler:
   ``build_trigger`` gives a ``cutover.core.schedule.cronexpr.VixieCronTrigger`` that computes fire times
   but refuses to be stored in an APScheduler job store (see ``legacy/cron``).

No schedule (``None``) means manual only. Every schedule has a timezone: the
ingestion's, or a ``timezone`` key in the spec.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cutover.core.errors import InputError
from cutover.core.schedule.cronexpr import VixieCronTrigger, normalize_expr

FREQUENCIES = ("hourly", "daily", "weekly")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEKLY_DEFAULT_DAY = "mon"  # a weekly schedule without a day runs on Monday (always shown: "weekly mon 06:00")
CRON_FIELDS = ("year", "month", "day", "week", "day_of_week", "hour", "minute", "second")
INTERVAL_FIELDS = ("weeks", "days", "hours", "minutes", "seconds")
_TRIGGER_COMMON = ("start_date", "end_date", "jitter", "timezone")


def check_timezone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(f"unknown timezone {tz!r}", fix="use an IANA name such as UTC or Europe/Berlin") from None


def _hhmm(value: Any, *, hourly: bool) -> tuple[int, int]:
    text = str(value).strip()
    m = re.fullmatch(r"(\d{1,2})?:?(\d{2})", text) if hourly else re.fullmatch(r"(\d{1,2}):(\d{2})", text)
    if not m:
        want = "':MM' or 'HH:MM'" if hourly else "'HH:MM'"
        raise InputError(f"schedule time {text!r} is not {want}", fix="write e.g. at = \"02:30\"")
    hour = int(m.group(1) or 0)
    minute = int(m.group(2))
    if hour > 23 or minute > 59:
        raise InputError(f"schedule time {text!r} is out of range", fix="hours 00-23, minutes 00-59")
    return hour, minute


def parse_schedule_text(text: str | None) -> dict | None:
    """The CLI shorthand: ``daily 02:00``, ``hourly :15``, ``weekly mon 06:00`` (``weekly 06:00`` is
    Monday), ``cron 0 2 * * *``, ``manual``, or a JSON object (trigger spec)."""
    if text is None:
        return None
    t = text.strip()
    if t in ("", "manual", "none"):
        return None
    if t.startswith("{"):
        try:
            spec = json.loads(t)
        except json.JSONDecodeError as e:
            raise InputError(f"schedule JSON is not valid ({e.msg})", fix='write e.g. {"trigger": "cron", "hour": 2}') from None
        return normalize_schedule(spec)
    words = t.split()
    head = words[0].lower()
    if head in ("cron", "cron:"):
        return normalize_schedule({"cron": " ".join(words[1:])})
    if head in ("crontab", "crontab:"):
        return normalize_schedule({"crontab": " ".join(words[1:])})
    if head == "hourly" and len(words) == 2:
        return normalize_schedule({"frequency": "hourly", "at": words[1]})
    if head == "daily" and len(words) == 2:
        return normalize_schedule({"frequency": "daily", "at": words[1]})
    if head == "weekly" and len(words) == 3:
        return normalize_schedule({"frequency": "weekly", "day": words[1], "at": words[2]})
    if head == "weekly" and len(words) == 2:  # no day: Monday (WEEKLY_DEFAULT_DAY), as APScheduler's day_of_week default
        return normalize_schedule({"frequency": "weekly", "at": words[1]})
    if len(words) == 5:  # a bare crontab line
        return normalize_schedule({"cron": t})
    raise InputError(f"schedule {text!r} is not understood",
                     fix="use 'hourly :15', 'daily 02:00', 'weekly mon 06:00', 'cron 0 2 * * *' or a JSON trigger spec")


def normalize_schedule(spec: Any) -> dict | None:
    """Validate a schedule spec and return its canonical dict (or None = manual)."""
    if spec is None:
        return None
    if isinstance(spec, str):
        return parse_schedule_text(spec)
    if not isinstance(spec, dict):
        raise InputError(f"schedule must be a mapping, got {type(spec).__name__}", fix="see `cutover ingestion add --help`")
    spec = dict(spec)
    if "timezone" in spec:
        check_timezone(str(spec["timezone"]))
    if "frequency" in spec:
        freq = str(spec["frequency"]).lower()
        if freq not in FREQUENCIES:
            raise InputError(f"frequency {spec['frequency']!r} is not one of {', '.join(FREQUENCIES)}",
                             fix="or give a cron line / trigger spec instead")
        extra = set(spec) - {"frequency", "at", "day", "timezone"}
        if extra:
            raise InputError(f"unknown schedule key(s) {', '.join(sorted(extra))} for a frequency schedule",
                             fix="use frequency, at, day (weekly), timezone")
        hour, minute = _hhmm(spec.get("at", "00:00"), hourly=freq == "hourly")
        out: dict[str, Any] = {"frequency": freq, "at": f"{hour:02d}:{minute:02d}" if freq != "hourly" else f":{minute:02d}"}
        if freq == "weekly":
            day = str(spec.get("day", WEEKLY_DEFAULT_DAY)).lower()[:3]
            if day not in _DAYS:
                raise InputError(f"weekly day {spec.get('day')!r} is not a weekday", fix="use mon, tue, ..., sun")
            out["day"] = day
        elif "day" in spec:
            raise InputError(f"'day' only applies to weekly schedules, not {freq}", fix="remove it")
        if "timezone" in spec:
            out["timezone"] = str(spec["timezone"])
        build_trigger(out, "UTC")
        return out
    if "cron" in spec:
        extra = set(spec) - {"cron", "timezone"}
        if extra:
            raise InputError(f"unknown schedule key(s) {', '.join(sorted(extra))} for a cron schedule", fix="use cron and timezone")
        line = " ".join(str(spec["cron"]).split())
        if len(line.split()) != 5:
            raise InputError(f"cron line {spec['cron']!r} must have 5 fields", fix="minute hour day month day_of_week")
        out = {"cron": line}
        if "timezone" in spec:
            out["timezone"] = str(spec["timezone"])
        build_trigger(out, "UTC")
        return out
    if "crontab" in spec:
        extra = set(spec) - {"crontab", "timezone"}
        if extra:
            raise InputError(f"unknown schedule key(s) {', '.join(sorted(extra))} for a crontab schedule",
                             fix="use crontab and timezone")
        out = {"crontab": normalize_expr(str(spec["crontab"]))}
        if "timezone" in spec:
            out["timezone"] = str(spec["timezone"])
        return out
    if "trigger" in spec:
        kind = spec["trigger"]
        allowed = {"cron": CRON_FIELDS, "interval": INTERVAL_FIELDS, "date": ("run_date",)}.get(kind)
        if allowed is None:
            raise InputError(f"trigger {kind!r} is not supported", fix="use cron, interval or date")
        extra = set(spec) - {"trigger", *allowed, *_TRIGGER_COMMON}
        if extra:
            raise InputError(f"unknown {kind} trigger field(s) {', '.join(sorted(extra))}",
                             fix=f"APScheduler's {kind} trigger takes {', '.join(allowed + _TRIGGER_COMMON)}")
        out = {"trigger": kind}
        for k in (*allowed, *_TRIGGER_COMMON):
            if k in spec and spec[k] is not None:
                v = spec[k]
                out[k] = v if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)
        build_trigger(out, "UTC")
        return out
    raise InputError("schedule has none of frequency, cron, crontab or trigger",
                     fix="give one of them (or no schedule for manual runs)")


def schedule_timezone(spec: dict | None, default_tz: str) -> str:
    if spec and spec.get("timezone"):
        return str(spec["timezone"])
    return default_tz


def _parse_dt(value: Any, tz: ZoneInfo, what: str) -> datetime:
    if isinstance(value, datetime):
        dt = value
    else:
        try:
            dt = datetime.fromisoformat(str(value))
        except ValueError:
            raise InputError(f"{what} {value!r} is not an ISO date-time", fix="write e.g. 2026-01-01T00:30:00") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=tz)


def build_trigger(spec: dict | None, default_tz: str):
    """The APScheduler 3 trigger for a (normalized) schedule spec; None for manual."""
    if spec is None:
        return None
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.date import DateTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    tz = check_timezone(schedule_timezone(spec, default_tz))
    if "crontab" in spec:  # run by cron (Vixie semantics), never by APScheduler: see legacy/cron/side.py
        return VixieCronTrigger(spec["crontab"], str(tz))
    try:
        if "frequency" in spec:
            freq = spec["frequency"]
            hour, minute = _hhmm(spec["at"], hourly=freq == "hourly")
            if freq == "hourly":
                return CronTrigger(minute=minute, second=0, timezone=tz)
            if freq == "daily":
                return CronTrigger(hour=hour, minute=minute, second=0, timezone=tz)
            return CronTrigger(day_of_week=spec.get("day", "mon"), hour=hour, minute=minute, second=0, timezone=tz)
        if "cron" in spec:
            return CronTrigger.from_crontab(spec["cron"], timezone=tz)
        kind = spec["trigger"]
        common: dict[str, Any] = {"timezone": tz}
        for k in ("start_date", "end_date"):
            if spec.get(k) is not None:
                common[k] = _parse_dt(spec[k], tz, k)
        if spec.get("jitter") is not None and kind != "date":
            common["jitter"] = int(spec["jitter"])
        if kind == "cron":
            fields = {k: spec[k] for k in CRON_FIELDS if k in spec}
            return CronTrigger(**fields, **common)
        if kind == "interval":
            fields = {k: float(spec[k]) for k in INTERVAL_FIELDS if k in spec}
            if not fields or sum(fields.values()) <= 0:
                raise InputError("interval trigger needs a positive interval", fix="give e.g. hours = 6")
            return IntervalTrigger(**fields, **common)
        if "run_date" not in spec:
            raise InputError("date trigger needs run_date", fix="give run_date = 2026-12-24T18:00:00")
        return DateTrigger(run_date=_parse_dt(spec["run_date"], tz, "run_date"), timezone=tz)
    except InputError:
        raise
    except (ValueError, TypeError) as e:
        raise InputError(f"schedule {describe(spec)} is not valid for APScheduler ({e})", fix="fix the schedule fields") from None


def trigger_to_spec(trigger) -> tuple[dict, str]:
    """A real APScheduler 3 trigger back to (spec, timezone): used by `legacy import`."""
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.date import DateTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    tz = str(getattr(trigger, "timezone", "UTC"))
    if isinstance(trigger, CronTrigger):
        spec: dict[str, Any] = {"trigger": "cron"}
        for f in trigger.fields:
            if not f.is_default:
                spec[f.name] = str(f)
        for k in ("start_date", "end_date"):
            v = getattr(trigger, k, None)
            if v is not None:
                spec[k] = v.isoformat()
        if trigger.jitter:
            spec["jitter"] = trigger.jitter
        return spec, tz
    if isinstance(trigger, IntervalTrigger):
        secs = trigger.interval.total_seconds()
        spec = {"trigger": "interval"}
        for name, unit in (("weeks", 604800), ("days", 86400), ("hours", 3600), ("minutes", 60)):
            if secs >= unit and secs % unit == 0:
                spec[name] = int(secs // unit)
                break
        else:
            spec["seconds"] = int(secs) if float(secs).is_integer() else secs
        spec["start_date"] = trigger.start_date.isoformat()
        if trigger.end_date is not None:
            spec["end_date"] = trigger.end_date.isoformat()
        if trigger.jitter:
            spec["jitter"] = trigger.jitter
        return spec, tz
    if isinstance(trigger, DateTrigger):
        return {"trigger": "date", "run_date": trigger.run_date.isoformat()}, tz
    raise InputError(f"trigger {trigger!r} ({type(trigger).__name__}) cannot be imported",
                     fix="only cron, interval and date triggers are supported; split combined triggers into jobs")


def describe(spec: dict | None) -> str:
    """Short human form: ``daily 02:30``, ``cron 0 2 * * *``, ``cron(day=last, hour=2)``."""
    if spec is None:
        return "manual"
    if "frequency" in spec:
        f = spec["frequency"]
        base = f"weekly {spec.get('day', 'mon')} {spec['at']}" if f == "weekly" else f"{f} {spec['at']}"
    elif "cron" in spec:
        base = f"cron {spec['cron']}"
    elif "crontab" in spec:
        base = f"crontab {spec['crontab']}"
    else:
        args = ", ".join(f"{k}={v}" for k, v in spec.items() if k not in ("trigger", "timezone"))
        base = f"{spec['trigger']}({args})"
    return base


def next_fire_times(trigger, start: datetime, count: int = 5, *, until: datetime | None = None) -> list[datetime]:
    """The next fire times as APScheduler 3 computes them (jitter left out: it is random)."""
    if getattr(trigger, "jitter", None):
        import copy

        trigger = copy.copy(trigger)
        trigger.jitter = None
    out: list[datetime] = []
    prev = None
    now = start
    for _ in range(count if until is None else 10**7):
        nxt = trigger.get_next_fire_time(prev, now)
        if nxt is None or (until is not None and nxt > until):
            break
        out.append(nxt)
        prev = nxt
        now = nxt.astimezone(timezone.utc) + timedelta(microseconds=1)  # keeps the repeated hour apart
        if until is None and len(out) >= count:
            break
    return out
