"""The deploy gate: a Prefect schedule is deployed only when it is proven equivalent to the legacy one.

Every path that puts a translated schedule on a Prefect deployment (`cutover shadow start`,
`cutover execute`, `cutover prefect deploy`) asks :func:`check_deploy` first. A schedule whose
verification (:func:`cutover.core.schedule.verify.verify`, default horizon: a year and the next
two DST changes) is not ``equivalent`` -- ``different``, ``approximate`` or ``untranslatable`` --
is refused (GateFailed, exit 1, nothing written) unless the operator names the ingestion with
``--accept-schedule-difference ID``; each acceptance is written to the audit log with the
verdict it accepted, when the deploy really happens (:func:`record_acceptances`, never in a dry run).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

from cutover.core.errors import GateFailed, InputError
from cutover.core.progress import track
from cutover.core.schedule.verify import VerifyResult, verify
from cutover.core.state import audit

ACCEPT_OPTION = "--accept-schedule-difference"
AUDIT_ACTION = "accept-schedule-difference"


@dataclass(frozen=True)
class ScheduleCheck:
    ingestion_id: str
    result: VerifyResult | None  # None: manual (no schedule)
    accepted: bool

    @property
    def proven(self) -> bool:
        return self.result is None or self.result.ok

    @property
    def refused(self) -> bool:
        return not self.proven and not self.accepted

    def reason(self) -> str:
        r = self.result
        if r is None:
            return "manual"
        if r.verdict == "different":
            d = r.first_difference
            first = f"; first {d.as_dict()['at']} ({d.local(d.at)}) on {d.only_on} only" if d else ""
            return f"schedule DIFFERENT ({r.difference_count} differing instant(s) up to {r.end:%Y-%m-%d}{first})"
        if r.verdict == "approximate":
            return f"schedule APPROXIMATE (Prefect cannot express {', '.join(r.approximated)})"
        if r.verdict == "untranslatable":
            return f"schedule UNTRANSLATABLE ({r.reason})"
        return "schedule equivalent"


def _cache_key(ing) -> str:
    return json.dumps([ing.schedule, ing.timezone], sort_keys=True, default=str)


def check_schedules(ingestions: Iterable, accepted: Iterable[str] = (), *, allow_approx: bool = False,
                    start: datetime | None = None) -> list[ScheduleCheck]:
    """Verify each ingestion's schedule (identical schedules once) with the default horizon."""
    ings = list(ingestions)
    accept = set(accepted)
    begin = start or datetime.now(timezone.utc).replace(second=0, microsecond=0)
    done: dict[str, VerifyResult] = {}
    out = []
    for ing in track(ings, "verifying schedules"):
        if ing.schedule is None:
            out.append(ScheduleCheck(ing.id, None, ing.id in accept))
            continue
        key = _cache_key(ing)
        if key not in done:
            try:
                done[key] = verify(ing.schedule, ing.timezone, start=begin, allow_approx=allow_approx)
            except InputError as e:
                done[key] = VerifyResult(verdict="untranslatable", legacy_count=0, prefect_count=0,
                                         first_difference=None, translation=None, start=begin, end=begin,
                                         timezone=ing.timezone, reason=e.one_line())
        out.append(ScheduleCheck(ing.id, done[key], ing.id in accept))
    return out


def check_accepted_ids(accepted: Iterable[str], ids: Iterable[str]) -> None:
    """InputError (exit 2) when ``--accept-schedule-difference`` names an ingestion the command is not about."""
    unknown = set(accepted) - set(ids)
    if unknown:
        raise InputError(f"{ACCEPT_OPTION} names {', '.join(sorted(unknown))}, which this command does not deploy",
                         fix="name only ingestions given to the command")


def refusal(checks: list[ScheduleCheck], command: str) -> GateFailed | None:
    """The error that refuses the deploy (None when every schedule is proven or accepted)."""
    bad = [c for c in checks if c.refused]
    if not bad:
        return None
    first = bad[0]
    more = f" (and {len(bad) - 1} more: {', '.join(c.ingestion_id for c in bad[1:])})" if len(bad) > 1 else ""
    ids = " ".join(f"{ACCEPT_OPTION} {c.ingestion_id}" for c in bad)
    return GateFailed(f"{command} refused: {first.ingestion_id}: {first.reason()}{more}; nothing was changed",
                      fix=f"see `cutover schedules verify {' '.join(c.ingestion_id for c in bad)}`, fix the legacy "
                          f"schedule, or deploy it anyway with {ids} (recorded in the audit log)")


def check_deploy(ingestions: Iterable, accepted: Iterable[str] = (), *, command: str,
                 allow_approx: bool = False) -> list[ScheduleCheck]:
    """:func:`check_schedules`, raising the refusal (GateFailed, exit 1) when one is neither proven nor accepted."""
    checks = check_schedules(ingestions, accepted, allow_approx=allow_approx)
    err = refusal(checks, command)
    if err is not None:
        raise err
    return checks


def record_acceptances(engine, checks: list[ScheduleCheck], *, command: str, reason: str | None = None) -> int:
    """One audit row per accepted, unproven schedule (call it when the deploy really happens)."""
    n = 0
    for c in checks:
        if c.accepted and not c.proven:
            r = c.result
            audit.record(engine, AUDIT_ACTION, target=c.ingestion_id, reason=reason or None, detail={
                "command": command, "verdict": r.verdict, "difference_count": r.difference_count,
                "first_difference": r.first_difference.as_dict()["text"] if r.first_difference else None,
                "approximated": r.approximated, "untranslatable": r.reason,
                "window": [r.as_dict()["start"], r.as_dict()["end"]],
                "prefect_schedule": r.translation.describe() if r.translation else None})
            n += 1
    return n
