"""Fewer engine calls over a long horizon, the same fire times.

A year of an hourly schedule is 8,784 fire times per side, each one a call into APScheduler's or
Prefect's own date arithmetic (about a quarter of a millisecond each). Most of those calls say
nothing new: while a zone's UTC offset does not change, a schedule that fires the same way every
day (cron/crontab fields with every day, month and weekday) or every ``interval`` repeats with
that period. What can differ between the engines happens near an offset change (DST), the new
year, the trigger's start/end date, and the horizon's ends.

So each side's engine is asked for every fire time in *windows* around those instants, and
between two windows the engine's own last period is repeated -- only when

- the engine's two last periods before the skip are the same pattern shifted by the period, and
- the first period the engine gives after the skip (asked from the last repeated fire time, the
  state a running scheduler would be in) is exactly the pattern's continuation.

Otherwise the caller enumerates everything (:func:`stitched` returns None). The result lists
every fire time, as the full enumeration would: counts and differences are unchanged
(``tests/test_schedule_stitch.py`` compares both on many schedules and zones).
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import datetime, timedelta, timezone as dt_timezone
from typing import Callable, Iterable
from zoneinfo import ZoneInfo

from cutover.core.schedule.translation import dst_transitions

UTC = dt_timezone.utc
DAY = timedelta(days=1)
TICK = timedelta(microseconds=1)
MIN_SKIP = timedelta(days=2)  # a shorter gap is computed, not repeated

# (window start, window end, last fire time before the window or None) -> (fire times in the window, capped)
Exact = Callable[[datetime, datetime, "datetime | None"], "tuple[list[datetime], bool]"]


def breakpoints(zones: Iterable[str], start: datetime, end: datetime,
                extra: Iterable[datetime | None] = ()) -> list[datetime]:
    """The instants near which the engines are asked for every fire time: each UTC offset change
    and each local new year of every zone in [start, end], plus ``extra`` (start/end dates).
    Month starts are not among them: for a schedule that fires alike on every day (the only kind
    stitched), a month's first midnight goes through the engines' day arithmetic like any other
    midnight, and those are computed in every window."""
    out: set[datetime] = {e.astimezone(UTC) for e in extra if e is not None}
    for tz in {z for z in zones if z}:
        zone = ZoneInfo(tz)
        out.update(t for t, _, _ in dst_transitions(tz, start.year, end.year + 1) if start <= t <= end)
        out.update(datetime(y, 1, 1, tzinfo=zone).astimezone(UTC) for y in range(start.year + 1, end.year + 1))
    return sorted(t for t in out if start <= t <= end)


def plan_gaps(start: datetime, end: datetime, period: timedelta,
              breaks: list[datetime]) -> list[tuple[datetime, datetime]]:
    """The stretches (a, b) to repeat rather than compute: everything outside the windows
    [start, start + 3g], [t - 2g, t + 3g] for each break t, [end - 2g, end] (g = max(period, 1 day)):
    a break's effect (a skipped or repeated wall time, a path-dependent next fire) is over a day
    after it at most, so each window ends with two periods of settled engine output (the pattern
    to repeat) and starts with at least one (the check of the repetition before it)."""
    g = max(period, DAY)
    windows = [(start, start + 3 * g), (end - 2 * g, end)] + [(t - 2 * g, t + 3 * g) for t in breaks]
    windows.sort()
    merged: list[list[datetime]] = []
    for lo, hi in windows:
        if merged and lo <= merged[-1][1] + MIN_SKIP:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    gaps = []
    for (_, a), (b, _) in zip(merged, merged[1:]):
        if a >= start and b <= end and b - a >= MIN_SKIP:
            gaps.append((a, b))
    return gaps


def _pattern(out: list[datetime], since: datetime, period: timedelta) -> list[datetime] | None:
    """The fire times of the last period, when the period before it is the same shifted by
    ``period`` and the engine's output (from ``since``) covers both."""
    if not out:
        return None
    last = out[-1]
    if last - 2 * period < since:
        return None
    base = out[bisect_right(out, last - period):]
    before = out[bisect_right(out, last - 2 * period):bisect_right(out, last - period)]
    if [x + period for x in before] != base:
        return None
    return base


def _repeat(base: list[datetime], period: timedelta, after: datetime, until: datetime) -> list[datetime]:
    """``base`` shifted by whole periods: every instant in (after, until]."""
    out = []
    k = 1
    while True:
        shifted = [x + k * period for x in base]
        out.extend(x for x in shifted if after < x <= until)
        if shifted[0] > until:
            return out
        k += 1


def stitched(exact: Exact, start: datetime, end: datetime, period: timedelta,
             gaps: list[tuple[datetime, datetime]], *, max_fires: int) -> list[datetime] | None:
    """Every fire time in [start, end], computed in the windows and repeated across ``gaps``;
    None when a check fails or ``max_fires`` is passed (the caller then enumerates all)."""
    out: list[datetime] = []
    t, prev = start, None
    expect: tuple[list[datetime], datetime] | None = None
    for a, b in [*gaps, (end, None)]:
        seg_start = t
        seg, capped = exact(t, a, prev)
        if capped:
            return None
        if expect is not None:
            wanted, until = expect
            if seg[:bisect_right(seg, until)] != wanted:
                return None
            expect = None
        out.extend(seg)
        if len(out) > max_fires:
            return None
        if b is None:
            return out
        prev = out[-1] if out else prev
        t = a + TICK
        base = _pattern(out, seg_start, period)
        if base is None:
            continue  # not periodic here: the next window starts right after this one
        skipped = _repeat(base, period, out[-1], b)
        if not skipped:
            continue
        out.extend(skipped)
        prev = skipped[-1]
        t = prev + TICK
        expect = (_repeat(base, period, prev, prev + period), prev + period)
    return out  # pragma: no cover - the loop returns at its last (end, None) item

