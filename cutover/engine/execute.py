"""`cutover execute`: apply the next wave of a saved plan (stale-plan check, gates) with the
evaluators of :mod:`cutover.engine.operation` (:class:`DryRun`, :class:`Apply`); the command
holds the operation lock around :func:`execute_wave`."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Callable

from cutover.core.errors import GateFailed, InputError, PartialFailure
from cutover.core.schedule.verify import verify
from cutover.core.state import audit, states
from cutover.core.state.journal import DONE, Journal
from cutover.core.state.waivers import WaiverStore
from cutover.engine.operation import Apply, DryRun, Sides, WaveResult, operation, operation_id, refuse_under_pause
from cutover.engine.plan import Move, Plan, Wave, fingerprint, parse_gate
from cutover.registry import parity_streak

def choose_wave(ws, plan: Plan, number: int | None) -> Wave:
    if not plan.waves:
        raise InputError("the plan has no waves", fix="nothing to do; make a new plan with `cutover plan`")
    if number is not None:
        for w in plan.waves:
            if w.number == number:
                return w
        raise InputError(f"the plan has no wave {number}", fix=f"waves are 1..{len(plan.waves)}")
    for w in plan.waves:
        j = Journal(ws.state_engine, operation_id(plan, w), "execute").statuses()
        if not j or any(status != DONE for _, status, _ in j.values()):
            return w
    raise InputError("every wave of this plan is done", fix="see `cutover status`; make a new plan for further moves")


def check_stale(ws, plan: Plan, wave: Wave) -> None:
    """Refuse a plan built from definitions or states that changed since, and a journal that
    records other steps than the wave's (InputError "plan was edited", before anything is written)."""
    journaled = Journal(ws.state_engine, operation_id(plan, wave), "execute").statuses()
    started = bool(journaled)
    steps = [s.describe() for m in wave.moves for s in m.steps]
    other = [seq for seq, (text, _, _) in journaled.items() if seq >= len(steps) or steps[seq] != text]
    if other:
        seq = other[0]
        raise InputError(f"plan was edited: the journal of operation {operation_id(plan, wave)} records other steps "
                         f"(step {seq + 1}: {journaled[seq][0]!r})",
                         fix="do not edit a saved plan: make a new one with `cutover plan --out FILE`")
    cur_states = states.get_states(ws.state_engine)
    problems = []
    for m in wave.moves:
        ing = ws.items.find(m.ingestion_id)
        if ing is None:
            problems.append(f"{m.ingestion_id} was removed")
            continue
        state = cur_states.get(m.ingestion_id, states.LEGACY)
        if started and state in (m.from_state, m.to_state):
            state_for_fp = m.from_state  # resuming this very wave: its own moves are expected
        else:
            state_for_fp = state
        if fingerprint(ing, state_for_fp) != plan.fingerprints.get(m.ingestion_id):
            if state_for_fp != m.from_state:
                problems.append(f"{m.ingestion_id} is {state}, the plan expected {m.from_state}")
            else:
                problems.append(f"the definition of {m.ingestion_id} changed")
    if problems:
        raise GateFailed(f"plan is stale: {'; '.join(problems)}", fix="make a new plan with `cutover plan`")


def evaluate_gates(ws, plan: Plan, wave: Wave, verifier: Callable | None = None) -> dict[str, list[str]]:
    """Reasons per ingestion why its move may not happen (only moves into CUTOVER are gated)."""
    conditions = parse_gate(plan.gate)
    reasons: dict[str, list[str]] = {}
    for m in wave.moves:
        if m.to_state != states.CUTOVER:
            continue
        ing = ws.items.get(m.ingestion_id)
        why = []
        for name, arg in conditions:
            if name == "streak":
                s = parity_streak(ws.state_engine, ing.id)
                if s < arg:
                    why.append(f"clean parity streak {s} < {arg}")
            elif name == "no_open_waiver":
                open_ = WaiverStore(ws.state_engine).open_for(ing.id)
                if open_:
                    why.append(f"{len(open_)} open waiver(s): " + ", ".join(f"{w['check']} ({w['owner']})" for w in open_))
            elif name == "schedule_verified":
                ok, detail = (verifier or verify_schedule)(ing)
                if not ok:
                    why.append(f"schedule not verified: {detail}")
        if why:
            reasons[ing.id] = why
    return reasons


def verify_schedule(ing, horizon_days: int | None = None) -> tuple[bool, str]:
    """(proven equivalent, verdict) over ``horizon_days`` (default: a year and the next two DST changes)."""
    if ing.schedule is None:
        return True, "manual"
    try:
        res = verify(ing.schedule, ing.timezone, start=datetime.now(timezone.utc),
                     horizon=timedelta(days=horizon_days) if horizon_days else None)
    except InputError as e:
        return False, e.one_line()
    return res.ok, res.verdict


# -- evaluators ------------------------------------------------------------------------------
def execute_wave(ws, plan: Plan, wave: Wave, evaluator, *, reason: str = "") -> WaveResult:
    if isinstance(evaluator, Apply):  # under the command's lock
        refuse_under_pause(ws, [m.ingestion_id for m in wave.moves], "`execute`")
    result = evaluator.run(ws, plan, wave)
    if isinstance(evaluator, Apply):
        audit.record(ws.state_engine, "execute", target=operation_id(plan, wave), reason=reason or None,
                     detail={"applied": len(result.applied), "skipped": len(result.skipped), "failed": result.failed,
                             **({"deferred": result.deferred} if result.deferred else {})})
        if result.failed:
            raise PartialFailure(f"wave {wave.number} ({wave.name}) stopped at: {result.failed}",
                                 fix="fix the cause and run the same command again to resume (the journal keeps the progress)")
        if result.deferred:
            raise PartialFailure(f"wave {wave.number} ({wave.name}): {len(result.deferred)} step(s) not done: "
                                 f"{result.deferred[0]}",
                                 fix="fix the cause and run the same command again to complete it")
    return result



__all__ = ["Apply", "DryRun", "Sides", "Move", "WaveResult", "choose_wave", "check_stale", "evaluate_gates",
           "execute_wave", "operation", "operation_id", "verify_schedule"]
