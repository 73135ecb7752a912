"""Executing a plan wave: two evaluators over the same steps.

- :class:`DryRun` shows exactly the steps that would run and touches nothing
  (no DB row, no lock, no Prefect write, no file);
- :class:`Apply` runs them under the operator lock, journaled step by step, so
  a crash at any point is resumed by running the same command again.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from cutover.core.state import audit
from cutover.core.state import states
from cutover.core.errors import GateFailed, InputError, PartialFailure
from cutover.core.state.journal import DONE, FAILED, RUNNING, Journal
from cutover.engine.plan import CONTINUE, Move, Plan, Step, Wave, fingerprint, parse_gate
from cutover.core.redact import redact_text

log = logging.getLogger("cutover.engine.execute")


class Sides(Protocol):
    """Where the steps act: the legacy writer and the Prefect writer per mode."""

    def legacy(self): ...

    def prefect(self, mode: str): ...


@dataclass
class WaveResult:
    wave: Wave
    applied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: str | None = None
    # steps that failed with on_failure="continue", and the set_state steps they held back
    deferred: list[str] = field(default_factory=list)


def operation_id(plan: Plan, wave: Wave) -> str:
    """The journal of a wave. It holds the plan's content digest: a plan that says anything else
    (an edited move, ingestion id, gate ...) never resumes this plan's journal."""
    if not plan.created_at:  # a one-wave operation: its id is the plan id (derived from its moves)
        return plan.id
    return f"{plan.id}-{plan.digest()[:16]}:wave{wave.number}"


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
        ing = ws.ingestions.find(m.ingestion_id)
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
    from checks.parity import streak
    from cutover.core.state.waivers import WaiverStore

    conditions = parse_gate(plan.gate)
    reasons: dict[str, list[str]] = {}
    for m in wave.moves:
        if m.to_state != states.CUTOVER:
            continue
        ing = ws.ingestions.get(m.ingestion_id)
        why = []
        for name, arg in conditions:
            if name == "streak":
                s = streak(ws.state_engine, ing.id)
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


def verify_schedule(ing, horizon_days: int = 90) -> tuple[bool, str]:
    from datetime import datetime, timedelta, timezone

    if ing.schedule is None:
        return True, "manual"
    from cutover.core.schedule.verify import verify

    try:
        res = verify(ing.schedule, ing.timezone, start=datetime.now(timezone.utc), horizon=timedelta(days=horizon_days))
    except InputError as e:
        return False, e.one_line()
    return res.verdict == "equivalent", res.verdict


# -- evaluators ------------------------------------------------------------------------------

class DryRun:
    """Prints what Apply would do; calls nothing that writes."""

    def __init__(self, echo: Callable[[str], None]):
        self.echo = echo

    def run(self, ws, plan: Plan, wave: Wave) -> WaveResult:
        res = WaveResult(wave)
        done = {seq for seq, (_, st, _) in Journal(ws.state_engine, operation_id(plan, wave), "execute").statuses().items()
                if st == DONE}
        seq = 0
        for m in wave.moves:
            self.echo(f"  {m.ingestion_id}: {m.from_state} -> {m.to_state}")
            for step in m.steps:
                mark = "done, skip" if seq in done else "would run"
                inv = step.inverse()
                self.echo(f"    [{mark}] {step.describe()}" + (f"   (inverse: {inv.describe().split(': ', 1)[1]})" if inv else ""))
                (res.skipped if seq in done else res.applied).append(step.describe())
                seq += 1
        return res


class Apply:
    """Runs the steps in order, journaled. A failing step stops the operation, unless it has
    ``on_failure="continue"`` (cutover.engine.plan.CONTINUE): it is then recorded FAILED, reported in
    ``WaveResult.deferred``, and the following steps run, except the ``set_state`` of the same
    ingestion, which stays PENDING (a state changes only when every step before it is done).
    Running the operation again retries the failed steps."""

    def __init__(self, sides: Sides, echo: Callable[[str], None], *, poll: float = 1.0):
        self.sides = sides
        self.echo = echo
        self.poll = poll

    def run(self, ws, plan: Plan, wave: Wave) -> WaveResult:
        steps = [s for m in wave.moves for s in m.steps]
        journal = Journal(ws.state_engine, operation_id(plan, wave), "execute")
        journal.register([s.describe() for s in steps])
        status = journal.statuses()
        res = WaveResult(wave)
        held: set[str] = set()  # ingestions with a step that failed and let the operation go on
        for seq, step in enumerate(steps):
            if status.get(seq, ("", ""))[1] == DONE:
                res.skipped.append(step.describe())
                continue
            if step.action == "set_state" and step.ingestion_id in held:
                self.echo(f"  held    {step.describe()}: an earlier step of {step.ingestion_id} failed")
                res.deferred.append(f"{step.describe()}: held back (an earlier step failed)")
                continue
            journal.mark(seq, RUNNING)
            try:
                detail = self.apply(ws, step)
            except Exception as e:  # noqa: BLE001 - recorded in the journal, reported as a partial failure
                msg = redact_text(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                journal.mark(seq, FAILED, msg)
                self.echo(f"  FAILED  {step.describe()}: {msg}")
                if step.kw.get("on_failure") == CONTINUE:
                    held.add(step.ingestion_id)
                    res.deferred.append(f"{step.describe()}: {msg}")
                    continue
                res.failed = f"{step.describe()}: {msg}"
                return res
            journal.mark(seq, DONE, detail)
            self.echo(f"  done    {step.describe()}" + (f" ({detail})" if detail else ""))
            res.applied.append(step.describe())
            _die_after(seq)
        return res

    # -- the actions ------------------------------------------------------------------------
    def apply(self, ws, step: Step) -> str | None:
        kw = step.kw
        iid = step.ingestion_id
        if step.action == "fork_shadow":
            from cutover.engine.baseline import seed_baseline
            from cutover.core.shadowfork import ensure_fork

            ing = ws.ingestions.get(iid)
            fork = ensure_fork(ws, ing)
            seeded = seed_baseline(ws, ing, fork)
            return f"fork snapshot {fork}, {sum(seeded.values())} baseline file(s)"
        if step.action == "deploy_prefect":
            ing = ws.ingestions.get(iid)
            side = self.sides.prefect(kw["mode"])
            action = side.ensure_job(ing)
            if kw.get("paused"):
                side.pause(iid)
            return action
        if step.action == "remove_prefect":
            return "removed" if self.sides.prefect(kw["mode"]).remove_job(iid) else "absent"
        if step.action == "pause_prefect":
            return "paused" if self.sides.prefect(kw["mode"]).pause(iid) else "already paused"
        if step.action == "resume_prefect":
            return "resumed" if self.sides.prefect(kw["mode"]).resume(iid) else "already active"
        if step.action == "pause_legacy":
            return "paused" if self.sides.legacy().pause(iid) else "already paused"
        if step.action == "resume_legacy":
            return "resumed" if self.sides.legacy().resume(iid) else "already active"
        if step.action == "wait_legacy_idle":
            return self._wait_idle(ws, iid, float(kw.get("timeout", 600)))
        if step.action == "set_state":
            changed = states.set_state(ws.state_engine, iid, kw["to_state"], by=audit.who(), force=True)
            return None if changed else "already"
        if step.action == "cancel_prefect":
            from cutover.engine.rollback import cancel_in_flight

            return cancel_in_flight(ws, self.sides, iid, timeout=float(kw.get("timeout", 120)), poll=self.poll)
        raise ValueError(f"unknown step {step.action}")

    def _wait_idle(self, ws, iid: str, timeout: float) -> str:
        from datetime import datetime, timedelta, timezone

        deadline = time.monotonic() + timeout
        while True:
            fresh_after = datetime.now(timezone.utc) - timedelta(seconds=ws.settings.claim_timeout)
            running = [r for r in ws.runs.list(ingestion_id=iid, orchestrator="legacy", mode="live", limit=20)
                       if r.status == "RUNNING" and r.heartbeat_at and r.heartbeat_at > fresh_after]
            if not running:
                return "no legacy run in flight"
            if time.monotonic() >= deadline:
                raise TimeoutError(f"legacy run {running[0].id[:12]} still running after {timeout:.0f}s")
            time.sleep(self.poll)


def _die_after(seq: int) -> None:
    """Test hook: CUTOVER_TEST_DIE_AFTER_STEP=N SIGKILLs the process right after step N is journaled DONE."""
    spec = os.environ.get("CUTOVER_TEST_DIE_AFTER_STEP")
    if spec is not None and spec.strip() == str(seq):
        os.kill(os.getpid(), signal.SIGKILL)


def execute_wave(ws, plan: Plan, wave: Wave, evaluator, *, reason: str = "") -> WaveResult:
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


__all__ = ["Apply", "DryRun", "Sides", "Move", "choose_wave", "check_stale", "evaluate_gates", "execute_wave"]


def operation(ws, name: str, moves: list[Move], sides, echo: Callable[[str], None], *, dry_run: bool,
              reason: str = "") -> WaveResult:
    """A one-wave mutating operation (shadow start/stop, rollback ...) with the same guarantees
    as `execute`: shown first, journaled, locked, resumable by running it again.

    The operation id is derived from what it moves and from when each ingestion's state
    last changed, so a re-run after a crash resumes the same journal, while the same
    command after a completed operation starts afresh."""
    import hashlib
    import json as _json

    from cutover.core.state import lock

    key = [(m.ingestion_id, m.from_state, m.to_state, states.state_stamp(ws.state_engine, m.ingestion_id),
            [s.as_dict() for s in m.steps]) for m in moves]
    op_id = f"{name}-{hashlib.sha1(_json.dumps(key, default=str).encode()).hexdigest()[:12]}"
    plan = Plan(op_id, "", audit.who(), "", (Wave(1, name, tuple(moves)),), {})
    wave = plan.waves[0]
    if dry_run:
        DryRun(echo).run(ws, plan, wave)
        echo("Dry run: nothing was changed.")
        return WaveResult(wave)
    with lock.locked(ws.state_engine, f"{name} {', '.join(m.ingestion_id for m in moves)}"):
        res = Apply(sides, echo).run(ws, plan, wave)
    audit.record(ws.state_engine, name, target=", ".join(m.ingestion_id for m in moves), reason=reason or None,
                 detail={"operation_id": op_id, "applied": len(res.applied), "skipped": len(res.skipped),
                         "failed": res.failed, **({"deferred": res.deferred} if res.deferred else {})})
    if res.failed:
        raise PartialFailure(f"{name} stopped at: {res.failed}",
                             fix="fix the cause and run the same command again to resume (the journal keeps the progress)")
    if res.deferred:
        raise PartialFailure(f"{name}: {len(res.deferred)} step(s) not done, first: {res.deferred[0]}",
                             fix="fix the cause (see the journal: `cutover status`) and run the same command again "
                                 "to complete it (done steps are skipped)")
    return res
