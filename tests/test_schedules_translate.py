"""cutover.core.schedule.translate: each legacy form -> the Prefect schedule, refusals and notes.

The fire-time proofs live in test_schedules_verify.py; here the translation itself.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta

import pytest

from cutover.core.errors import InputError
from cutover.core.schedule.translate import Translation, cron_field, translate
from cutover.core.schedule.triggers import normalize_schedule, parse_schedule_text


def tr(spec, tz="UTC", **kw) -> Translation:
    return translate(normalize_schedule(spec), tz, **kw)


# -- frequency forms and plain cron ---------------------------------------------------------


@pytest.mark.parametrize("text, tz, cron, zone", [
    ("daily 02:30", "Europe/Berlin", "30 2 * * *", "Europe/Berlin"),
    ("weekly mon 06:00", "UTC", "0 6 * * 1", "UTC"),
    ("weekly sun 06:00", "UTC", "0 6 * * 0", "UTC"),
    ("hourly :15", "UTC", "15 * * * *", "UTC"),
    ("hourly :15", "Asia/Kolkata", "15 * * * *", "Asia/Kolkata"),  # fixed offset: stays zoned
    ("hourly :15", "Europe/Berlin", "15 * * * *", "UTC"),  # DST zone, whole-hour offsets: UTC
    ("hourly :15", "Australia/Adelaide", "45 * * * *", "UTC"),  # +9:30/+10:30: :15 local is :45 UTC
    ("cron */15 8-18 * * 1-5", "UTC", "*/15 8-18 * * 2-6", "UTC"),  # APScheduler 1-5 = Tue-Sat = cron 2-6
])
def test_simple_forms(text, tz, cron, zone):
    t = translate(parse_schedule_text(text), tz)
    assert (t.kind, t.cron, t.timezone, t.day_or, t.exact) == ("cron", cron, zone, True, True)


def test_crontab_weekday_zero_is_monday_in_apscheduler_3():
    t = tr({"cron": "0 2 * * 0"})
    assert t.cron == "0 2 * * 1"
    assert any("0 = Monday" in n and "from_crontab" in n for n in t.notes)
    # names mean the same day in both worlds: no numbering note, same day
    t = tr({"cron": "0 2 * * sun"})
    assert t.cron == "0 2 * * 0" and not any("from_crontab" in n for n in t.notes)
    # APScheduler trigger spec: day_of_week 6 = Sunday there, 0 in cron
    assert tr({"trigger": "cron", "day_of_week": "6", "hour": 2}).cron == "0 2 * * 0"
    assert tr({"trigger": "cron", "day_of_week": "sat-sun", "hour": 2}).cron == "0 2 * * 0,6"


def test_apscheduler_defaults_are_carried():
    # fields after the last given one take their minimum, the ones before are '*'
    assert tr({"trigger": "cron", "hour": 2}).cron == "0 2 * * *"
    assert tr({"trigger": "cron", "day": 1, "minute": 5}).cron == "5 * 1 * *"
    assert tr({"trigger": "cron", "month": "apr-jun", "day": "*/10"}).cron == "0 0 */10 4-6 *"


def test_day_lists_that_prefects_croniter_gets_wrong_become_rrules():
    # Prefect's vendored croniter, after February, overshoots 'Feb 31' to March 3rd and misses
    # March 1st/2nd for day lists like 1,31 (found by the random test in test_schedules_verify)
    t = tr({"trigger": "cron", "day": "1,31", "hour": 3})
    assert t.kind == "rrule" and "BYMONTHDAY=1,31;" in t.rrule and any("croniter" in n for n in t.notes)
    assert tr({"trigger": "cron", "month": "jan-mar", "day": "*/10"}).kind == "rrule"  # 1,11,21,31
    assert tr({"trigger": "cron", "day": "1,29", "hour": 3}).kind == "cron"  # 'Feb 29' -> March 1st: no gap
    assert tr({"trigger": "cron", "month": "3-12", "day": "1,31", "hour": 3}).kind == "cron"  # no February


def test_dom_and_dow_both_restricted_uses_day_or_false():
    t = tr({"trigger": "cron", "day": "1-7", "day_of_week": "mon", "hour": 2})
    assert (t.cron, t.day_or) == ("0 2 1-7 * 1", False)
    assert any("day_or=False" in n for n in t.notes)
    assert tr({"trigger": "cron", "day_of_week": "mon", "hour": 2}).day_or is True


def test_cron_field_rendering():
    assert cron_field(set(range(0, 60)), 0, 59) == "*"
    assert cron_field(set(range(0, 60, 5)), 0, 59) == "*/5"
    assert cron_field({5, 20, 35, 50}, 0, 59) == "5-50/15"
    assert cron_field({1, 2, 3, 7, 9, 10}, 0, 59) == "1-3,7,9,10"


# -- APScheduler-only expressions -> RRULE ---------------------------------------------------


def test_last_day_and_positions_become_rrules():
    t = tr({"trigger": "cron", "day": "last", "hour": 2}, "Europe/Berlin")
    assert t.kind == "rrule" and t.timezone == "Europe/Berlin" and t.exact
    assert "BYMONTHDAY=-1" in t.rrule and "BYHOUR=2;BYMINUTE=0;BYSECOND=0" in t.rrule
    t = tr({"trigger": "cron", "day": "last fri,1", "hour": 2})
    assert t.rrule.count("RRULE:") == 2 and "BYDAY=-1FR" in t.rrule and "BYMONTHDAY=1;" in t.rrule
    t = tr({"trigger": "cron", "day": "2nd mon", "hour": 2})
    assert "BYDAY=+2MO" in t.rrule
    t = tr({"trigger": "cron", "week": "1-10", "day_of_week": "tue", "hour": 2})
    assert "FREQ=YEARLY" in t.rrule and "BYWEEKNO=1,2,3,4,5,6,7,8,9,10" in t.rrule and "BYDAY=TU" in t.rrule


def test_year_range_and_dates_become_rrule_bounds():
    t = tr({"trigger": "cron", "year": "2027-2028", "hour": 2})
    assert t.rrule.startswith("DTSTART:20270101T000000\n") and "UNTIL=20281231T235959" in t.rrule
    t = tr({"trigger": "cron", "hour": 2, "start_date": "2026-05-01T12:00:00", "end_date": "2026-06-01T00:00:00"},
           "Europe/Berlin")
    assert t.rrule.startswith("DTSTART:20260501T120000\n") and "UNTIL=20260601T000000" in t.rrule
    with pytest.raises(InputError, match=r"year='2026,2028'.*--allow-approx"):
        tr({"trigger": "cron", "year": "2026,2028", "hour": 2})


# -- interval and date -----------------------------------------------------------------------


def test_interval_anchor_and_timezone():
    t = tr({"trigger": "interval", "hours": 5, "start_date": "2026-03-01T00:17:00"}, "Europe/Berlin")
    assert (t.kind, t.interval_seconds, t.anchor_date, t.timezone) == (
        "interval", 18000.0, "2026-03-01T00:17:00+01:00", "Europe/Berlin")
    # >= 1 day in a DST zone: Prefect would add calendar days, APScheduler absolute ones -> UTC
    t = tr({"trigger": "interval", "days": 1, "start_date": "2026-03-01T00:17:00"}, "Europe/Berlin")
    assert (t.anchor_date, t.timezone) == ("2026-02-28T23:17:00+00:00", "UTC")
    assert any("absolute time" in n for n in t.notes)


def test_interval_with_end_date_is_an_rrule_in_utc():
    t = tr({"trigger": "interval", "minutes": 90, "start_date": "2026-03-01T00:17:00",
            "end_date": "2026-04-01T00:00:00"}, "Europe/Berlin")
    assert t.kind == "rrule" and t.timezone == "UTC"
    assert t.rrule == "DTSTART:20260228T231700\nRRULE:FREQ=MINUTELY;INTERVAL=90;UNTIL=20260331T220000"


def test_interval_without_start_date_is_refused():
    with pytest.raises(InputError, match=r"interval anchor.*start_date.*--allow-approx"):
        tr({"trigger": "interval", "hours": 2})
    assert tr({"trigger": "interval", "hours": 2}, allow_approx=True).exact is False


def test_date_trigger_is_a_single_occurrence():
    t = tr({"trigger": "date", "run_date": "2026-12-24T18:00:00"}, "Europe/Berlin")
    assert (t.kind, t.timezone, t.rrule) == ("rrule", "UTC", "DTSTART:20261224T170000\nRRULE:FREQ=DAILY;COUNT=1")
    assert any("one-off" in n and "prefect deployment run" in n for n in t.notes)


# -- refusals and approximations ----------------------------------------------------------------


def test_seconds_refused_then_approximated():
    spec = {"trigger": "cron", "hour": 2, "minute": 0, "second": 30}
    with pytest.raises(InputError) as e:
        tr(spec)
    assert "second='30'" in e.value.message and "--allow-approx to drop it" in e.value.fix
    assert e.value.exit_code == 2
    t = tr(spec, allow_approx=True)
    assert (t.cron, t.exact) == ("0 2 * * *", False) and any(n.startswith("APPROXIMATE: second") for n in t.notes)


def test_jitter_refused_then_approximated():
    spec = {"trigger": "cron", "hour": 2, "jitter": 60}
    with pytest.raises(InputError, match=r"jitter=60.*--allow-approx to drop it"):
        tr(spec)
    t = tr(spec, allow_approx=True)
    assert (t.cron, t.exact) == ("0 2 * * *", False)
    with pytest.raises(InputError, match="jitter"):
        tr({"trigger": "interval", "hours": 1, "start_date": "2026-01-01T00:00:00", "jitter": 5})


def test_manual_and_timezone_override():
    t = translate(None, "Europe/Berlin")
    assert t.kind is None and t.to_prefect_schedule() is None and t.describe() == "manual"
    t = tr({"frequency": "daily", "at": "06:00", "timezone": "America/New_York"}, "UTC")
    assert t.timezone == "America/New_York"
    with pytest.raises(InputError, match="unknown timezone"):
        translate({"frequency": "daily", "at": "06:00"}, "Mars/Olympus")


def test_dst_sensitive_schedule_is_flagged():
    notes = tr({"frequency": "daily", "at": "02:30"}, "Europe/Berlin").notes
    assert any(n.startswith("DST:") and "skips" in n for n in notes)
    assert any(n.startswith("DST:") and "repeats" in n for n in notes)
    assert not any(n.startswith("DST:") for n in tr({"frequency": "daily", "at": "06:00"}, "Europe/Berlin").notes)
    # EU clocks change on Sundays: a Monday 02:30 never meets them
    assert not any(n.startswith("DST:") for n in tr({"frequency": "weekly", "day": "mon", "at": "02:30"},
                                                     "Europe/Berlin").notes)


# -- Prefect objects ---------------------------------------------------------------------------


def test_to_prefect_schedule_objects():
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule, RRuleSchedule

    c = tr({"trigger": "cron", "day": "1-7", "day_of_week": "mon", "hour": 2}, "Europe/Berlin").to_prefect_schedule()
    assert isinstance(c, CronSchedule) and (c.cron, c.timezone, c.day_or) == ("0 2 1-7 * 1", "Europe/Berlin", False)
    i = tr({"trigger": "interval", "hours": 5, "start_date": "2026-03-01T00:17:00"}, "Europe/Berlin").to_prefect_schedule()
    assert isinstance(i, IntervalSchedule) and i.interval == timedelta(hours=5) and i.timezone == "Europe/Berlin"
    assert i.anchor_date == datetime.fromisoformat("2026-03-01T00:17:00+01:00")
    r = tr({"trigger": "cron", "day": "last", "hour": 2}).to_prefect_schedule()
    assert isinstance(r, RRuleSchedule) and "BYMONTHDAY=-1" in r.rrule


def test_as_dict_and_describe():
    t = tr({"trigger": "cron", "day": "1-7", "day_of_week": "mon", "hour": 2}, "Europe/Berlin")
    d = t.as_dict()
    assert d["kind"] == "cron" and d["day_or"] is False and d["text"] == t.describe()
    assert t.describe() == "cron 0 2 1-7 * 1 (day AND weekday) Europe/Berlin"
    with pytest.raises(Exception):
        t.cron = "x"  # frozen


def test_importing_does_not_import_prefect():
    code = ("import sys, cutover.core.schedule, cutover.cli.schedules_cmd; "
            "from cutover.core.schedule import translate; translate({'frequency': 'daily', 'at': '02:00'}, 'UTC'); "
            "assert 'prefect' not in sys.modules, 'prefect imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
