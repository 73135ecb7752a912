"""Prove a translation: the legacy fire times vs the Prefect fire times, instant by instant.

- Legacy side: the real APScheduler 3 trigger (``cutover.core.schedule.triggers.build_trigger``), iterated
  the way its scheduler does it -- ``get_next_fire_time(previous, now)`` with ``now`` just
  after the previous fire time, as an absolute (UTC) instant -- with jitter left out
  (it is random; the translation says whether it was dropped).
- Prefect side: the schedule as the Prefect *server* holds it
  (``prefect.server.schemas.schedules``), asked for its dates with the same generator the
  server's scheduler service uses (``_get_dates_generator(n, start, end)``), page after page
  from just after the last date. Each call gives at most ~1,000 dates (Prefect's own cap).
- Both sides are compared as UTC instants over ``[start, start + horizon]`` (inclusive),
  across DST changes: whatever each library does there, the comparison shows it.

The default horizon (:func:`default_horizon`) is at least 366 days and reaches past the next
two DST changes of every zone involved (a day beyond the second), so a schedule that differs
only on the spring-forward or fall-back day cannot pass on a short window.

Every differing instant is counted; the first :data:`SHOWN` are kept with their context.
Verdicts: ``equivalent`` (exact translation, same instants), ``approximate`` (same nominal
instants, but the translation dropped what Prefect cannot express -- jitter, seconds -- so it
is *not* a proof; ``approximated`` says what), ``different``, ``untranslatable``.

The work is bounded: at most ``max_fires`` fire times per side (the compared window is then
cut where the first side stopped, and the notes say so).
"""

from __future__ import annotations

import copy
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone as dt_timezone
from typing import Any
from zoneinfo import ZoneInfo

from cutover.core.errors import InputError
from cutover.core.schedule.cronexpr import VixieCronTrigger, fields as cron_fields, fire_times
from cutover.core.schedule.stitch import breakpoints, plan_gaps, stitched
from cutover.core.schedule.translate import Translation, dst_transitions, translate
from cutover.core.schedule.triggers import build_trigger, check_timezone, schedule_timezone

UTC = dt_timezone.utc
MAX_FIRES = 200_000
PAGE = 1000
MIN_HORIZON = timedelta(days=366)
SHOWN = 10  # differences kept with their context (all are counted)
VERDICTS = ("equivalent", "approximate", "different", "untranslatable")
DAY = timedelta(days=1)
_DATE_FIELDS = ("year", "month", "day", "week", "day_of_week")


def default_horizon(zones, start: datetime) -> timedelta:
    """At least 366 days, and one day past the second DST change ahead of ``start`` in every zone of ``zones``
    (zones without DST changes in the next 20 years add nothing)."""
    start = _utc(start)
    out = MIN_HORIZON
    for tz in {z for z in zones if z}:
        ahead = [t for t, _, _ in dst_transitions(str(tz), start.year, start.year + 21) if t > start][:2]
        if len(ahead) == 2:
            out = max(out, ahead[1] - start + timedelta(days=1))
    return out


@dataclass(frozen=True)
class Difference:
    """The first instant present on one side only, with each side's fire times around it."""

    at: datetime  # UTC
    only_on: str  # 'legacy' | 'prefect'
    legacy_before: datetime | None
    legacy_after: datetime | None
    prefect_before: datetime | None
    prefect_after: datetime | None
    timezone: str = "UTC"

    @property
    def missing_on(self) -> str:
        return "prefect" if self.only_on == "legacy" else "legacy"

    def local(self, dt: datetime | None) -> str:
        if dt is None:
            return "-"
        return dt.astimezone(ZoneInfo(self.timezone)).strftime("%Y-%m-%d %H:%M:%S %Z")

    def describe(self) -> str:
        other = self.missing_on
        before = self.prefect_before if other == "prefect" else self.legacy_before
        after = self.prefect_after if other == "prefect" else self.legacy_after
        def when(dt: datetime | None, word: str) -> str:
            return f"nothing {word} it" if dt is None else f"{_iso(dt)} ({self.local(dt)}) {word} it"

        return (f"{_iso(self.at)} ({self.local(self.at)}) fires on {self.only_on} only; "
                f"{other} fires {when(before, 'before')} and {when(after, 'after')}")

    def as_dict(self) -> dict[str, Any]:
        return {"at": _iso(self.at), "at_local": self.local(self.at), "only_on": self.only_on,
                "legacy_before": _iso(self.legacy_before), "legacy_after": _iso(self.legacy_after),
                "prefect_before": _iso(self.prefect_before), "prefect_after": _iso(self.prefect_after),
                "text": self.describe()}


@dataclass(frozen=True)
class VerifyResult:
    verdict: str  # one of VERDICTS
    legacy_count: int
    prefect_count: int
    first_difference: Difference | None
    translation: Translation | None
    notes: list[str] = field(default_factory=list)
    start: datetime | None = None
    end: datetime | None = None
    timezone: str = "UTC"
    reason: str | None = None  # why untranslatable
    differences: list[Difference] = field(default_factory=list)  # the first SHOWN
    difference_count: int = 0  # every instant present on one side only

    @property
    def ok(self) -> bool:
        """Proven equivalent (an approximate translation is not a proof)."""
        return self.verdict == "equivalent"

    @property
    def approximated(self) -> list[str]:
        return list(self.translation.approximated) if self.translation else []

    def summary(self) -> str:
        if self.verdict == "untranslatable":
            return f"untranslatable: {self.reason}"
        window = f"{_iso(self.start)} .. {_iso(self.end)}"
        if self.verdict == "equivalent":
            return f"equivalent: {self.legacy_count} fire times on each side over {window}"
        if self.verdict == "approximate":
            return (f"approximate: {self.legacy_count} nominal fire times on each side over {window}, but Prefect "
                    f"cannot express {', '.join(self.approximated)}")
        return (f"different: {self.difference_count} differing instant(s), legacy {self.legacy_count} vs prefect "
                f"{self.prefect_count} fire times over {window}; first difference {self.first_difference.describe()}")

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "legacy_count": self.legacy_count, "prefect_count": self.prefect_count,
                "difference_count": self.difference_count,
                "differences": [d.as_dict() for d in self.differences],
                "first_difference": self.first_difference.as_dict() if self.first_difference else None,
                "approximated": self.approximated,
                "translation": self.translation.as_dict() if self.translation else None,
                "reason": self.reason, "notes": list(self.notes), "start": _iso(self.start), "end": _iso(self.end),
                "timezone": self.timezone}


def _iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _utc(dt: datetime) -> datetime:
    """A plain ``datetime`` in UTC (pendulum/whenever instances become stdlib ones)."""
    if dt.tzinfo is None:
        raise InputError(f"date-time {dt.isoformat()} has no timezone", fix="give an offset, e.g. 2026-03-01T00:00:00Z")
    u = dt.astimezone(UTC)
    return datetime(u.year, u.month, u.day, u.hour, u.minute, u.second, u.microsecond, tzinfo=UTC)


# -- the two sides -----------------------------------------------------------------------


def legacy_fire_times(spec: dict | None, timezone: str, start: datetime, end: datetime,
                      *, max_fires: int = MAX_FIRES, prev: datetime | None = None) -> tuple[list[datetime], bool]:
    """APScheduler 3's fire times in [start, end] (UTC), jitter left out; (times, capped).
    ``prev``: the scheduler's previous fire time (APScheduler's arithmetic starts from it), None
    for a scheduler that starts at ``start``.
    A crontab schedule is run by cron: its fire times are Debian cron's (``cutover.core.schedule.cronexpr.fire_times``,
    computed by cronsim, not by Prefect's croniter)."""
    if spec is None:
        return [], False
    if "crontab" in spec:
        return fire_times(spec["crontab"], schedule_timezone(spec, timezone), start, end, max_fires=max_fires)
    trigger = copy.copy(build_trigger(spec, timezone))
    if getattr(trigger, "jitter", None):
        trigger.jitter = None
    out: list[datetime] = []
    if prev is not None and getattr(trigger, "timezone", None) is not None:
        prev = prev.astimezone(trigger.timezone)
    now = start
    while len(out) < max_fires:
        nxt = trigger.get_next_fire_time(prev, now)
        if nxt is None:
            break
        u = _utc(nxt)
        if u > end:
            break
        if out and u <= out[-1]:  # never seen; guards against a trigger that stops advancing
            break
        if u >= start:  # a DateTrigger returns its run_date even when it is past
            out.append(u)
        prev = nxt
        # the scheduler's `now` when it computes the next run: just after this one, as an instant
        now = u + timedelta(microseconds=1)
    else:
        return out, True
    return out, False


def prefect_fire_times(translation: Translation, start: datetime, end: datetime,
                       *, max_fires: int = MAX_FIRES) -> tuple[list[datetime], bool]:
    """The Prefect server's dates for the schedule in [start, end] (UTC); (times, capped)."""
    sched = translation.to_server_schedule()
    if sched is None:
        return [], False
    out: list[datetime] = []
    cursor = start
    while len(out) < max_fires:
        n = min(PAGE, max_fires - len(out))
        page = sorted({_utc(d) for d in _dates(sched, n, cursor, end)})
        new = [d for d in page if d >= cursor and (not out or d > out[-1]) and d <= end]
        if not new:
            break
        out.extend(new)
        cursor = new[-1] + timedelta(microseconds=1)
    else:
        return out, True
    return out, False


def _dates(sched, n: int, start: datetime, end: datetime):
    gen = getattr(sched, "_get_dates_generator", None)
    if gen is not None:  # what prefect.server.models.deployments._generate_scheduled_flow_runs calls
        return list(gen(n=n, start=start, end=end))
    import asyncio  # pragma: no cover - a Prefect without the generator

    return asyncio.run(sched.get_dates(n=n, start=start, end=end))


# -- compare -----------------------------------------------------------------------------


def differences(legacy: list[datetime], prefect: list[datetime], timezone: str = "UTC",
                *, keep: int = SHOWN) -> tuple[list[Difference], int]:
    """(the first ``keep`` instants present on one side only, with each side's fire times around them;
    how many such instants there are)."""
    ls, ps = set(legacy), set(prefect)
    only = sorted(ls ^ ps)

    def around(xs: list[datetime], at: datetime) -> tuple[datetime | None, datetime | None]:
        i = bisect_left(xs, at)
        j = bisect_right(xs, at)
        return (xs[i - 1] if i > 0 else None), (xs[j] if j < len(xs) else None)

    out = []
    for at in only[:keep]:
        lb, la = around(legacy, at)
        pb, pa = around(prefect, at)
        out.append(Difference(at=at, only_on="legacy" if at in ls else "prefect", legacy_before=lb, legacy_after=la,
                              prefect_before=pb, prefect_after=pa, timezone=timezone))
    return out, len(only)


def first_difference(legacy: list[datetime], prefect: list[datetime], timezone: str = "UTC") -> Difference | None:
    shown, _ = differences(legacy, prefect, timezone, keep=1)
    return shown[0] if shown else None


def verify(spec: dict | None, timezone: str, *, start: datetime, horizon: timedelta | None = None,
           allow_approx: bool = False, translation: Translation | None = None,
           max_fires: int = MAX_FIRES) -> VerifyResult:
    """Translate ``spec`` (unless ``translation`` is given) as deployed at ``start`` and compare both
    sides' fire times over ``[start, start + horizon]`` (default: :func:`default_horizon`)."""
    start = _utc(start)
    tz = schedule_timezone(spec, timezone)
    check_timezone(tz)
    build_trigger(spec, timezone)  # an invalid legacy schedule is an input error, not a verdict
    if translation is None:
        try:
            translation = translate(spec, timezone, allow_approx=allow_approx, as_of=start)
        except InputError as e:
            end = start + (horizon if horizon is not None else default_horizon([tz], start))
            return VerifyResult(verdict="untranslatable", legacy_count=0, prefect_count=0, first_difference=None,
                                translation=None, start=start, end=end, timezone=tz, reason=e.one_line())
    if horizon is None:
        horizon = default_horizon([tz, translation.timezone], start)
    if not isinstance(horizon, timedelta):
        horizon = timedelta(seconds=float(horizon))
    if horizon <= timedelta(0):
        raise InputError(f"horizon {horizon} must be positive", fix="give e.g. --horizon 400d (or leave the default)")
    end = start + horizon
    notes: list[str] = []
    try:
        translation.to_prefect_schedule()
    except InputError as e:
        return VerifyResult(verdict="untranslatable", legacy_count=0, prefect_count=0, first_difference=None,
                            translation=translation, start=start, end=end, timezone=tz, reason=e.one_line())

    legacy, l_capped, prefect, p_capped = None, False, None, False
    gaps: list = []
    period = fire_period(build_trigger(spec, timezone))
    if period is not None:  # the same lists, with far fewer engine calls (cutover.core.schedule.stitch)
        trigger = build_trigger(spec, timezone)
        breaks = breakpoints({tz, translation.timezone}, start, end,
                             [trigger.start_date, trigger.end_date, _anchor(translation)])
        gaps = plan_gaps(start, end, period, breaks)
        if gaps:
            legacy = stitched(lambda a, b, prev: legacy_fire_times(spec, timezone, a, b, max_fires=max_fires,
                                                                   prev=prev),
                              start, end, period, gaps, max_fires=max_fires)
    if legacy is None:
        legacy, l_capped = legacy_fire_times(spec, timezone, start, end, max_fires=max_fires)
    cut = end
    if l_capped:
        cut = legacy[-1]
    try:
        if gaps and not l_capped:
            prefect = stitched(lambda a, b, _prev: prefect_fire_times(translation, a, b, max_fires=max_fires),
                               start, end, period, gaps, max_fires=max_fires)
        if prefect is None:
            prefect, p_capped = prefect_fire_times(translation, start, cut, max_fires=max_fires)
    except Exception as e:  # noqa: BLE001 - e.g. croniter's CroniterBadDateError: the server would fail alike
        return VerifyResult(verdict="untranslatable", legacy_count=len(legacy), prefect_count=0,
                            first_difference=None, translation=translation, start=start, end=end, timezone=tz,
                            reason=f"Prefect cannot compute the fire times of {translation.describe()} "
                                   f"({type(e).__name__}: {e})")
    if p_capped and prefect[-1] < cut:
        cut = prefect[-1]
        legacy = [d for d in legacy if d <= cut]
    if cut < end:
        notes.append(f"capped at {max_fires} fire times per side: compared up to {_iso(cut)} only")
        end = cut

    shown, count = differences(legacy, prefect, tz)
    diff = shown[0] if shown else None
    if count:
        verdict = "different"
    elif not translation.exact:
        verdict = "approximate"
        notes.append(f"APPROXIMATE, not a proof: the nominal fire times match, but Prefect cannot express "
                     f"{', '.join(translation.approximated)} (dropped with --allow-approx)")
    else:
        verdict = "equivalent"
    if not legacy and not prefect and spec is not None:
        notes.append("neither side fires in the horizon: nothing was compared; widen --horizon")
    if diff is not None:
        notes.extend(_explain(diff, tz, spec, timezone, translation))
    return VerifyResult(verdict=verdict, legacy_count=len(legacy), prefect_count=len(prefect),
                        first_difference=diff, translation=translation, notes=notes, start=start, end=end,
                        timezone=tz, differences=shown, difference_count=count)


def fire_period(trigger) -> timedelta | None:
    """The period with which a trigger repeats while the UTC offset stays the same: one day for a
    cron or crontab schedule that fires on every day of every month, ``interval`` for an
    interval trigger of at most a day; None otherwise (dates, weekdays, month days)."""
    if trigger is None:
        return None
    if isinstance(trigger, VixieCronTrigger):
        f = cron_fields(trigger.expr)
        return DAY if f.dom_full and f.dow_full and f.months == frozenset(range(1, 13)) else None
    interval = getattr(trigger, "interval", None)
    if isinstance(interval, timedelta):
        return interval if timedelta(0) < interval <= DAY else None
    fields = getattr(trigger, "fields", None)
    if fields and all(f.is_default for f in fields if f.name in _DATE_FIELDS):
        return DAY
    return None


def _anchor(translation: Translation) -> datetime | None:
    return datetime.fromisoformat(translation.anchor_date) if translation.anchor_date else None


def _explain(diff: Difference, tz: str, spec: dict | None, default_tz: str, translation: Translation) -> list[str]:
    """Plain-language hints for the first difference (DST, APScheduler's path dependence, start_date)."""
    out = []
    prevs = [d for d in (diff.legacy_before, diff.prefect_before) if d is not None]
    since = min(prevs) if prevs else diff.at - timedelta(hours=26)
    for t, before, after in dst_transitions(tz, since.year, diff.at.year + 1):
        if since - timedelta(hours=26) <= t <= diff.at + timedelta(hours=26):
            direction = "forward" if after > before else "back"
            out.append(f"a DST change in {tz} falls between the previous fire time and this one (or within a day): "
                       f"clocks go {direction} {abs(after - before) / 3600:g}h at {_iso(t)}; "
                       f"{'cron' if spec and 'crontab' in spec else 'APScheduler 3'} and "
                       f"Prefect handle skipped/repeated wall times and date arithmetic across it differently")
            break
    if spec is None or "crontab" in spec:  # the hints below are about APScheduler
        return out
    trigger = copy.copy(build_trigger(spec, default_tz))
    if getattr(trigger, "jitter", None):
        trigger.jitter = None
    if diff.only_on == "prefect":
        fresh = trigger.get_next_fire_time(None, diff.at - timedelta(seconds=1))
        if fresh is not None and _utc(fresh) == diff.at and diff.legacy_before is not None:
            out.append(f"APScheduler 3 does fire at {_iso(diff.at)} when asked from just before it, but not when "
                       f"its search starts from the previous run ({_iso(diff.legacy_before)}): its cron arithmetic "
                       f"across a DST change (apscheduler.util.datetime_utc_add) overshoots by the offset change and "
                       f"skips the run -- a running legacy scheduler really skips it")
        sd = getattr(trigger, "start_date", None)
        if spec.get("start_date") and sd is not None and diff.at < sd:
            out.append(f"the legacy job starts at {sd.isoformat()} (start_date); this Prefect schedule already "
                       f"fires before it")
    else:
        try:
            again, _ = prefect_fire_times(translation, diff.at - timedelta(seconds=1), diff.at, max_fires=5)
        except Exception:  # noqa: BLE001 - only a hint
            again = []
        if diff.at in again:
            out.append(f"Prefect does produce {_iso(diff.at)} when its scheduler starts from just before it, but "
                       f"not when it starts after the previous run: its dates depend on the scheduling start")
    return out
