"""cutover.core.schedule.verify: real APScheduler 3 fire times vs real Prefect server dates.

One test per pitfall; each asserts the verdict and the exact first differing instant.
A "naive" translation (what one would write without knowing the pitfall) is verified too,
to show that the comparison catches it.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from cutover.core.errors import InputError
from cutover.core.schedule import Translation
from cutover.core.schedule import translate
from cutover.core.schedule import verify
from cutover.core.schedule.verify import legacy_fire_times, prefect_fire_times
from cutover.core.schedule.triggers import normalize_schedule, parse_schedule_text

UTC = timezone.utc


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def check(spec, tz, start, days, **kw):
    return verify(normalize_schedule(spec), tz, start=at(start), horizon=timedelta(days=days), **kw)


# -- day_of_week numbering -----------------------------------------------------------------


def test_crontab_weekday_zero_fires_on_monday():
    spec = {"cron": "0 2 * * 0"}
    # 2026-01-01 is a Thursday: APScheduler 3 fires on Monday the 5th, not Sunday the 4th
    legacy, _ = legacy_fire_times(spec, "UTC", at("2026-01-01T00:00:00Z"), at("2026-01-29T00:00:00Z"))
    assert legacy[0] == at("2026-01-05T02:00:00Z") and legacy[0].weekday() == 0

    ours = check(spec, "UTC", "2026-01-01T00:00:00Z", 28)
    assert ours.verdict == "equivalent" and ours.legacy_count == ours.prefect_count == 4
    assert ours.translation.cron == "0 2 * * 1"

    naive = check(spec, "UTC", "2026-01-01T00:00:00Z", 28,
                  translation=Translation(kind="cron", cron="0 2 * * 0", timezone="UTC"))
    assert naive.verdict == "different"
    d = naive.first_difference
    assert (d.at, d.only_on) == (at("2026-01-04T02:00:00Z"), "prefect")  # Sunday: Prefect only
    assert (d.legacy_before, d.legacy_after) == (None, at("2026-01-05T02:00:00Z"))  # legacy: Monday


# -- day-of-month AND day-of-week -------------------------------------------------------------


def test_day_and_weekday_are_anded():
    spec = {"trigger": "cron", "day": "1-7", "day_of_week": "mon", "hour": 2}  # the first Monday
    ours = check(spec, "UTC", "2026-01-01T00:00:00Z", 90)
    assert ours.verdict == "equivalent" and ours.legacy_count == 3  # Jan 5, Feb 2, Mar 2
    assert (ours.translation.cron, ours.translation.day_or) == ("0 2 1-7 * 1", False)

    naive = check(spec, "UTC", "2026-01-01T00:00:00Z", 90,
                  translation=Translation(kind="cron", cron="0 2 1-7 * 1", timezone="UTC"))  # day_or=True
    assert naive.verdict == "different" and naive.prefect_count > 3
    d = naive.first_difference
    assert (d.at, d.only_on) == (at("2026-01-01T02:00:00Z"), "prefect")  # Thursday the 1st
    assert d.legacy_after == at("2026-01-05T02:00:00Z")


# -- DST: spring-forward gap and fall-back repeated hour ------------------------------------------


def test_dst_gap_daily_0230_berlin():
    spec = {"frequency": "daily", "at": "02:30"}
    s, e = at("2026-03-27T00:00:00Z"), at("2026-03-31T00:00:00Z")
    legacy, _ = legacy_fire_times(spec, "Europe/Berlin", s, e)
    prefect, _ = prefect_fire_times(translate(spec, "Europe/Berlin"), s, e)
    # 02:30 does not exist on 2026-03-29: APScheduler 3 fires at 02:30+01:00 = 03:30 CEST,
    # Prefect one hour earlier, at 01:30 CET
    assert at("2026-03-29T01:30:00Z") in legacy and at("2026-03-29T00:30:00Z") not in legacy
    assert at("2026-03-29T00:30:00Z") in prefect and at("2026-03-29T01:30:00Z") not in prefect

    r = check(spec, "Europe/Berlin", "2026-03-27T00:00:00Z", 4)
    assert r.verdict == "different" and r.legacy_count == r.prefect_count == 4
    d = r.first_difference
    assert (d.at, d.only_on) == (at("2026-03-29T00:30:00Z"), "prefect")
    assert (d.legacy_before, d.legacy_after) == (at("2026-03-28T01:30:00Z"), at("2026-03-29T01:30:00Z"))
    assert any("DST change in Europe/Berlin" in n for n in r.notes)

    # every hour: both fire each real hour across the gap
    assert check({"frequency": "hourly", "at": ":30"}, "Europe/Berlin", "2026-03-27T00:00:00Z", 4).verdict == "equivalent"


def test_dst_repeated_hour_daily_0130_new_york():
    spec = {"frequency": "daily", "at": "01:30"}
    r = check(spec, "America/New_York", "2026-10-30T00:00:00Z", 4)
    # 01:30 happens twice on 2026-11-01: APScheduler 3 fires both (EDT and EST), Prefect the first only
    assert r.verdict == "different" and (r.legacy_count, r.prefect_count) == (5, 4)
    d = r.first_difference
    assert (d.at, d.only_on) == (at("2026-11-01T06:30:00Z"), "legacy")
    assert (d.prefect_before, d.prefect_after) == (at("2026-11-01T05:30:00Z"), at("2026-11-02T06:30:00Z"))
    assert d.local(d.at) == "2026-11-01 01:30:00 EST"


def test_dst_repeated_hour_hourly_new_york():
    spec = {"frequency": "hourly", "at": ":30"}
    ours = check(spec, "America/New_York", "2026-10-31T00:00:00Z", 3)
    assert ours.verdict == "equivalent" and ours.translation.timezone == "UTC" and ours.legacy_count == 72

    naive = check(spec, "America/New_York", "2026-10-31T00:00:00Z", 3,
                  translation=Translation(kind="cron", cron="30 * * * *", timezone="America/New_York"))
    assert naive.verdict == "different" and (naive.legacy_count, naive.prefect_count) == (72, 71)
    assert (naive.first_difference.at, naive.first_difference.only_on) == (at("2026-11-01T06:30:00Z"), "legacy")


def test_apscheduler_skips_a_monthly_run_after_spring_forward():
    """APScheduler 3.11 + zoneinfo: searching from March 1st 00:30 to April 1st crosses the DST change;
    its UTC arithmetic lands on 01:00 instead of 00:00, hour 0 no longer matches, and April is skipped.
    The legacy scheduler really skips that run; Prefect does not."""
    spec = {"cron": "30 0 1 * *"}
    r = check(spec, "Europe/Berlin", "2026-02-15T00:00:00Z", 100)
    assert r.verdict == "different" and (r.legacy_count, r.prefect_count) == (2, 3)
    d = r.first_difference
    assert (d.at, d.only_on) == (at("2026-03-31T22:30:00Z"), "prefect")  # 2026-04-01 00:30 CEST
    assert (d.legacy_before, d.legacy_after) == (at("2026-02-28T23:30:00Z"), at("2026-04-30T22:30:00Z"))
    assert any("datetime_utc_add" in n and "really skips" in n for n in r.notes)
    # 03:30 is reached after the change: nothing skipped
    assert check({"cron": "30 3 1 * *"}, "Europe/Berlin", "2026-02-15T00:00:00Z", 100).verdict == "equivalent"


# -- interval anchors ------------------------------------------------------------------------


def test_interval_anchor_is_the_start_date():
    spec = {"trigger": "interval", "hours": 5, "start_date": "2026-03-01T00:17:00"}
    ours = check(spec, "Europe/Berlin", "2026-03-02T00:00:00Z", 60)  # crosses the 2026-03-29 DST change
    assert ours.verdict == "equivalent" and ours.legacy_count == 288
    legacy, _ = legacy_fire_times(normalize_schedule(spec), "Europe/Berlin", at("2026-03-02T00:00:00Z"),
                                  at("2026-03-03T00:00:00Z"))
    assert legacy[0] == at("2026-03-02T00:17:00Z")  # 2026-02-28T23:17Z + 5 x 5h

    naive = check(spec, "Europe/Berlin", "2026-03-02T00:00:00Z", 60,
                  translation=Translation(kind="interval", interval_seconds=18000,
                                          anchor_date="2026-03-01T00:00:00+01:00", timezone="Europe/Berlin"))
    assert naive.verdict == "different"
    d = naive.first_difference
    assert (d.at, d.only_on, d.legacy_after) == (at("2026-03-02T00:00:00Z"), "prefect", at("2026-03-02T00:17:00Z"))


def test_daily_interval_stays_absolute_across_dst():
    spec = {"trigger": "interval", "days": 1, "start_date": "2026-03-01T00:17:00"}
    ours = check(spec, "Europe/Berlin", "2026-03-02T00:00:00Z", 40)
    assert ours.verdict == "equivalent" and ours.translation.timezone == "UTC"

    # zoned, Prefect adds calendar days: 00:17 CEST = 22:17Z after the change, APScheduler stays at 23:17Z
    naive = check(spec, "Europe/Berlin", "2026-03-02T00:00:00Z", 40,
                  translation=Translation(kind="interval", interval_seconds=86400,
                                          anchor_date="2026-03-01T00:17:00+01:00", timezone="Europe/Berlin"))
    assert naive.verdict == "different"
    assert (naive.first_difference.at, naive.first_difference.only_on) == (at("2026-03-29T22:17:00Z"), "prefect")


def test_interval_with_start_date_keeps_its_anchor_and_never_fires_before_it():
    spec = normalize_schedule({"trigger": "interval", "hours": 6, "start_date": "2026-05-01T00:07:00"})
    start = at("2026-05-01T00:07:00Z")

    # deployed after the start: an IntervalSchedule whose anchor is the start_date, as the server holds it
    after = translate(spec, "UTC", as_of=at("2026-06-01T00:00:00Z"))
    server = after.to_server_schedule()
    assert type(server).__name__ == "IntervalSchedule"
    assert server.anchor_date == start and server.interval == timedelta(hours=6)
    assert check(spec, "UTC", "2026-06-01T00:00:00Z", 30).verdict == "equivalent"

    # deployed before the start: Prefect's IntervalSchedule would fire before its anchor, so the start is the
    # RRULE's DTSTART and the Prefect server produces nothing before it
    before = translate(spec, "UTC", as_of=at("2026-04-30T00:00:00Z"))
    assert before.kind == "rrule" and before.rrule.startswith("DTSTART:20260501T000700\n")
    dates, _ = prefect_fire_times(before, at("2026-04-01T00:00:00Z"), at("2026-05-02T00:00:00Z"))
    assert dates[0] == start and dates == [start + timedelta(hours=6 * k) for k in range(4)]
    r = check(spec, "UTC", "2026-04-30T00:00:00Z", 3)  # translated as deployed at the window start
    assert r.verdict == "equivalent" and r.legacy_count == 8

    # the naive form (an IntervalSchedule anchored at the start, deployed before it) fires early: caught
    naive = check(spec, "UTC", "2026-04-30T00:00:00Z", 3, translation=after)
    assert naive.verdict == "different"
    assert (naive.first_difference.at, naive.first_difference.only_on) == (at("2026-04-30T00:07:00Z"), "prefect")
    assert naive.difference_count == 4 and any("start_date" in n for n in naive.notes)


# -- seconds and jitter ------------------------------------------------------------------------


def test_seconds_untranslatable_unless_approx():
    spec = {"trigger": "cron", "hour": 2, "minute": 0, "second": 30}
    r = check(spec, "UTC", "2026-01-01T00:00:00Z", 7)
    assert r.verdict == "untranslatable" and "second='30'" in r.reason and "--allow-approx" in r.reason
    assert r.first_difference is None and r.translation is None

    r = check(spec, "UTC", "2026-01-01T00:00:00Z", 7, allow_approx=True)
    assert r.translation.exact is False and r.verdict == "different"
    d = r.first_difference
    assert (d.at, d.only_on, d.legacy_after) == (at("2026-01-01T02:00:00Z"), "prefect", at("2026-01-01T02:00:30Z"))


def test_jitter_untranslatable_unless_approx():
    spec = {"trigger": "cron", "hour": 2, "jitter": 120}
    r = check(spec, "UTC", "2026-01-01T00:00:00Z", 7)
    assert r.verdict == "untranslatable" and "jitter=120" in r.reason
    r = check(spec, "UTC", "2026-01-01T00:00:00Z", 7, allow_approx=True)
    # jitter is random: the nominal times match, but that is no proof: never EQUIVALENT
    assert r.verdict == "approximate" and not r.ok and r.translation.exact is False and r.legacy_count == 7
    assert r.approximated == ["jitter=120"] and any("APPROXIMATE, not a proof" in n for n in r.notes)
    # an interval with jitter likewise
    r = check({"trigger": "interval", "hours": 1, "jitter": 5, "start_date": "2025-01-01T00:00:00"}, "UTC",
              "2026-01-01T00:00:00Z", 2, allow_approx=True)
    assert r.verdict == "approximate" and r.approximated == ["jitter=5"]


# -- APScheduler-only forms, one-offs, bounds ------------------------------------------------------


@pytest.mark.parametrize("spec", [
    {"trigger": "cron", "day": "last", "hour": 2},
    {"trigger": "cron", "day": "last fri,1", "hour": "2", "minute": "*/30"},
    {"trigger": "cron", "day": "2nd mon", "day_of_week": "mon-fri", "hour": 6},
    {"trigger": "cron", "day": "3rd tue", "day_of_week": "tue-sat", "hour": 6, "end_date": "2026-12-31T00:00:00"},
    {"trigger": "cron", "week": "*/2", "day_of_week": "tue,thu", "hour": 7},
    {"trigger": "cron", "year": "2026", "month": "jun-aug", "day": "*/3", "hour": 4},
    {"trigger": "cron", "hour": 8, "start_date": "2026-04-10T12:00:00", "end_date": "2026-09-01T00:00:00"},
    {"trigger": "interval", "minutes": 90, "start_date": "2026-02-01T00:05:00", "end_date": "2026-07-01T00:00:00"},
    {"trigger": "date", "run_date": "2026-06-24T18:00:00"},
])
def test_rrule_forms_are_equivalent(spec):
    r = check(spec, "Europe/Berlin", "2026-01-01T00:00:00Z", 365)
    assert r.translation.kind == "rrule" and r.verdict == "equivalent", r.summary()


def test_manual_and_empty_windows():
    r = verify(None, "UTC", start=at("2026-01-01T00:00:00Z"), horizon=timedelta(days=1))
    assert (r.verdict, r.legacy_count, r.prefect_count) == ("equivalent", 0, 0)
    r = check({"trigger": "date", "run_date": "2025-06-24T18:00:00"}, "UTC", "2026-01-01T00:00:00Z", 30)
    assert r.verdict == "equivalent" and r.legacy_count == 0 and any("nothing was compared" in n for n in r.notes)
    r = check({"trigger": "cron", "month": 2, "day": 30, "hour": 3}, "UTC", "2026-01-01T00:00:00Z", 30)
    assert r.verdict == "untranslatable" and "never fires" in r.reason
    with pytest.raises(InputError, match="horizon"):
        check({"frequency": "daily", "at": "02:00"}, "UTC", "2026-01-01T00:00:00Z", 0)


def test_work_is_capped():
    r = check({"cron": "* * * * *"}, "UTC", "2026-01-01T00:00:00Z", 30, max_fires=500)
    assert r.verdict == "equivalent" and r.legacy_count == r.prefect_count == 500
    assert r.end == at("2026-01-01T08:19:00Z") and any("capped" in n for n in r.notes)


def test_random_cron_triggers_are_equivalent():
    """Property check: random APScheduler cron triggers (UTC, no DST) translate exactly."""
    rnd = random.Random(20261122)
    days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

    def pick(lo, hi):
        kind = rnd.randrange(5)
        if kind == 0:
            return "*"
        if kind == 1:
            return f"*/{rnd.randint(2, max(2, (hi - lo) // 2))}"
        if kind == 2:
            a = rnd.randint(lo, hi)
            return f"{a}-{rnd.randint(a, hi)}"
        if kind == 3:
            return ",".join(str(v) for v in sorted(rnd.sample(range(lo, hi + 1), 3)))
        return str(rnd.randint(lo, hi))

    for _ in range(30):
        spec = {"trigger": "cron", "minute": pick(0, 59), "hour": pick(0, 23)}
        if rnd.random() < 0.6:
            spec["day"] = rnd.choice([pick(1, 31), "last", "1st mon", "last sun", "2nd fri,15"])
        if rnd.random() < 0.6:
            spec["day_of_week"] = rnd.choice([pick(0, 6), "mon-fri", ",".join(rnd.sample(days, 2))])
        if rnd.random() < 0.3:
            spec["month"] = pick(1, 12)
        r = check(spec, "UTC", "2026-01-01T00:00:00Z", 370, max_fires=1500)
        if r.verdict == "untranslatable" and "never fires" in r.reason:  # e.g. day='last sun', mon-fri
            continue
        assert r.verdict == "equivalent", (spec, r.translation and r.translation.describe(), r.summary())


# -- CLI -------------------------------------------------------------------------------------------


def run(*args):
    from cutover.cli import cli

    return CliRunner().invoke(cli, list(args))


def test_cli_adhoc_verify_exit_codes():
    ok = run("schedules", "verify", "--schedule", "cron 0 2 * * 0", "--start", "2026-01-01T00:00:00Z",
             "--horizon", "28d")
    assert ok.exit_code == 0, ok.output
    assert "EQUIVALENT" in ok.output and "cron 0 2 * * 1" in ok.output

    diff = run("schedules", "verify", "--schedule", "daily 02:30", "--timezone", "Europe/Berlin",
               "--start", "2026-03-27T00:00:00Z", "--horizon", "4d")
    assert diff.exit_code == 1
    assert "DIFFERENT" in diff.output
    assert "first difference: 2026-03-29T00:30:00Z (2026-03-29 01:30:00 CET) fires on prefect only" in diff.output

    untr = run("schedules", "verify", "--schedule", '{"trigger": "cron", "hour": 2, "jitter": 30}',
               "--start", "2026-01-01T00:00:00Z", "--horizon", "7d")
    assert untr.exit_code == 1 and "UNTRANSLATABLE" in untr.output and "--allow-approx" in untr.output
    approx = run("schedules", "verify", "--schedule", '{"trigger": "cron", "hour": 2, "jitter": 30}',
                 "--start", "2026-01-01T00:00:00Z", "--horizon", "7d", "--allow-approx")
    assert approx.exit_code == 1, approx.output  # not a proof
    assert "APPROXIMATE" in approx.output and "EQUIVALENT" not in approx.output and "approximated: jitter=30" in approx.output

    js = run("schedules", "verify", "--schedule", "weekly sun 02:30", "--timezone", "Europe/Berlin",
             "--start", "2026-03-01T00:00:00Z", "--horizon", "30d", "--json")
    assert js.exit_code == 1
    doc = json.loads(js.output)
    assert doc["ok"] is False
    [res] = doc["results"]
    assert res["verdict"] == "different" and res["first_difference"]["at"] == "2026-03-29T00:30:00Z"
    assert res["first_difference"]["only_on"] == "prefect"
    assert res["first_difference"]["legacy_after"] == "2026-03-29T01:30:00Z"


def test_cli_usage_errors():
    r = run("schedules", "verify")
    assert isinstance(r.exception, InputError) and r.exception.exit_code == 2
    r = run("schedules", "verify", "--schedule", "daily 02:00", "--horizon", "soon")
    assert isinstance(r.exception, InputError) and "--horizon" in str(r.exception)
    r = run("schedules", "translate", "--schedule", '{"trigger": "cron", "hour": 2, "minute": 0, "second": 30}')
    assert isinstance(r.exception, InputError) and "second='30'" in str(r.exception)


def test_cli_inventory(workspace_env, tmp_path):
    from cutover.core.workspace import Workspace
    from tests.helpers import add_ingestion

    ws = Workspace()
    add_ingestion(ws, "orders", tmp_path, schedule=parse_schedule_text("cron 0 2 * * 0"), timezone="UTC")
    add_ingestion(ws, "events", tmp_path, schedule=parse_schedule_text("daily 01:30"), timezone="America/New_York")
    add_ingestion(ws, "adhoc", tmp_path)  # manual

    r = run("schedules", "verify", "orders", "adhoc", "--start", "2026-10-30T00:00:00Z", "--horizon", "7d")
    assert r.exit_code == 0, r.output
    r = run("schedules", "verify", "--all", "--start", "2026-10-30T00:00:00Z", "--horizon", "7d")
    assert r.exit_code == 1
    rows = {ln.split()[0]: ln.split()[1] for ln in r.output.splitlines()[2:5]}  # the summary table
    assert rows == {"orders": "EQUIVALENT", "events": "DIFFERENT", "adhoc": "EQUIVALENT"}
    assert "events: DIFFERENT" in r.output and "orders: EQUIVALENT" not in r.output  # details: what is not proven
    assert "first difference: 2026-11-01T06:30:00Z (2026-11-01 01:30:00 EST) fires on legacy only" in r.output

    t = run("schedules", "translate", "orders", "--json")
    assert t.exit_code == 0, t.output
    [doc] = json.loads(t.output)["results"]
    assert doc["prefect_type"] == "CronSchedule" and doc["prefect_schedule"]["cron"] == "0 2 * * 1"
    t = run("schedules", "translate", "events")
    assert t.exit_code == 0 and "cron 30 1 * * * America/New_York" in t.output
    r = run("schedules", "verify", "nope")
    assert isinstance(r.exception, InputError) and "no ingestion or job 'nope'" in str(r.exception)
