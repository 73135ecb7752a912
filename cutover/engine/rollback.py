"""`cutover rollback`: give an ingestion back to the legacy orchestrator, at 3 a.m., with Prefect down.

For every ingestion in SHADOW, CUTOVER or DONE, one move of steps run by
:func:`cutover.engine.operation.operation` (journaled, locked, resumable, ``--dry-run``; refused under the
lock while a pause snapshot covers the ingestion):

1. pause the Prefect deployment, live mode        — may fail without stopping the operation
2. pause the Prefect deployment, shadow mode      — may fail without stopping the operation
3. (``--cancel-running``) cancel the in-flight flow runs of both deployments and release their
   claims (:func:`cancel_in_flight`)             — may fail without stopping the operation
4. resume the legacy job at its next correct fire time from now and clear the batch flag
5. state -> ROLLED_BACK                           — only when every step before it is done

The Prefect steps come first so that, when the API answers, both sides are never
live-scheduled at once; when it does not answer they are recorded FAILED, the legacy side is
resumed all the same (an outage of the new orchestrator must not keep the old one from taking
over; the live ledger fences any overlap), the state stays as it was, and the command exits 3.
Because the state did not change, the operation id (derived from the state stamps) is the same
when the command is run again, so the journal resumes: done steps are skipped, failed ones
retried, then the state changes.

Once the Prefect API failed with "unreachable" in a run, the following Prefect steps of that
run fail at once (:class:`FailFastSides`) instead of waiting for the connection again.

The report lists the missed intervals (:func:`missed_intervals`): legacy fire times between the
moment the legacy side was paused for the cutover (the journal's "pause the legacy job" step)
and the moment it was resumed (or now), for which no successful live run of either orchestrator
started in that interval: candidates for ``cutover legacy run ID --trigger backfill``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Callable

from sqlalchemy import select

from cutover.core.errors import InputError, PartialFailure
from cutover.core.schedule.triggers import build_trigger, next_fire_times
from cutover.core.state import states
from cutover.core.state.models import journal as t_journal
from cutover.engine.inflight import cancel_in_flight
from cutover.engine.operation import operation, refuse_under_pause
from cutover.engine.plan import CONTINUE, Move, Plan, Step, step_args
from cutover.protocol import OrchestratorError
from cutover.registry.sides import LiveSides

__all__ = ["FailFastSides", "ReportedPartialFailure", "cancel_in_flight", "missed_intervals", "moves_for",
           "print_report", "rollback", "steps_for", "targets"]

ROLLBACK_FROM = (states.SHADOW, states.CUTOVER, states.DONE)
MAX_MISSED = 500  # per ingestion, in the report
Echo = Callable[[str], None]


# -- the moves -----------------------------------------------------------------------------

def targets(ws, ids: list[str], *, all_: bool = False, wave: int | None = None, plan_file=None) -> list[str]:
    """The ingestion ids named by ``INGESTION...``, ``--all`` or ``--wave N --plan PLAN``."""
    given = sum(bool(x) for x in (ids, all_, wave is not None or plan_file is not None))
    if given != 1:
        raise InputError("say what to roll back", fix="name ingestions, or pass --all, or --wave N --plan PLAN")
    if wave is not None or plan_file is not None:
        if wave is None or plan_file is None:
            raise InputError("--wave and --plan go together", fix="pass --wave N --plan PLAN")
        p = Plan.load(plan_file)
        for w in p.waves:
            if w.number == wave:
                return [m.ingestion_id for m in w.moves]
        raise InputError(f"the plan has no wave {wave}", fix=f"waves are 1..{len(p.waves)}")
    if all_:
        st = states.get_states(ws.state_engine)
        return [i.id for i in ws.items.list() if st.get(i.id, states.LEGACY) in ROLLBACK_FROM]
    for i in ids:
        ws.items.get(i)  # NotFound with the known ids
    return list(dict.fromkeys(ids))


def steps_for(iid: str, from_state: str, *, cancel_running: bool, cancel_timeout: float):
    steps = [
        Step("pause_prefect", iid, step_args(mode="live", on_failure=CONTINUE)),
        Step("pause_prefect", iid, step_args(mode="shadow", on_failure=CONTINUE)),
    ]
    if cancel_running:
        steps.append(Step("cancel_prefect", iid, step_args(timeout=cancel_timeout, on_failure=CONTINUE)))
    steps += [
        Step("resume_legacy", iid),
        Step("set_state", iid, step_args(from_state=from_state, to_state=states.ROLLED_BACK)),
    ]
    return tuple(steps)


def moves_for(ws, ids: list[str], *, cancel_running: bool, cancel_timeout: float = 120.0):
    st = states.get_states(ws.state_engine)
    moves, notes = [], []
    for iid in ids:
        cur = st.get(iid, states.LEGACY)
        if cur == states.ROLLED_BACK:
            notes.append(f"{iid}: already ROLLED_BACK")
        elif cur not in ROLLBACK_FROM:
            notes.append(f"{iid}: {cur}, nothing to roll back (the legacy side owns it)")
        else:
            moves.append(Move(iid, cur, states.ROLLED_BACK,
                              steps_for(iid, cur, cancel_running=cancel_running, cancel_timeout=cancel_timeout)))
    return moves, notes


# -- sides that stop waiting for an unreachable Prefect API ----------------------------------------

class _FailFast:
    def __init__(self, owner: "FailFastSides", target):
        self._owner, self._target = owner, target

    def __getattr__(self, name):
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def call(*a, **kw):
            if self._owner.down is not None:
                raise OrchestratorError(f"not tried: {self._owner.down}")
            try:
                return attr(*a, **kw)
            except OrchestratorError as e:
                if "unreachable" in str(e) or "unavailable" in str(e).lower():
                    self._owner.down = f"the Prefect API was unreachable earlier in this run ({e})"
                raise

        return call


class FailFastSides:
    """LiveSides whose Prefect writers fail at once after the API was found unreachable once."""

    def __init__(self, sides):
        self._sides = sides
        self.down: str | None = None
        self._wrapped: dict[str, _FailFast] = {}

    def legacy(self):
        return self._sides.legacy()

    def prefect(self, mode: str):
        if mode not in self._wrapped:
            self._wrapped[mode] = _FailFast(self, self._sides.prefect(mode))
        return self._wrapped[mode]


# -- missed intervals --------------------------------------------------------------------------

def legacy_paused_window(ws, iid: str) -> tuple[datetime | None, datetime | None]:
    """(when the legacy side was last paused for the cutover, when it was resumed after that or None),
    from the journal's steps."""
    t = t_journal
    with ws.state_engine.connect() as conn:
        rows = conn.execute(select(t.c.step, t.c.status, t.c.ended_at).where(
            t.c.step.in_([f"{iid}: pause the legacy job", f"{iid}: resume the legacy job"]),
            t.c.status == "DONE")).all()

    def aware(dt):
        return dt if dt is None or dt.tzinfo else dt.replace(tzinfo=timezone.utc)

    pauses = sorted(aware(r.ended_at) for r in rows if r.step.endswith("pause the legacy job") and r.ended_at)
    if not pauses:
        return None, None
    paused_at = pauses[-1]
    resumes = sorted(aware(r.ended_at) for r in rows if r.step.endswith("resume the legacy job") and r.ended_at
                     and aware(r.ended_at) >= paused_at)
    return paused_at, (resumes[0] if resumes else None)


def missed_intervals(ws, iid: str, *, now: datetime | None = None) -> dict:
    """The legacy fire times in the window the legacy side was paused for the cutover with no
    successful (SUCCESS or PARTIAL) live run of either orchestrator started in [fire time, next fire time)."""
    now = now or datetime.now(timezone.utc)
    out = {"ingestion_id": iid, "paused_at": None, "resumed_at": None, "missed": [], "more": 0}
    ing = ws.items.find(iid)
    if ing is None or ing.schedule is None:
        return out
    paused_at, resumed_at = legacy_paused_window(ws, iid)
    if paused_at is None:
        return out
    end = min(resumed_at or now, now)
    out["paused_at"], out["resumed_at"] = paused_at.isoformat(), resumed_at.isoformat() if resumed_at else None
    trig = build_trigger(ing.schedule, ing.timezone)
    fires = next_fire_times(trig, paused_at, until=end)
    if not fires:
        return out
    ok = sorted(r.started_at for r in ws.runs.list(ingestion_id=iid, mode="live", since=paused_at)
                if r.status in ("SUCCESS", "PARTIAL"))
    bounds = fires[1:] + [_after(trig, fires[-1])]  # each interval ends at the next fire time
    missed = []
    for t, t_next in zip(fires, bounds):
        if not any(t <= s and (t_next is None or s < t_next) for s in ok):
            missed.append({"fire_time": t.isoformat(), "until": t_next.isoformat() if t_next else None})
    out["missed"] = missed[:MAX_MISSED]
    out["more"] = max(0, len(missed) - MAX_MISSED)
    return out


def _after(trig, t: datetime) -> datetime | None:
    nxt = next_fire_times(trig, t.astimezone(timezone.utc) + timedelta(microseconds=1), 1)
    return nxt[0] if nxt else None


# -- the command -------------------------------------------------------------------------------

def rollback(ws, ids: list[str], *, all_: bool = False, wave: int | None = None, plan_file=None,
             cancel_running: bool = False, cancel_timeout: float = 120.0, reason: str = "", dry_run: bool = False,
             echo: Echo = print, sides=None) -> dict:
    """Run (or show) the rollback; returns the report. Raises PartialFailure (exit 3) after
    building the report when a step is not done (``report["partial"]`` says which)."""
    chosen = targets(ws, ids, all_=all_, wave=wave, plan_file=plan_file)
    moves, notes = moves_for(ws, chosen, cancel_running=cancel_running, cancel_timeout=cancel_timeout)
    for n in notes:
        echo(n)
    report = {"dry_run": dry_run, "ingestions": [m.ingestion_id for m in moves], "notes": notes,
              "partial": None, "missed_intervals": {}}
    if not moves:
        return report

    def guard() -> None:
        """Under the operation lock (and first in a dry run): a pause in force over these ingestions wins."""
        refuse_under_pause(ws, [m.ingestion_id for m in moves], "a rollback (it would resume the legacy job behind "
                                                                "the pause)")

    if dry_run:
        guard()
    if sides is None:
        sides = LiveSides(ws, prefect_worker=False)  # pauses Prefect: no flow has to run
    sides = FailFastSides(sides)
    partial = None
    try:
        operation(ws, "rollback", moves, sides, echo, dry_run=dry_run, reason=reason, guard=guard)
    except PartialFailure as e:
        partial = e
        report["partial"] = e.message
    for m in moves:
        mi = missed_intervals(ws, m.ingestion_id)
        report["missed_intervals"][m.ingestion_id] = mi
    if partial is not None:
        raise ReportedPartialFailure(partial, report)
    return report


class ReportedPartialFailure(PartialFailure):
    """A PartialFailure that carries the rollback report (the CLI prints it before exiting 3)."""

    def __init__(self, e: PartialFailure, report: dict):
        super().__init__(e.message, fix=e.fix)
        self.report = report


def print_report(report: dict, echo: Echo) -> None:
    any_missed = False
    for iid, mi in report["missed_intervals"].items():
        if not mi["missed"]:
            continue
        any_missed = True
        echo(f"{iid}: {len(mi['missed']) + mi['more']} legacy fire time(s) without a successful live run since the "
             f"legacy side was paused at {mi['paused_at'][:19]} (backfill: cutover legacy run {iid} --trigger backfill):")
        for x in mi["missed"][:50]:
            echo(f"  missed {x['fire_time']}" + (f" (until {x['until']})" if x["until"] else ""))
        if len(mi["missed"]) > 50 or mi["more"]:
            echo(f"  ... and {len(mi['missed']) - 50 + mi['more']} more (see --json)")
    if report["missed_intervals"] and not any_missed:
        echo("no missed interval: every legacy fire time since the cutover has a successful live run")


