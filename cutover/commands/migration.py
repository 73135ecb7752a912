"""inventory, plan, execute, status, log, unlock, shadow start|stop|run: moving ingestions over."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable
from uuid import UUID

from checks.model import PASS
from checks.parity import run_parity
from cutover.commands.result import Result
from cutover.core.config import parse_duration
from cutover.core.errors import EXIT_FAIL, EXIT_PARTIAL, InputError
from cutover.core.jobenv import SHADOW_CHOICES, SHADOW_FIX
from cutover.core.records.items import is_job
from cutover.core.schedule.gate import ScheduleCheck, check_accepted_ids, check_deploy, check_schedules, record_acceptances
from cutover.core.output import human_duration
from cutover.core.progress import waiting
from cutover.core.state import audit, lock, states
from cutover.core.validate import check_limit
from cutover.core.workspace import Workspace
from cutover.engine.execute import Apply, DryRun, WaveResult, check_stale, choose_wave, evaluate_gates, execute_wave, \
    operation
from cutover.engine.inventory import build_inventory, public
from cutover.engine.operation import refuse_under_pause
from cutover.engine.plan import Move, Plan, Step, Wave, build_plan, steps_for
from cutover.engine.status import compute_status
from cutover.registry.sides import LiveSides, run_legacy_now

Echo = Callable[[str], None]


# -- inventory | plan ---------------------------------------------------------------------------


@dataclass
class Inventory(Result):
    rows: list[dict]

    def as_dict(self) -> list[dict]:
        return [public(r) for r in self.rows]


def inventory(ws: Workspace, *, verify: bool = True) -> Inventory:
    """Every ingestion: legacy and Prefect schedule, verification, queue, state, parity streak."""
    return Inventory(build_inventory(ws, verify=verify))


def plan(ws: Workspace, *, waves: str, select: str | None, gate: str, handoff_timeout: str,
         out: Path | None = None) -> Plan:
    """Plan the next moves, wave by wave; changes nothing but writing the plan to ``out``."""
    p = build_plan(build_inventory(ws, verify=False), waves=waves, select=select, gate=gate, created_by=audit.who(),
                   handoff_timeout=parse_duration(handoff_timeout, what="--handoff-timeout"))
    refuse_undeclared([ws.items.get(m.ingestion_id) for w in p.waves for m in w.moves
                       if m.to_state == states.SHADOW])
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(p.to_json())
    return p


# -- execute ---------------------------------------------------------------------------------------


@dataclass
class ExecuteCheck(Result):
    """The wave `execute` would apply, and why its gates say no (ingestion -> reasons)."""

    plan: Plan
    wave: Wave
    gate_reasons: dict[str, list[str]]
    schedule_checks: list[ScheduleCheck] = field(default_factory=list)  # the schedules this wave deploys

    @property
    def exit_code(self) -> int:
        return EXIT_FAIL if self.gate_reasons else 0

    def as_dict(self) -> dict:
        return {"plan": self.plan.id, "wave": self.wave.number, "name": self.wave.name,
                "ingestions": len(self.wave.moves), "gate_reasons": self.gate_reasons,
                "schedules": {c.ingestion_id: {"verdict": c.result.verdict if c.result else "manual",
                                               "accepted": c.accepted} for c in self.schedule_checks}}


DEPLOYING = (states.SHADOW, states.CUTOVER)  # moves that put the translated schedule on a Prefect deployment


def execute_check(ws: Workspace, plan_file: Path, wave_no: int | None = None, *,
                  accept_schedule_difference=()) -> ExecuteCheck:
    """Load a saved plan, choose its wave (default: the next one not done), refuse a stale plan,
    and evaluate the wave's gates -- among them the deploy gate: a move that deploys a schedule
    not proven equivalent is held unless its ingestion is in ``accept_schedule_difference``.
    Changes nothing."""
    p = Plan.load(plan_file)
    wave = choose_wave(ws, p, wave_no)
    check_stale(ws, p, wave)
    refuse_undeclared([ws.items.get(m.ingestion_id) for m in wave.moves if m.to_state == states.SHADOW])
    check_accepted_ids(accept_schedule_difference, [m.ingestion_id for w in p.waves for m in w.moves])
    deploying = [ws.items.get(m.ingestion_id) for m in wave.moves if m.to_state in DEPLOYING]
    checks = check_schedules(deploying, accept_schedule_difference)
    by_id = {c.ingestion_id: c for c in checks}

    def verifier(ing) -> tuple[bool, str]:
        c = by_id.get(ing.id)
        if c is None:
            c = check_schedules([ing])[0]
        return not c.refused, c.reason()

    reasons = evaluate_gates(ws, p, wave, verifier)
    for c in checks:
        if c.refused and c.ingestion_id not in reasons:  # the plan's gate did not ask for schedule_verified
            reasons[c.ingestion_id] = [f"{c.reason()}: deploy it anyway with --accept-schedule-difference "
                                       f"{c.ingestion_id}"]
    return ExecuteCheck(p, wave, reasons, checks)


def execute(ws: Workspace, check: ExecuteCheck, echo: Echo, *, dry_run: bool = False, reason: str = "") -> WaveResult:
    """Apply the wave of ``check``: journaled, resumable, behind the operator lock (a dry run
    shows every step through ``echo`` and changes nothing)."""
    p, wave = check.plan, check.wave
    if dry_run:
        return execute_wave(ws, p, wave, DryRun(echo))
    with lock.locked(ws.state_engine, f"execute {p.id} wave {wave.number}"):
        record_acceptances(ws.state_engine, check.schedule_checks, command=f"execute {p.id} wave {wave.number}",
                           reason=reason)
        return execute_wave(ws, p, wave, Apply(LiveSides(ws), echo), reason=reason)


# -- status | log | unlock ---------------------------------------------------------------------------


@dataclass
class Status(Result):
    """compute_status: per ingestion state, live owner, both sides' schedules, the invariant."""

    data: dict

    @property
    def exit_code(self) -> int:
        if any(r["invariant_ok"] is False for r in self.data["ingestions"]):
            return EXIT_FAIL
        return EXIT_PARTIAL if self.data["errors"] else 0

    def as_dict(self) -> dict:
        return self.data


def status(ws: Workspace) -> Status:
    """Per ingestion: state, live owner, schedule state on both sides, and the invariant."""
    ws.settings.prefect.check()  # a misconfigured Prefect connection is bad input (exit 2), not a side down
    return Status(compute_status(ws, LiveSides(ws, start_prefect=False)))  # read-only: starts nothing


def log(ws: Workspace, *, limit: int = 50) -> list[dict]:
    check_limit(limit)
    """The audit trail, newest first: every mutating action with who, when, why."""
    return audit.entries(ws.state_engine, limit)


@dataclass
class Unlocked(Result):
    lock_id: str
    holder: dict
    dry_run: bool


def unlock(ws: Workspace, lock_id: str, *, dry_run: bool = False) -> Unlocked:
    """Break a stale operator lock (recorded in the audit log)."""
    h = lock.holder(ws.state_engine)
    if h is None or h["id"] != lock_id:
        raise InputError(f"no lock {lock_id!r}" + (f" (the current lock is {h['id']})" if h else " (nothing is locked)"),
                         fix="see `cutover status`")
    if not dry_run:
        lock.unlock(ws.state_engine, lock_id)
        audit.record(ws.state_engine, "unlock", target=lock_id, detail=h)
    return Unlocked(lock_id, h, dry_run)


# -- shadow start | stop | run ---------------------------------------------------------------------


@dataclass
class ShadowMoves(Result):
    moves: list[Move]
    already: list[str]  # ingestions already where the operation would take them

    def as_dict(self) -> dict:
        return {"moves": [m.as_dict() for m in self.moves], "already": self.already}


def shadow_moves(ws: Workspace, ids, all_: bool, *, to: str) -> ShadowMoves:
    """The moves that start (to SHADOW) or stop (to LEGACY) the shadows of these ingestions."""
    items = ws.items.resolve(ids, all_=all_)
    cur = states.get_states(ws.state_engine)
    if to == states.SHADOW:
        refuse_undeclared([i for i in items if cur.get(i.id, states.LEGACY) != states.SHADOW])
    moves, already = [], []
    for ing in items:
        st = cur.get(ing.id, states.LEGACY)
        if to == states.SHADOW:
            if st == states.SHADOW:
                already.append(ing.id)
                continue
            if st not in (states.LEGACY, states.ROLLED_BACK):
                raise InputError(f"{ing.id} is {st}: only LEGACY or ROLLED_BACK ingestions start a shadow",
                                 fix="see `cutover status`")
            moves.append(Move(ing.id, st, states.SHADOW, steps_for(ing.id, st, states.SHADOW, handoff_timeout=0)))
        else:
            if st != states.SHADOW:
                already.append(ing.id)
                continue
            moves.append(Move(ing.id, st, states.LEGACY, (
                Step.from_dict({"action": "pause_prefect", "ingestion_id": ing.id, "args": {"mode": "shadow"}}),
                Step.from_dict({"action": "set_state", "ingestion_id": ing.id,
                                "args": {"from_state": states.SHADOW, "to_state": states.LEGACY}}),
            )))
    return ShadowMoves(moves, already)


@dataclass
class Declared(Result):
    changes: list[tuple[str, str | None, str, str | None]]  # (job, shadow before, shadow now, table)
    dry_run: bool

    def as_dict(self) -> dict:
        return {"dry_run": self.dry_run, "jobs": [{"id": j, "before": b, "shadow": a, "table": t}
                                                   for j, b, a, t in self.changes]}


def shadow_declare(ws: Workspace, ids, *, as_: str, table: str | None = None, dry_run: bool = False) -> Declared:
    """Declare how generic jobs can be shadowed (observe | env | sdk; ``table``: the Iceberg table an
    sdk job appends to). Only while a job is LEGACY or ROLLED_BACK (its shadow deployment follows the
    declaration); all or nothing; audited."""
    from dataclasses import replace as _replace

    if as_ not in SHADOW_CHOICES:
        raise InputError(f"--as {as_!r} is not one of {', '.join(SHADOW_CHOICES)}", fix=SHADOW_FIX)
    if table and as_ != "sdk":
        raise InputError("--table applies to sdk jobs only (the table they append to through cutover.sdk)",
                         fix="leave --table out, or declare --as sdk")
    items = ws.items.resolve(ids)
    not_jobs = [i.id for i in items if not is_job(i)]
    if not_jobs:
        raise InputError(f"{', '.join(not_jobs)} {'is an ingestion' if len(not_jobs) == 1 else 'are ingestions'}: "
                         "an ingestion is shadowed by cutover itself", fix="declare generic jobs only")
    cur = states.get_states(ws.state_engine)
    busy = [i.id for i in items if cur.get(i.id, states.LEGACY) not in (states.LEGACY, states.ROLLED_BACK)]
    if busy:
        raise InputError(f"{', '.join(busy)} {'is' if len(busy) == 1 else 'are'} past LEGACY: the declaration "
                         "decides how the shadow runs", fix=f"stop the shadow first (cutover shadow stop {' '.join(busy)})")
    new = [_replace(j, shadow=as_, table=(table or j.table) if as_ == "sdk" else None) for j in items]
    changes = [(o.id, o.shadow, n.shadow, n.table) for o, n in zip(items, new)]
    if not dry_run:
        with lock.locked(ws.state_engine, f"shadow declare {' '.join(i.id for i in items)}"):
            ws.jobs.upsert(new, replace_existing=True)
            audit.record(ws.state_engine, "shadow-declare", target=",".join(i.id for i in items),
                         detail={"shadow": as_, "table": table})
    return Declared(changes, dry_run)


def refuse_undeclared(items) -> None:
    """A job that does not say how it can be shadowed never enters SHADOW (it would run twice
    against production): InputError (exit 2) naming them and the three choices. Nothing changes."""
    bad = [i.id for i in items if is_job(i) and i.shadow not in SHADOW_CHOICES]
    if bad:
        raise InputError(f"job(s) {', '.join(bad)} declare no shadow mode, so they cannot enter SHADOW "
                         f"(they would run twice against production)",
                         fix=f"run `cutover shadow declare {' '.join(bad)} --as observe|env|sdk`: {SHADOW_FIX}")


def _shadow_operation(ws, name: str, ids, all_, to: str, echo: Echo, *, before: Callable[[ShadowMoves], None] | None,
                      dry_run: bool, reason: str, accepted=None) -> ShadowMoves:
    sm = shadow_moves(ws, ids, all_, to=to)
    if before is not None:
        before(sm)
    guard = None
    if accepted is not None:  # the moves deploy schedules: only proven or accepted ones
        check_accepted_ids(accepted, [m.ingestion_id for m in sm.moves] + list(sm.already))
        checks = check_deploy([ws.items.get(m.ingestion_id) for m in sm.moves], accepted,
                              command=f"`cutover {name.replace('-', ' ')}`")

        def guard() -> None:  # under the lock, before any step
            refuse_under_pause(ws, [m.ingestion_id for m in sm.moves], f"`{name}`")
            record_acceptances(ws.state_engine, checks, command=name.replace("-", " "), reason=reason)
    if sm.moves:
        # a shadow start deploys flows that must run (embedded: server and worker); a stop only pauses
        operation(ws, name, sm.moves, LiveSides(ws, prefect_worker=to == states.SHADOW), echo, dry_run=dry_run,
                  reason=reason, guard=guard)
    return sm


def shadow_start(ws: Workspace, ids=(), *, all_: bool = False, echo: Echo, dry_run: bool = False, reason: str = "",
                 before: Callable[[ShadowMoves], None] | None = None, accept_schedule_difference=()) -> ShadowMoves:
    """Fork cutover-shadow, seed the shadow ledger, deploy the Prefect shadow deployment on the
    legacy schedule (LEGACY/ROLLED_BACK -> SHADOW). ``before`` sees the moves before they run.
    A schedule not proven equivalent is refused (GateFailed) unless its ingestion is in
    ``accept_schedule_difference`` (recorded in the audit log)."""
    return _shadow_operation(ws, "shadow-start", ids, all_, states.SHADOW, echo, before=before, dry_run=dry_run,
                             reason=reason, accepted=tuple(accept_schedule_difference))


def shadow_stop(ws: Workspace, ids=(), *, all_: bool = False, echo: Echo, dry_run: bool = False, reason: str = "",
                before: Callable[[ShadowMoves], None] | None = None) -> ShadowMoves:
    """Pause the shadow deployments and go back to LEGACY (branch and shadow ledger are kept)."""
    return _shadow_operation(ws, "shadow-stop", ids, all_, states.LEGACY, echo, before=before, dry_run=dry_run,
                             reason=reason)


PROGRESS_EVERY = 15.0  # seconds between progress lines while a flow run is awaited


def wait_flow_run(adapter, flow_run_id: str, timeout: float, poll: float = 1.0, *, info: Echo | None = None,
                  label: str = "") -> str:
    """Wait for a flow run to reach a final state; returns the state type name (or TIMEOUT (...)).
    ``info`` hears its state and the time waited every few seconds."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    next_note = t0 + PROGRESS_EVERY
    # on a terminal a spinner with the elapsed time and the state; into a pipe the info lines only
    with waiting(f"{label}flow run {flow_run_id}", plain=False) as w:
        while True:
            with adapter.client() as c:
                fr = c.read_flow_run(UUID(flow_run_id))
            st = fr.state
            if st is not None and st.is_final():
                return st.type.value
            now = time.monotonic()
            if now > deadline:
                return f"TIMEOUT ({st.name if st else 'no state'} after {human_duration(timeout)})"
            w.note(f"{st.name if st else 'no state'}; timeout {human_duration(timeout)}")
            if info is not None and now >= next_note:
                if not w.live:
                    info(f"{label}flow run {flow_run_id} {st.name if st else 'no state'}, {human_duration(now - t0)} "
                         f"(timeout {human_duration(timeout)})")
                next_note += PROGRESS_EVERY
            time.sleep(poll)


@dataclass
class ShadowRun(Result):
    report: object  # checks.model.ParityReport
    incomplete: list[str] = field(default_factory=list)  # "<id>: <state>" of flow runs that did not end
    errors: list[str] = field(default_factory=list)  # legacy runs that failed to run

    @property
    def exit_code(self) -> int:
        if self.incomplete or self.errors:
            return EXIT_PARTIAL
        return 0 if self.report.verdict == PASS else EXIT_FAIL

    def as_dict(self) -> dict:
        return {**self.report.as_dict(), "incomplete": self.incomplete, "errors": self.errors}


def window_start(ws: Workspace, items, now: datetime, *, slack: timedelta = timedelta(seconds=1)) -> datetime:
    """Where a `shadow run --once` parity window starts: a second before ``now`` (a worker's clock
    may run a little behind this host's), but never before the end of a run of these items that
    has ended already -- the files of a shadow run that ended half a second ago are not this
    window's (they were counted on one side only)."""
    start = now - slack
    for it in items:
        for r in ws.runs.list(ingestion_id=it.id, limit=10):
            if r.ended_at is not None:
                ended = r.ended_at if r.ended_at.tzinfo else r.ended_at.replace(tzinfo=timezone.utc)
                if ended <= now:
                    start = max(start, ended + timedelta(microseconds=1))
    return start


def shadow_run_once(ws: Workspace, ids=(), *, all_: bool = False, timeout: str = "15m", store: bool = True,
                    info: Echo) -> ShadowRun:
    """Run legacy live and Prefect shadow now against the same files, wait for both, and compare
    them (parity). ``info`` hears the progress of each run."""
    items = ws.items.resolve(ids, all_=all_)
    cur = states.get_states(ws.state_engine)
    not_shadow = [i.id for i in items if cur.get(i.id, states.LEGACY) != states.SHADOW]
    if not_shadow:
        raise InputError(f"not in SHADOW: {', '.join(not_shadow)}", fix=f"start it first: cutover shadow start {' '.join(not_shadow)}")
    wait_s = parse_duration(timeout, what="--timeout")
    started = window_start(ws, items, datetime.now(timezone.utc))
    sides = LiveSides(ws)
    prefect = sides.prefect("shadow")
    # a flow run with no worker polling its pool waits forever: say so now, before anything runs
    pool = prefect.require_worker()
    info(f"work pool {pool['pool']}: {pool['online']} live worker(s)")
    # queued first: the worker starts while legacy runs. An observe-only job has no shadow run.
    flow_runs = {i.id: prefect.trigger(i.id) for i in items if not (is_job(i) and i.shadow == "observe")}
    for iid, fr in flow_runs.items():
        info(f"{iid}: Prefect shadow flow run {fr} queued (waited for up to {human_duration(wait_s)})")
    legacy_results, errors = {}, []
    # each ingestion as its legacy orchestrator runs it: the batch orchestrator, or the crontab
    # line's command (the wrapper) for a crontab ingestion (cutover.registry); meanwhile the
    # Prefect worker runs the shadow flow runs
    legacy = sides.legacy()
    for ing in items:
        try:
            run_id = run_legacy_now(legacy, ing.id, trigger="manual")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"{ing.id} legacy: {e}")
            continue
        rec = ws.runs.find(run_id)
        if rec is None:
            errors.append(f"{ing.id} legacy: run {run_id[:12]} left no run record")
        else:
            legacy_results[ing.id] = rec
    for iid, rec in legacy_results.items():
        via = f" via {rec.external_id}" if rec.external_id else ""
        info(f"{iid}: legacy run {rec.id[:12]}{via} {rec.status} ({rec.files_processed} file(s), "
             f"{rec.records_ingested} records)")
    incomplete = []
    for iid, fr in flow_runs.items():
        state = wait_flow_run(prefect, fr, wait_s, info=info, label=f"{iid}: Prefect shadow ")
        info(f"{iid}: Prefect shadow flow run {fr} {state}")
        if state not in ("COMPLETED", "FAILED"):
            incomplete.append(f"{iid}: {state}")
    report = run_parity(ws, items, since=started, store=store)
    return ShadowRun(report, incomplete, errors)
