"""schedules verify | translate: legacy schedules as Prefect schedules, proven to fire at the same instants."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from cutover.commands.result import Result
from cutover.core.config import Settings, parse_duration
from cutover.core.errors import EXIT_FAIL, InputError
from cutover.core.schedule.translate import Translation, translate
from cutover.core.schedule.triggers import check_timezone, describe, parse_schedule_text
from cutover.core.schedule.verify import VerifyResult, verify
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


@dataclass
class Verified(Result):
    start: datetime
    horizon: str
    results: list[tuple[str, dict | None, VerifyResult]] = field(default_factory=list)  # (name, legacy spec, result)

    @property
    def bad(self) -> list[str]:
        return [n for n, _, r in self.results if not r.ok]

    @property
    def exit_code(self) -> int:
        return EXIT_FAIL if self.bad else 0

    def counts(self) -> dict[str, int]:
        return {v: sum(1 for _, _, r in self.results if r.verdict == v)
                for v in ("equivalent", "different", "untranslatable")}

    def as_dict(self) -> dict:
        return {"ok": not self.bad, "start": self.start.isoformat(), "horizon": self.horizon,
                "results": [{"ingestion": n, "legacy_schedule": s, **r.as_dict()} for n, s, r in self.results]}


def schedules_verify(settings: Settings, ingestion_ids=(), *, all_: bool = False, schedule_text: str | None = None,
                     tz: str | None = None, horizon: str = "90d", start: str | None = None, allow_approx: bool = False,
                     max_fires: int = 200_000) -> Verified:
    """Compare the fire times APScheduler 3 produces with the ones Prefect generates over the
    horizon (DST changes included), per schedule. A stored schedule APScheduler rejects is
    reported untranslatable; an ad-hoc one raises."""
    secs = parse_duration(horizon, what="--horizon")
    if secs <= 0:
        raise InputError("--horizon must be positive", fix="give e.g. --horizon 90d")
    begin = parse_start(start)
    out = Verified(begin, horizon)
    for name, spec, zone in targets(settings, ingestion_ids, all_, schedule_text, tz):
        try:
            res = verify(spec, zone, start=begin, horizon=timedelta(seconds=secs), allow_approx=allow_approx,
                         max_fires=max_fires)
        except InputError as e:
            if schedule_text is not None:
                raise
            res = VerifyResult(verdict="untranslatable", legacy_count=0, prefect_count=0, first_difference=None,
                               translation=None, start=begin, end=begin + timedelta(seconds=secs), timezone=zone,
                               reason=e.one_line())
        out.results.append((name, spec, res))
    return out


@dataclass
class Translated(Result):
    name: str
    spec: dict | None
    timezone: str
    translation: Translation
    prefect_schedule: object | None  # a Prefect schedule model (prefect imported only to build it)

    def as_dict(self) -> dict:
        sched = self.prefect_schedule
        return {"ingestion": self.name, "legacy_schedule": self.spec, "legacy_text": describe(self.spec),
                **self.translation.as_dict(),
                "prefect_schedule": sched.model_dump(mode="json") if sched is not None else None,
                "prefect_type": type(sched).__name__ if sched is not None else None}


def schedules_translate(settings: Settings, ingestion_id: str | None = None, *, schedule_text: str | None = None,
                        tz: str | None = None, allow_approx: bool = False) -> Translated:
    """The Prefect schedule a legacy schedule becomes (InputError when it cannot be translated)."""
    [(name, spec, zone)] = targets(settings, (ingestion_id,) if ingestion_id else (), False, schedule_text, tz)
    tr = translate(spec, zone, allow_approx=allow_approx)
    return Translated(name, spec, zone, tr, tr.to_prefect_schedule())
