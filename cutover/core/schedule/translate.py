"""Legacy schedule -> Prefect 3 schedule, field by field, from the real APScheduler 3 trigger.

The translation reads the *compiled* APScheduler trigger (``cutover.core.schedule.triggers.build_trigger``),
not the text the user wrote, so it follows APScheduler's own rules:

- ``CronTrigger.from_crontab`` keeps APScheduler's weekday numbering (0 = Monday), so the
  crontab line ``0 2 * * 0`` really fires on Mondays; the Prefect cron says ``1``.
- APScheduler ANDs day-of-month and day-of-week; cron ORs them when both are restricted,
  so those become ``CronSchedule(day_or=False)``.
- Fields left out before the last given one are ``*``, after it their minimum
  (``CronTrigger(hour=2)`` fires at 02:00:00 once a day) -- the compiled fields carry that.
- APScheduler-only day expressions (``last``, ``last fri``, ``2nd mon``), ``week`` and
  ``year`` and start/end dates become an RRULE, which expresses them exactly.
- Interval triggers are absolute time in APScheduler (timestamps + seconds); Prefect's
  IntervalSchedule adds whole *calendar* days in its timezone, so a >= 1 day interval in a
  zone with DST runs in UTC (absolute again).
- Every hour at :MM in a DST zone is every hour at :MM' in UTC; the UTC form also fires in
  both repeated hours at fall-back, as APScheduler 3 does (Prefect's zoned cron skips one).

What cannot be expressed is refused with an InputError naming the field and the fix
(``--allow-approx`` to drop it); with ``allow_approx`` the translation is marked
``exact=False`` and the notes say what was dropped. ``exact`` means every field of the legacy
rule is encoded; whether both engines then fire at the same *instants* -- DST change days
included, where each library has its own rules -- is what :func:`cutover.core.schedule.verify.verify`
proves.

The Prefect schedule itself (:class:`Translation`) is in ``cutover.core.schedule.translation``; prefect
is imported only inside :meth:`Translation.to_prefect_schedule`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from cutover.core.errors import InputError
from cutover.core.schedule.crontab import translate_crontab
from cutover.core.schedule.translation import (  # noqa: F401 - Translation and the zone facts are used from here too
    DAYS, DEFAULT_RRULE_START, RRULE_DAYS, UTC, Translation, cron_field, dst_transitions, dst_windows, rrule_dt,
    zone_offsets)
from cutover.core.schedule.triggers import build_trigger, check_timezone, describe, schedule_timezone


# -- value sets from compiled APScheduler fields ---------------------------------------------

_LIMITS = {"year": (1970, 9999), "month": (1, 12), "day": (1, 31), "week": (1, 53),
           "day_of_week": (0, 6), "hour": (0, 23), "minute": (0, 59), "second": (0, 59)}


@dataclass
class _Field:
    name: str
    text: str
    values: set[int]  # plain values (APScheduler numbering)
    last_day: bool = False  # day='last'
    positions: list[tuple[int, int]] = field(default_factory=list)  # day='2nd mon' -> (2, 0); 'last fri' -> (-1, 4)

    @property
    def full(self) -> bool:
        lo, hi = _LIMITS[self.name]
        return not self.last_day and not self.positions and self.values == set(range(lo, hi + 1))

    @property
    def plain(self) -> bool:
        return not self.last_day and not self.positions


def _field(f) -> _Field:
    from apscheduler.triggers.cron.expressions import (
        AllExpression,
        LastDayOfMonthExpression,
        RangeExpression,
        WeekdayPositionExpression,
    )

    lo, hi = _LIMITS[f.name]
    out = _Field(f.name, str(f), set())
    for e in f.expressions:
        if isinstance(e, LastDayOfMonthExpression):
            out.last_day = True
        elif isinstance(e, WeekdayPositionExpression):
            out.positions.append((-1 if e.option_num == 5 else e.option_num + 1, e.weekday))
        elif isinstance(e, RangeExpression):  # also month / weekday names
            last = hi if e.last is None else min(e.last, hi)
            out.values.update(range(max(e.first, lo), last + 1, e.step or 1))
        elif isinstance(e, AllExpression):
            out.values.update(range(lo, hi + 1, e.step or 1))
        else:  # pragma: no cover - a future APScheduler expression
            raise InputError(f"APScheduler expression {e!r} in field {f.name} is not understood",
                             fix="rewrite the field with numbers, ranges and steps")
    return out


# -- translate -----------------------------------------------------------------------------


class _Issues:
    """Things Prefect cannot express: refused, or dropped with allow_approx."""

    def __init__(self, what: str, allow_approx: bool):
        self.what = what
        self.allow_approx = allow_approx
        self.notes: list[str] = []
        self.approximated: list[str] = []
        self.exact = True

    def cannot(self, field_name: str, problem: str, dropped: str, *, fix: str | None = None) -> None:
        if not self.allow_approx:
            raise InputError(f"schedule {self.what}: {field_name} cannot be expressed by a Prefect schedule ({problem})",
                             fix=f"{fix or f'remove {field_name} from the legacy schedule'}, "
                                 f"or pass --allow-approx to drop it ({dropped})")
        self.exact = False
        self.approximated.append(field_name)
        self.notes.append(f"APPROXIMATE: {field_name} dropped ({problem}); {dropped}")


def translate(spec: dict | None, timezone: str, *, allow_approx: bool = False,
              as_of: datetime | None = None) -> Translation:
    """The Prefect 3 schedule for a normalized legacy schedule (see cutover.core.schedule.triggers),
    as deployed at ``as_of`` (default now): an interval whose start_date is still ahead then is an
    RRULE starting at it (see ``_from_interval``)."""
    tz = schedule_timezone(spec, timezone)
    check_timezone(tz)
    if spec is None:
        return Translation(kind=None, timezone=tz, notes=["manual only: no schedule on either side"])
    if "crontab" in spec:  # run by cron with standard (Vixie) semantics, not APScheduler's
        return translate_crontab(spec["crontab"], tz, allow_approx=allow_approx)
    trigger = build_trigger(spec, timezone)  # InputError for an invalid spec
    issues = _Issues(describe(spec), allow_approx)

    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.date import DateTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    if isinstance(trigger, CronTrigger):
        return _from_cron(trigger, spec, tz, issues)
    if isinstance(trigger, IntervalTrigger):
        return _from_interval(trigger, spec, tz, issues, _as_of(as_of))
    if isinstance(trigger, DateTrigger):
        return _from_date(trigger, tz, issues)
    raise InputError(f"trigger {type(trigger).__name__} is not supported", fix="use cron, interval or date")


def _as_of(as_of: datetime | None) -> datetime:
    if as_of is None:
        return datetime.now(UTC)
    return as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)


def _from_cron(trigger, spec: dict, tz: str, issues: _Issues) -> Translation:
    f = {x.name: _field(x) for x in trigger.fields}
    notes: list[str] = []

    # seconds and jitter: not in a 5-field cron (and kept out of RRULEs on purpose)
    if f["second"].values != {0}:
        issues.cannot(f"second='{f['second'].text}'", "a 5-field cron fires at second 0",
                      "the Prefect schedule fires at second 0 of the same minutes")
    if trigger.jitter:
        issues.cannot(f"jitter={trigger.jitter}", "Prefect schedules have no random delay",
                      f"Prefect fires on the nominal time; legacy fired up to {trigger.jitter}s later at random")

    # crontab weekday numbering
    if "cron" in spec:
        dow_text = spec["cron"].split()[4]
        if any(c.isdigit() for c in dow_text) and not f["day_of_week"].full:
            legacy_days = ",".join(DAYS[d] for d in sorted(f["day_of_week"].values))
            notes.append(f"crontab day-of-week '{dow_text}' is read by APScheduler 3 with 0 = Monday "
                         f"(CronTrigger.from_crontab does not convert), so the legacy job really fires on "
                         f"{legacy_days}; the Prefect cron (0 = Sunday) says "
                         f"'{cron_field({(d + 1) % 7 for d in f['day_of_week'].values}, 0, 6)}'")

    year = f["year"]
    year_bounds: tuple[int, int] | None = None
    if not year.full:
        ys = sorted(year.values)
        if ys != list(range(ys[0], ys[-1] + 1)):
            issues.cannot(f"year='{year.text}'", "only one contiguous range of years can be expressed",
                          f"the Prefect schedule fires in every year from {ys[0]} to {ys[-1]}")
        year_bounds = (ys[0], ys[-1])

    d = f["day"]
    if d.plain and not any(x <= (29 if m == 2 else 30 if m in (4, 6, 9, 11) else 31)
                           for m in f["month"].values for x in d.values):
        raise InputError(f"schedule day='{d.text}' with month='{f['month'].text}' never fires",
                         fix="fix the legacy schedule")
    croniter_gap = (d.plain and not d.full and 2 in f["month"].values
                    and min(d.values) + 29 <= max(d.values))
    if croniter_gap:
        notes.append(f"day='{d.text}' as a cron line would make Prefect (its vendored croniter) skip the start "
                     f"of March: after February it overshoots to 'February {max(d.values)}' = March "
                     f"{max(d.values) - 28} and misses the earlier days; the RRULE form has no such gap")
    needs_rrule = (not d.plain or not f["week"].full or year_bounds is not None or croniter_gap
                   or trigger.start_date is not None or trigger.end_date is not None)
    if needs_rrule:
        return _cron_as_rrule(trigger, f, tz, issues, notes, year_bounds)

    minute, hour, day, month, dow = f["minute"].values, f["hour"].values, f["day"], f["month"], f["day_of_week"]
    both = not day.full and not dow.full
    if both:
        notes.append("day and day_of_week are both restricted: APScheduler requires both to match, "
                     "so the Prefect cron uses day_or=False (cron alone would fire on either)")
    cron_tz = tz
    offsets = zone_offsets(tz)
    if (len(offsets) > 1 and f["hour"].full and day.full and month.full and dow.full
            and len({o % 3600 for o in offsets}) == 1 and next(iter(offsets)) % 60 == 0):
        shift = (next(iter(offsets)) % 3600) // 60
        minute = {(m - shift) % 60 for m in minute}
        cron_tz = "UTC"
        notes.append(f"every hour at the same minute in {tz} is every hour at a fixed minute in UTC "
                     f"(its UTC offsets differ by whole hours), so the Prefect cron runs in UTC: like "
                     f"APScheduler 3 it then also fires in the repeated hour when clocks go back")
    cron = " ".join([
        cron_field(minute, 0, 59),
        cron_field(f["hour"].values, 0, 23),
        cron_field(day.values, 1, 31),
        cron_field(month.values, 1, 12),
        cron_field({(d + 1) % 7 for d in dow.values}, 0, 6),
    ])
    if cron_tz == tz:
        notes.extend(_dst_notes(tz, f))
    return Translation(kind="cron", cron=cron, day_or=not both, timezone=cron_tz,
                       exact=issues.exact, approximated=list(issues.approximated), notes=notes + issues.notes)


def _cron_as_rrule(trigger, f: dict[str, _Field], tz: str, issues: _Issues, notes: list[str],
                   year_bounds: tuple[int, int] | None) -> Translation:
    zone = ZoneInfo(tz)
    day, dow, week = f["day"], f["day_of_week"], f["week"]
    why = []
    if not day.plain or (not day.full and min(day.values) + 29 <= max(day.values)):
        why.append(f"day='{day.text}'")
    if not week.full:
        why.append(f"week='{week.text}'")
    if year_bounds:
        why.append(f"year='{f['year'].text}'")
    if trigger.start_date is not None:
        why.append("start_date")
    if trigger.end_date is not None:
        why.append("end_date")

    start = DEFAULT_RRULE_START
    until = None
    if year_bounds:
        start = max(start, datetime(year_bounds[0], 1, 1))
        if year_bounds[1] < 9999:
            until = datetime(year_bounds[1], 12, 31, 23, 59, 59)
    if trigger.start_date is not None:
        start = max(start, trigger.start_date.astimezone(zone).replace(tzinfo=None))
        if trigger.start_date.microsecond:
            start = start.replace(microsecond=0) + timedelta(seconds=1)
    if trigger.end_date is not None:
        end_local = trigger.end_date.astimezone(zone).replace(tzinfo=None, microsecond=0)
        until = end_local if until is None else min(until, end_local)

    common = [f"FREQ={'YEARLY' if not week.full else 'MONTHLY'}",
              "BYMONTH=" + ",".join(str(m) for m in sorted(f["month"].values))]
    if not week.full:
        common.append("BYWEEKNO=" + ",".join(str(w) for w in sorted(week.values)))
    tail = ["BYHOUR=" + ",".join(str(h) for h in sorted(f["hour"].values)),
            "BYMINUTE=" + ",".join(str(m) for m in sorted(f["minute"].values)),
            "BYSECOND=0", "WKST=MO"]
    if until is not None:
        tail.append(f"UNTIL={rrule_dt(until)}")
    weekdays = ",".join(RRULE_DAYS[d] for d in sorted(dow.values))

    rules = []
    monthdays = sorted(day.values) + ([-1] if day.last_day else [])
    if day.plain and day.full:
        rules.append(common + [f"BYDAY={weekdays}"] + tail)
    elif monthdays:
        r = common + ["BYMONTHDAY=" + ",".join(str(d) for d in monthdays)]
        if not dow.full:
            r.append(f"BYDAY={weekdays}")  # RRULE BY* parts are ANDed, like APScheduler
        rules.append(r + tail)
    if day.positions:
        # APScheduler: '2nd mon' (day) AND day_of_week; a position whose weekday is excluded never fires
        kept = [(n, w) for n, w in day.positions if w in dow.values]
        if kept:
            rules.append(common + ["BYDAY=" + ",".join(f"{n:+d}{RRULE_DAYS[w]}" for n, w in kept)] + tail)
    if not rules:
        raise InputError(f"schedule day='{day.text}' with day_of_week='{dow.text}' never fires",
                         fix="fix the legacy schedule")
    text = f"DTSTART:{rrule_dt(start)}\n" + "\n".join("RRULE:" + ";".join(r) for r in rules)
    notes.append(f"{', '.join(why)} cannot be written as a cron line; the RRULE expresses "
                 f"{'them' if len(why) > 1 else 'it'} exactly (day-of-month AND weekday, as APScheduler)")
    notes.extend(_dst_notes(tz, f))
    return Translation(kind="rrule", rrule=text, timezone=tz, exact=issues.exact, approximated=list(issues.approximated), notes=notes + issues.notes)


def _dst_notes(tz: str, f: dict[str, _Field]) -> list[str]:
    """A warning when the schedule fires at wall times the zone skips or repeats."""
    hits: dict[str, datetime] = {}
    for kind, a, b in dst_windows(tz):
        t = a
        while t < b:
            if (t.month in f["month"].values and t.hour in f["hour"].values and t.minute in f["minute"].values
                    and t.weekday() in f["day_of_week"].values
                    and (not f["day"].plain or t.day in f["day"].values)):
                hits.setdefault(kind, t)
                break
            t += timedelta(minutes=1)
    notes = []
    if "gap" in hits:
        notes.append(f"DST: fires at a wall time {tz} skips (e.g. {hits['gap']:%Y-%m-%d %H:%M}): APScheduler 3 fires it "
                     f"at the old UTC offset (one hour later on the new clock), Prefect one hour earlier (or not at "
                     f"all if that time also fires): `cutover schedules verify` shows the day")
    if "fold" in hits:
        notes.append(f"DST: fires at a wall time {tz} repeats (e.g. {hits['fold']:%Y-%m-%d %H:%M}): APScheduler 3 fires "
                     f"both occurrences, Prefect only the first: `cutover schedules verify` shows the day")
    return notes


def _from_interval(trigger, spec: dict, tz: str, issues: _Issues, as_of: datetime) -> Translation:
    """APScheduler counts an interval from its start_date in absolute time. Prefect's
    IntervalSchedule keeps that anchor (anchor_date = start_date) but, having no start, would also
    fire *before* it; so while the start is still ahead (at ``as_of``: when the deployment is made
    or the verification starts) -- or when there is an end_date -- the interval is an RRULE in UTC
    whose DTSTART is the start (and UNTIL the end): it never fires outside them."""
    secs = trigger.interval.total_seconds()
    notes: list[str] = []
    if trigger.jitter:
        issues.cannot(f"jitter={trigger.jitter}", "Prefect schedules have no random delay",
                      f"Prefect fires on the nominal time; legacy fired up to {trigger.jitter}s later at random")
    if spec.get("start_date") is None:
        issues.cannot("the interval anchor",
                      "without start_date APScheduler anchors an interval at the moment the job was added, "
                      "so its fire times are unknown here",
                      "the Prefect interval is anchored at an arbitrary instant: its fire times will be shifted",
                      fix="set start_date to the legacy job's anchor (`cutover legacy import` copies it from the job)")
    anchor = trigger.start_date
    future_start = spec.get("start_date") is not None and anchor > as_of
    if trigger.end_date is not None or future_start:
        for unit, n in (("DAILY", 86400), ("HOURLY", 3600), ("MINUTELY", 60), ("SECONDLY", 1)):
            if secs % n == 0:
                break
        if not float(secs).is_integer() or anchor.microsecond:
            what = "end_date" if trigger.end_date is not None else "a start_date still ahead"
            issues.cannot(f"{what} with a sub-second interval or start", "an RRULE counts whole seconds",
                          "the Prefect schedule has no start or end")
        else:
            a = anchor.astimezone(UTC).replace(tzinfo=None)
            rrule = f"DTSTART:{rrule_dt(a)}\nRRULE:FREQ={unit};INTERVAL={int(secs // n)}"
            if trigger.end_date is not None:
                e = trigger.end_date.astimezone(UTC).replace(tzinfo=None, microsecond=0)
                rrule += f";UNTIL={rrule_dt(e)}"
            bounds = " and UNTIL = end_date" if trigger.end_date is not None else ""
            why = ("end_date: Prefect's IntervalSchedule has no end" if trigger.end_date is not None else
                   f"start_date {anchor.isoformat()} is still ahead and Prefect's IntervalSchedule would fire "
                   f"before its anchor")
            notes.append(f"{why}, so the interval is an RRULE in UTC (absolute time, as APScheduler counts it) "
                         f"with DTSTART = start_date{bounds}: it never fires before the start")
            return Translation(kind="rrule", rrule=rrule, timezone="UTC", exact=issues.exact,
                               approximated=list(issues.approximated), notes=notes + issues.notes)
    ptz = tz
    if secs >= 86400 and len(zone_offsets(tz)) > 1:
        ptz = "UTC"
        anchor = anchor.astimezone(UTC)
        notes.append(f"APScheduler 3 counts intervals in absolute time; Prefect adds calendar days in the schedule's "
                     f"timezone, which in {tz} would shift by an hour at DST changes, so the Prefect interval runs "
                     f"in UTC (same instants)")
    if spec.get("start_date") is not None:
        notes.append(f"anchored at the legacy start_date {trigger.start_date.isoformat()} (IntervalSchedule "
                     f"anchor_date), which is already past: Prefect schedules runs from now on, at the same phase")
    return Translation(kind="interval", interval_seconds=secs, anchor_date=anchor.isoformat(), timezone=ptz,
                       exact=issues.exact, approximated=list(issues.approximated), notes=notes + issues.notes)


def _from_date(trigger, tz: str, issues: _Issues) -> Translation:
    run = trigger.run_date
    if run.microsecond:
        issues.cannot("run_date's sub-second part", "an RRULE counts whole seconds",
                      "the Prefect run fires at the whole second")
    r = run.astimezone(UTC).replace(tzinfo=None, microsecond=0)
    return Translation(kind="rrule", rrule=f"DTSTART:{rrule_dt(r)}\nRRULE:FREQ=DAILY;COUNT=1", timezone="UTC",
                       exact=issues.exact, approximated=list(issues.approximated),
                       notes=[f"one-off run at {run.isoformat()}: a Prefect schedule with a single occurrence "
                              f"(RRULE COUNT=1, in UTC); once past it never fires again. A one-off can also be "
                              f"triggered with `prefect deployment run FLOW/DEPLOYMENT --start-at ...`"] + issues.notes)
