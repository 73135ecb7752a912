"""Crontab (Vixie/Debian cron) schedule -> Prefect 3 schedule.

A ``{"crontab": "M H DOM MON DOW"}`` schedule is run by cron itself (``legacy/cron/side.py``),
so it keeps *standard* cron semantics -- unlike ``{"cron": ...}``, which in this code
base is APScheduler's ``CronTrigger.from_crontab``:

- 0 and 7 are Sunday (Prefect's croniter reads both the same way);
- when day-of-month and day-of-week are both restricted and neither starts with ``*``,
  a day matches if EITHER matches: Prefect ``CronSchedule(day_or=True)``, which is
  croniter's (and cron's) OR;
- Vixie's quirk: a field that *starts* with ``*`` (``*/2``) counts as unrestricted for
  that rule, so ``0 0 */2 * 1`` means odd days AND Mondays. croniter would OR them, so
  such a line becomes ``day_or=False`` (AND), which is what cron does;
- every hour at :MM in a zone with whole-hour DST offsets becomes every hour at :MM' in
  UTC: cron runs such "wildcard-hour" jobs in both repeated hours and the skipped hour
  simply does not exist, exactly as a UTC cron fires;
- day lists that make Prefect's vendored croniter skip the start of March (``1,30``,
  ``1-31/29`` ... with February in the months) become an RRULE set that says the same.

Whether both engines then fire at the same instants -- DST change days included, where
cron has its own rules (a fixed-time job in the skipped hour runs at the jump, and only
once in the repeated hour) -- is what ``cutover.core.schedule.verify`` proves, with the legacy
side computed by ``cronsim`` (a Debian cron simulator), not by croniter.
"""

from __future__ import annotations

from cutover.core.errors import InputError
from cutover.core.schedule.cronexpr import fields
from cutover.core.schedule.translation import DEFAULT_RRULE_START, Translation, cron_field, rrule_dt, zone_offsets

_CRON_TO_RRULE_DAY = ("SU", "MO", "TU", "WE", "TH", "FR", "SA")  # cron numbering: 0 = Sunday


def translate_crontab(expr: str, tz: str, *, allow_approx: bool = False) -> Translation:
    """Always exact (``allow_approx`` is accepted for symmetry with ``translate``: nothing is dropped)."""
    f = fields(expr)  # InputError when invalid
    notes = [f"crontab '{' '.join(f.texts)}' keeps standard cron semantics (cron runs it): 0 and 7 are Sunday"]
    dom_r, dow_r = not f.dom_full, not f.dow_full
    day_or = True
    if dom_r and dow_r:
        if f.day_and:
            day_or = False
            star = f.texts[2] if f.texts[2].startswith("*") else f.texts[4]
            notes.append(f"'{star}' starts with '*', so cron requires day-of-month AND day-of-week to match "
                         f"(Vixie cron's rule); the Prefect cron uses day_or=False")
        else:
            notes.append("day-of-month and day-of-week are both restricted: cron fires on either, "
                         "and so does the Prefect cron (day_or=True)")
    if dom_r and 2 in f.months and min(f.days) + 29 <= max(f.days):
        return _as_rrule(f, tz, day_or, notes)

    minutes = set(f.minutes)
    cron_tz = tz
    offsets = zone_offsets(tz)
    if (len(offsets) > 1 and f.hours == frozenset(range(24)) and not dom_r and not dow_r
            and f.months == frozenset(range(1, 13))
            and len({o % 3600 for o in offsets}) == 1 and next(iter(offsets)) % 60 == 0):
        shift = (next(iter(offsets)) % 3600) // 60
        minutes = {(m - shift) % 60 for m in minutes}
        cron_tz = "UTC"
        notes.append(f"every hour at the same minute in {tz} is every hour at a fixed minute in UTC (its offsets "
                     f"differ by whole hours), so the Prefect cron runs in UTC: like cron it then fires in both "
                     f"repeated hours when clocks go back")
    cron = " ".join([
        cron_field(minutes, 0, 59),
        cron_field(set(f.hours), 0, 23),
        cron_field(set(f.days), 1, 31),
        cron_field(set(f.months), 1, 12),
        cron_field(set(f.weekdays), 0, 6),
    ])
    if cron_tz == tz and len(offsets) > 1:
        notes.append(f"DST in {tz}: cron runs a fixed-time job whose time is skipped at the jump and only once in "
                     f"the repeated hour; `cutover schedules verify` shows whether Prefect does the same")
    return Translation(kind="cron", cron=cron, day_or=day_or, timezone=cron_tz, exact=True, notes=notes)


def _as_rrule(f, tz: str, day_or: bool, notes: list[str]) -> Translation:
    common = ["FREQ=MONTHLY", "BYMONTH=" + ",".join(str(m) for m in sorted(f.months))]
    tail = ["BYHOUR=" + ",".join(str(h) for h in sorted(f.hours)),
            "BYMINUTE=" + ",".join(str(m) for m in sorted(f.minutes)), "BYSECOND=0", "WKST=MO"]
    days = "BYMONTHDAY=" + ",".join(str(d) for d in sorted(f.days))
    weekdays = "BYDAY=" + ",".join(_CRON_TO_RRULE_DAY[d] for d in sorted(f.weekdays))
    if f.dow_full:
        rules = [common + [days] + tail]
    elif not day_or:
        rules = [common + [days, weekdays] + tail]  # RRULE BY* parts are ANDed
    else:
        rules = [common + [days] + tail, common + [weekdays] + tail]  # an RRULE set is a union: OR
    if not rules:  # pragma: no cover
        raise InputError(f"crontab {' '.join(f.texts)} never fires", fix="fix the crontab line")
    text = f"DTSTART:{rrule_dt(DEFAULT_RRULE_START)}\n" + "\n".join("RRULE:" + ";".join(r) for r in rules)
    notes.append(f"day-of-month '{f.texts[2]}' with February in the months would make Prefect's croniter skip the "
                 f"start of March; the RRULE {'set ' if len(rules) > 1 else ''}says the same as cron")
    return Translation(kind="rrule", rrule=text, timezone=tz, exact=True, notes=notes)


__all__ = ["translate_crontab"]
