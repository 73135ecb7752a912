"""The stitched enumeration (cutover.core.schedule.stitch) gives the very lists, verdicts and
differences of the full one -- on the real engines (APScheduler 3, cron's cronsim, the Prefect
server's schedules) -- and gives up when the engine is not periodic where it skipped."""

from __future__ import annotations

import importlib
from datetime import datetime, timedelta, timezone

import pytest
from cutover.core.schedule.stitch import breakpoints, plan_gaps, stitched
from cutover.core.schedule.triggers import normalize_schedule

V = importlib.import_module("cutover.core.schedule.verify")  # the module: the package re-exports the function
UTC = timezone.utc
START = datetime(2026, 2, 20, 9, 17, tzinfo=UTC)  # the March and April DST changes, 4 month starts, Easter
HORIZON = timedelta(days=120)

SPECS = [
    ("daily 02:30", "Europe/Berlin"),  # DIFFERENT on the spring-forward day
    ("daily 01:30", "America/New_York"),
    ("daily 09:00", "UTC"),
    ("hourly :05", "Europe/Berlin"),
    ("hourly :45", "Australia/Lord_Howe"),  # a 30-minute DST change (April)
    ("cron */20 1-3 * * *", "Europe/Berlin"),
    ("crontab 30 2 * * *", "Europe/Berlin"),
    ("crontab */15 * * * *", "America/New_York"),
    ({"trigger": "cron", "hour": "*/3", "minute": 10}, "Europe/London"),
    ({"trigger": "interval", "minutes": 90, "start_date": "2026-01-01T00:10:00"}, "Europe/Berlin"),
    ({"trigger": "interval", "hours": 5, "start_date": "2026-03-10T04:00:00"}, "America/New_York"),
    ({"trigger": "interval", "hours": 24, "start_date": "2026-01-05T06:00:00"}, "Europe/Berlin"),
    ({"trigger": "cron", "hour": 2, "minute": 30, "end_date": "2026-04-15T00:00:00"}, "Europe/Berlin"),
]


def _spec(s):
    return normalize_schedule(s)


def _full(monkeypatch, spec, tz, start=START, horizon=HORIZON):
    with monkeypatch.context() as m:
        m.setattr(V, "fire_period", lambda trigger: None)
        return V.verify(spec, tz, start=start, horizon=horizon)


@pytest.mark.parametrize("raw,tz", SPECS, ids=[str(s) for s, _ in SPECS])
def test_stitched_verify_equals_the_full_enumeration(monkeypatch, raw, tz):
    spec = _spec(raw)
    fast = V.verify(spec, tz, start=START, horizon=HORIZON)
    full = _full(monkeypatch, spec, tz)
    assert fast.as_dict() == full.as_dict()
    assert fast.legacy_count > 0


@pytest.mark.parametrize("raw,tz", SPECS[:5] + SPECS[6:8] + SPECS[9:11], ids=[str(s) for s, _ in SPECS[:5] + SPECS[6:8]
                                                                           + SPECS[9:11]])
def test_each_side_skips_and_lists_every_fire_time(raw, tz):
    """Both sides, directly: the stitched list is the full list (and it did skip)."""
    spec = _spec(raw)
    end = START + HORIZON
    trigger = V.build_trigger(spec, tz)
    period = V.fire_period(trigger)
    assert period is not None
    tr = V.translate(spec, tz, as_of=START)
    gaps = plan_gaps(START, end, period, breakpoints({tz, tr.timezone}, START, end,
                                                     [trigger.start_date, trigger.end_date]))
    assert gaps and sum((b - a for a, b in gaps), timedelta()) > HORIZON / 2

    calls = []

    def legacy(a, b, prev):
        calls.append((a, b))
        return V.legacy_fire_times(spec, tz, a, b, prev=prev)

    fast = stitched(legacy, START, end, period, gaps, max_fires=V.MAX_FIRES)
    assert fast == V.legacy_fire_times(spec, tz, START, end)[0]
    assert sum((b - a for a, b in calls), timedelta()) < HORIZON / 2  # the engine was asked for less than half
    pf = stitched(lambda a, b, _p: V.prefect_fire_times(tr, a, b), START, end, period, gaps, max_fires=V.MAX_FIRES)
    assert pf == V.prefect_fire_times(tr, START, end)[0]


def test_a_year_of_the_default_horizon_is_the_same():
    """The default horizon (366 days and two DST changes) on the schedule #18 named."""
    spec = _spec("daily 02:30")
    r = V.verify(spec, "Europe/Berlin", start=START)
    assert r.verdict == "different" and r.difference_count >= 1
    assert r.first_difference.at.date().isoformat() == "2026-03-29"


def _engine(shift_at: datetime | None):
    """A fake engine firing hourly at :10 -- at :40 from ``shift_at`` on (a change inside a gap)."""
    def exact(a, b, prev):
        out = []
        t = a.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
        while t <= b:
            m = 40 if shift_at is not None and t >= shift_at else 10
            x = t.replace(minute=m)
            if a <= x <= b:
                out.append(x)
            t += timedelta(hours=1)
        return out, False
    return exact


def test_a_change_inside_a_skipped_stretch_is_caught():
    end = START + HORIZON
    gaps = plan_gaps(START, end, timedelta(days=1), [])
    assert gaps
    ok = stitched(_engine(None), START, end, timedelta(days=1), gaps, max_fires=10 ** 6)
    assert ok == _engine(None)(START, end, None)[0]
    mid = gaps[0][0] + (gaps[0][1] - gaps[0][0]) / 2
    assert stitched(_engine(mid), START, end, timedelta(days=1), gaps, max_fires=10 ** 6) is None


def test_no_skip_for_schedules_tied_to_dates():
    for raw in ("weekly fri 10:00", {"trigger": "cron", "day": "last", "hour": 3},
                {"trigger": "interval", "days": 3}, "cron 0 4 * * 1-5", "crontab 0 4 1 * *"):
        assert V.fire_period(V.build_trigger(_spec(raw), "UTC")) is None, raw
    assert V.fire_period(V.build_trigger(_spec("crontab 5 * * * *"), "UTC")) == timedelta(days=1)
    assert V.fire_period(V.build_trigger(_spec("hourly :05"), "UTC")) == timedelta(days=1)


def test_max_fires_falls_back_to_the_capped_enumeration(monkeypatch):
    spec = _spec("crontab * * * * *")
    fast = V.verify(spec, "UTC", start=START, horizon=timedelta(days=30), max_fires=5000)
    full = _full(monkeypatch, spec, "UTC", horizon=timedelta(days=30))
    assert fast.legacy_count == 5000 and any("capped" in n for n in fast.notes)
    assert full.legacy_count > 5000
