"""schedules verify | translate: legacy schedules as Prefect schedules, proven to fire at the same instants."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

from cutover.commands.result import Result
from cutover.core.config import Settings, parse_duration
from cutover.core.errors import EXIT_FAIL, InputError
from cutover.core.schedule.translate import Translation, translate
from cutover.core.schedule.triggers import check_timezone, describe, parse_schedule_text
from cutover.core.output import iso_time
from cutover.core.schedule.verify import VERDICTS, VerifyResult, verify
from cutover.core.workspace import Workspace

ADHOC = "(--schedule)"


def targets(settings: Settings, ids, all_: bool, schedule_text: str | None, tz: str | None
            ) -> list[tuple[str, dict | None, str]]:
    """[(name, spec, timezone)] from the inventory, or one ad-hoc schedule (``schedule_text``)."""
    if schedule_text is not None:
        if ids or all_:
            raise InputError("--schedule cannot be combined with ingestion ids or --all", fix="use one or the other")
        tz = tz or "UTC"
        check_timezone(tz)
        return [(ADHOC, parse_schedule_text(schedule_text), tz)]
    if tz is not None:
        raise InputError("--timezone only applies to an ad-hoc --schedule", fix="the ingestion's own timezone is used")
    if not ids and not all_:
        raise InputError("no ingestion named", fix="name one or more ingestion ids, pass --all, or try one with "
                                                   "--schedule 'daily 02:30' --timezone Europe/Berlin")
    items = Workspace(settings).items.resolve(ids, all_=all_)
    return [(i.id, i.schedule, i.timezone) for i in items]


def parse_start(text: str | None) -> datetime:
    """An ISO date-time (UTC when naive), default now to the minute."""
    if not text:
        return datetime.now(timezone.utc).replace(second=0, microsecond=0)
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"--start {text!r} is not an ISO date-time", fix="write e.g. 2026-03-01T00:00:00Z") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _key(spec: dict | None, zone: str) -> str:
    return json.dumps([spec, zone], sort_keys=True, default=str)


@dataclass
class Verified(Result):
    start: datetime
    horizon: str  # as given, or "default (...)"
    results: list[tuple[str, dict | None, VerifyResult]] = field(default_factory=list)  # (name, legacy spec, result)

    @property
    def bad(self) -> list[str]:
        return [n for n, _, r in self.results if not r.ok]

    @property
    def exit_code(self) -> int:
        return EXIT_FAIL if self.bad else 0

    def counts(self) -> dict[str, int]:
        return {v: sum(1 for _, _, r in self.results if r.verdict == v) for v in VERDICTS}

    def as_dict(self) -> dict:
        return {"ok": not self.bad, "start": iso_time(self.start), "horizon": self.horizon, "counts": self.counts(),
                "results": [{"ingestion": n, "legacy_schedule": s, "legacy_text": describe(s), **r.as_dict()}
                            for n, s, r in self.results]}


def schedules_verify(settings: Settings, ingestion_ids=(), *, all_: bool = False, schedule_text: str | None = None,
                     tz: str | None = None, horizon: str | None = None, start: str | None = None,
                     allow_approx: bool = False, max_fires: int = 200_000,
                     progress: Callable[[int, int], None] | None = None) -> Verified:
    """Compare the fire times APScheduler 3 produces with the ones Prefect generates over the
    horizon (default: at least 366 days and past the next two DST changes of every zone involved),
    per schedule; identical schedules are verified once. A stored schedule APScheduler rejects
    is reported untranslatable; an ad-hoc one raises. ``progress(done, total)`` hears each one."""
    span = None
    if horizon is not None:
        secs = parse_duration(horizon, what="--horizon")
        if secs <= 0:
            raise InputError("--horizon must be positive", fix="give e.g. --horizon 400d (or leave the default)")
        span = timedelta(seconds=secs)
    begin = parse_start(start)
    out = Verified(begin, horizon or "default: 366 days and the next two DST changes of each zone")
    items = targets(settings, ingestion_ids, all_, schedule_text, tz)
    done: dict[str, VerifyResult] = {}
    for n, (name, spec, zone) in enumerate(items, 1):
        key = _key(spec, zone)
        if key not in done:
            try:
                done[key] = verify(spec, zone, start=begin, horizon=span, allow_approx=allow_approx,
                                   max_fires=max_fires)
            except InputError as e:
                if schedule_text is not None:
                    raise
                done[key] = VerifyResult(verdict="untranslatable", legacy_count=0, prefect_count=0,
                                         first_difference=None, translation=None, start=begin,
                                         end=begin + (span or timedelta(0)), timezone=zone, reason=e.one_line())
        out.results.append((name, spec, done[key]))
        if progress is not None:
            progress(n, len(items))
    return out


@dataclass
class Translated(Result):
    name: str
    spec: dict | None
    timezone: str
    translation: Translation | None
    prefect_schedule: object | None  # a Prefect schedule model (prefect imported only to build it)
    error: str | None = None  # why it cannot be translated

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict:
        sched = self.prefect_schedule
        return {"ingestion": self.name, "legacy_schedule": self.spec, "legacy_text": describe(self.spec),
                "legacy_timezone": self.timezone, "error": self.error,
                **(self.translation.as_dict() if self.translation else {}),
                "prefect_schedule": sched.model_dump(mode="json") if sched is not None else None,
                "prefect_type": type(sched).__name__ if sched is not None else None}


@dataclass
class TranslatedMany(Result):
    items: list[Translated] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_FAIL if any(not t.ok for t in self.items) else 0

    def as_dict(self) -> dict:
        return {"ok": all(t.ok for t in self.items), "results": [t.as_dict() for t in self.items]}


def schedules_translate(settings: Settings, ingestion_ids=(), *, all_: bool = False, schedule_text: str | None = None,
                        tz: str | None = None, allow_approx: bool = False,
                        progress: Callable[[int, int], None] | None = None) -> TranslatedMany:
    """The Prefect schedule each legacy schedule becomes. An ad-hoc --schedule that cannot be
    translated raises InputError; a stored one is reported (``error``) and the others go on."""
    if isinstance(ingestion_ids, str):
        ingestion_ids = (ingestion_ids,)
    items = targets(settings, tuple(ingestion_ids), all_, schedule_text, tz)
    out = TranslatedMany()
    now = datetime.now(timezone.utc)
    done: dict[str, tuple[Translation | None, object | None, str | None]] = {}
    for n, (name, spec, zone) in enumerate(items, 1):
        key = _key(spec, zone)
        if key not in done:
            try:
                tr = translate(spec, zone, allow_approx=allow_approx, as_of=now)
                done[key] = (tr, tr.to_prefect_schedule(), None)
            except InputError as e:
                if schedule_text is not None:
                    raise
                done[key] = (None, None, e.one_line())
        tr, sched, err = done[key]
        out.items.append(Translated(name, spec, zone, tr, sched, err))
        if progress is not None:
            progress(n, len(items))
    return out
