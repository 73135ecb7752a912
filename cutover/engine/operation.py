"""The machinery every mutating engine operation shares: two evaluators over the same steps, and
the one-wave operation (shadow start/stop, rollback) built on them.

- :class:`DryRun` shows exactly the steps that would run and touches nothing
  (no DB row, no lock, no Prefect write, no file);
- :class:`Apply` runs them journaled step by step, so a crash at any point is resumed by
  running the same command again; the caller holds the operation lock around it
  (:func:`operation` does; `cutover execute` holds it around :func:`cutover.engine.execute.execute_wave`).

An operation is refused while a pause snapshot is in force over what it moves
(:func:`refuse_under_pause`, checked under the lock): it would change schedules behind the
snapshot, and the resume would undo it.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Protocol

from cutover.core.errors import GateFailed, PartialFailure
from cutover.core.redact import redact_text
from cutover.core.records.items import is_job
from cutover.core.state import audit, lock, states
from cutover.core.state.journal import DONE, FAILED, RUNNING, Journal, save_operation_plan, unfinished_operation_plans
from cutover.core.state.snapshots import active
from cutover.engine.baseline import seed_baseline
from cutover.engine.inflight import cancel_in_flight
from cutover.engine.plan import CONTINUE, Move, Plan, Step, Wave
from cutover.core.shadowfork import ensure_fork


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


def refuse_under_pause(ws, ids: list[str], what: str) -> None:
    """GateFailed when a pause snapshot in force covers any of ``ids`` (call it under the operation lock)."""
    snap = active(ws.state_engine)
    if snap is None:
        return
    covered = sorted(set(snap.ids) & set(ids))
    if covered:
        raise GateFailed(f"pause snapshot {snap.id} ({snap.reason or 'no reason'}) is in force for "
                         f"{', '.join(covered[:5])}{' ...' if len(covered) > 5 else ''}: {what} now would change "
                         "schedules behind the pause, and the resume would undo it",
                         fix=f"resume first (cutover resume --snapshot {snap.id}), then run it again")


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
            die_after(seq)
        return res

    # -- the actions ------------------------------------------------------------------------
    def apply(self, ws, step: Step) -> str | None:
        kw = step.kw
        iid = step.ingestion_id
        if step.action == "fork_shadow":
            ing = ws.items.get(iid)
            if is_job(ing) and not ing.table:  # only an sdk job appends to a table of its own
                return f"nothing to fork ({ing.kind} job, shadow: {ing.shadow})"
            fork = ensure_fork(ws, ing)
            seeded = seed_baseline(ws, ing, fork)
            return f"fork snapshot {fork}, {sum(seeded.values())} baseline file(s)"
        if step.action == "deploy_prefect":
            ing = ws.items.get(iid)
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
            return cancel_in_flight(ws, self.sides, iid, timeout=float(kw.get("timeout", 120)), poll=self.poll)
        raise ValueError(f"unknown step {step.action}")

    def _wait_idle(self, ws, iid: str, timeout: float) -> str:
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


def die_after(seq: int) -> None:
    """Test hook: CUTOVER_TEST_DIE_AFTER_STEP=N SIGKILLs the process right after step N is journaled DONE."""
    spec = os.environ.get("CUTOVER_TEST_DIE_AFTER_STEP")
    if spec is not None and spec.strip() == str(seq):
        os.kill(os.getpid(), signal.SIGKILL)


def unfinished(ws, name: str, ids: set[str]) -> list[Plan]:
    """The saved plans of unfinished operations of kind ``name`` that move any of ``ids``."""
    out = []
    for _, body in unfinished_operation_plans(ws.state_engine, name):
        prior = Plan.from_dict(body)
        if ids & {m.ingestion_id for m in prior.waves[0].moves}:
            out.append(prior)
    return out


def operation(ws, name: str, moves: list[Move], sides, echo: Callable[[str], None], *, dry_run: bool,
              reason: str = "", guard: Callable[[], None] | None = None) -> WaveResult:
    """A one-wave mutating operation (shadow start/stop, rollback ...) with the same guarantees
    as `execute`: shown first, journaled, locked, resumable by running it again. ``guard`` runs
    under the lock before any step (default: :func:`refuse_under_pause`).

    The operation id is derived from what it moves and from when each ingestion's state
    last changed, so a re-run after a crash resumes the same journal, while the same
    command after a completed operation starts afresh."""
    key = [(m.ingestion_id, m.from_state, m.to_state, states.state_stamp(ws.state_engine, m.ingestion_id),
            [s.as_dict() for s in m.steps]) for m in moves]
    op_id = f"{name}-{hashlib.sha1(json.dumps(key, default=str).encode()).hexdigest()[:12]}"
    plan = Plan(op_id, "", audit.who(), "", (Wave(1, name, tuple(moves)),), {})
    wave = plan.waves[0]
    if dry_run:
        DryRun(echo).run(ws, plan, wave)
        echo("Dry run: nothing was changed.")
        return WaveResult(wave)
    with lock.locked(ws.state_engine, f"{name} {', '.join(m.ingestion_id for m in moves)}"):
        # checked under the lock: a pause waits for the lock before it snapshots, so the two never interleave
        if guard is not None:
            guard()
        else:
            refuse_under_pause(ws, [m.ingestion_id for m in moves], f"`{name}`")
        # An unfinished operation of this kind over any of these ingestions (a crash after some of
        # its moves: the moves computed now are fewer, so its id differs) is completed first.
        asked = {m.ingestion_id for m in moves}
        resumed: list[str] = []
        for prior in unfinished(ws, name, asked):
            pw = prior.waves[0]
            echo(f"resuming the unfinished {name} {prior.id} first ({', '.join(m.ingestion_id for m in pw.moves)})")
            res = Apply(sides, echo).run(ws, prior, pw)
            if res.failed or res.deferred:
                moves = list(pw.moves)
                break
            asked -= {m.ingestion_id for m in pw.moves}
            resumed += [m.ingestion_id for m in pw.moves]
        else:
            moves = [m for m in moves if m.ingestion_id in asked]
            res = WaveResult(wave)
            if moves:
                if len(moves) != len(wave.moves):
                    plan = Plan(op_id, "", audit.who(), "", (Wave(1, name, tuple(moves)),), {})
                    wave = plan.waves[0]
                save_operation_plan(ws.state_engine, op_id, name, plan.as_dict(), by=audit.who())
                res = Apply(sides, echo).run(ws, plan, wave)
    audit.record(ws.state_engine, name, target=", ".join(resumed + [m.ingestion_id for m in moves]), reason=reason or None,
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

