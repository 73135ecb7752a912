"""`cutover resume --snapshot ID`: restore exactly what a pause snapshot recorded, then lift the fences.

Journaled (operation ``<id>-resume``), under the operation lock (refused, naming the holder,
while another operation runs). Each side is an incident control of
``cutover.registry.incident_controls`` (``cutover.protocol.IncidentWriter``):

1. every side's jobs back to its snapshot part (``restore``, each side in its own thread): what
   was paused before stays paused;
2. the late-run policy, on the sides that queue runs behind their fence (``LateRunHandler``:
   Prefect's work pool): runs that became due behind the fence (after the pause began, minus
   ``LATE_GRACE_S``): ``skip`` cancels them all, ``run-once`` keeps the newest per deployment;
   done before the pool is un-paused, so the cancelled ones never start;
3. the fences lifted in the order they went up (legacy row, RQ workers, the work pool last),
   each once its side is restored (and its late runs handled); status RESUMED.

A second resume is a no-op; a crash midway is resumed by running it again. With a side down,
the others are restored and their fences lifted, that side's fence stays up, exit 3.
``--dry-run`` is :func:`describe`: the same steps, read-only, described.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import timedelta

from cutover.core.errors import InputError
from cutover.core.state import audit, lock
from cutover.core.state.journal import DONE, FAILED, RUNNING, Journal
from cutover.core.state.snapshots import RESUMED, Snapshot, iso, load, save, utcnow
from cutover.engine.incident import Echo, reason as why
from cutover.protocol import LateRunHandler
from cutover.registry import incident_controls

LATE_POLICIES = ("skip", "run-once")
LATE_GRACE_S = 30.0  # a run due this shortly before the pause began was still waiting for a worker poll


@dataclass
class ResumeResult:
    snapshot_id: str
    dry_run: bool = False
    already: bool = False
    changes: dict = field(default_factory=dict)
    late_runs: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"snapshot_id": self.snapshot_id, "dry_run": self.dry_run, "already_resumed": self.already,
                "changes": self.changes, "late_runs": self.late_runs, "problems": self.problems, "notes": self.notes}


def involved(snap: Snapshot, controls: list) -> list:
    """The sides this snapshot recorded something of (a part or a fence), in fence order."""
    return [c for c in controls if c.name in snap.sides or c.name in snap.fences]


def late_handlers(snap: Snapshot, controls: list) -> list:
    return [c for c in controls if isinstance(c, LateRunHandler) and c.name in (snap.progress.get("fenced") or {})]


def late_message(snap: Snapshot, policy: str) -> str:
    return f"late behind pause snapshot {snap.id}: skipped on resume (--late-runs {policy})"


def resume(ws, snapshot_id: str, *, late: str = "skip", dry_run: bool = False, echo: Echo = print,
           progress_stream=None) -> ResumeResult:
    if late not in LATE_POLICIES:
        raise InputError(f"--late-runs {late} is not one of {', '.join(LATE_POLICIES)}", fix="use skip or run-once")
    snap = load(ws.state_engine, snapshot_id)
    if snap.status == RESUMED:
        echo(f"snapshot {snap.id} was already resumed at {(snap.progress.get('resumed_at') or '')[:19]}: nothing to do")
        return ResumeResult(snap.id, dry_run=dry_run, already=True)
    controls = involved(snap, incident_controls(ws, start_prefect=not dry_run))
    try:
        if dry_run:
            return describe(snap, controls, late, echo)
        return apply(ws, snap, controls, late, progress_stream)
    finally:
        for c in controls:
            c.close()


# -- the dry run: the same steps, read only ---------------------------------------------------------

def describe(snap: Snapshot, controls: list, late: str, echo: Echo) -> ResumeResult:
    res = ResumeResult(snap.id, dry_run=True)
    echo(f"would resume pause snapshot {snap.id} ({snap.reason or 'no reason'}):")
    since = snap.created_at - timedelta(seconds=LATE_GRACE_S)
    for c in controls:
        try:
            if c.name in snap.sides:
                lines, notes = c.describe_restore(snap.sides[c.name], snap.fences.get(c.name))
                res.notes += notes
                for line in lines:
                    echo(f"  {line}")
            if c in late_handlers(snap, [c]):
                lr = c.late_runs(snap.fences[c.name], since=since, policy=late, apply=False, message="")
                echo(f"  late runs ({late}): {len(lr['cancelled'])} to cancel, {len(lr['kept'])} to keep")
        except Exception as e:  # noqa: BLE001 - a side not read is a finding of the dry run
            res.problems.append(f"{c.label}: {why(e)}")
            echo(f"  {c.label}: not reachable")
    fenced = [c.fence_label for c in controls if c.name in (snap.progress.get("fenced") or {})]
    echo("  then: fences lifted: " + ("; ".join(fenced) if fenced else "none"))
    for n in res.notes:
        echo(f"  note: {n}")
    for p in res.problems:
        echo(f"  problem: {p}")
    echo("Dry run: nothing was changed.")
    return res


# -- the resume ---------------------------------------------------------------------------------

def apply(ws, snap: Snapshot, controls: list, late: str, progress_stream) -> ResumeResult:
    engine = ws.state_engine
    res = ResumeResult(snap.id)
    fenced_at = snap.progress.get("fenced") or {}
    latec = late_handlers(snap, controls)
    unfence = [c for c in controls if c.name in snap.fences]
    names = ([f"*: resume: {c.label} restored as snapshotted" for c in controls]
             + [f"*: resume: late runs behind the {c.label} fence ({late})" for c in latec]
             + [f"*: resume: fence lifted: {c.fence_label}" for c in unfence]
             + ["*: resume: snapshot marked RESUMED"])
    seq = {n: i for i, n in enumerate(names)}
    journal = Journal(engine, f"{snap.id}-resume", "resume")
    journal.register(names)
    status = {s: st for s, (_, st, _) in journal.statuses().items()}

    def done(name: str) -> bool:
        return status.get(seq[name]) == DONE

    def mark(name: str, ok: bool, detail: str | None = None) -> None:
        journal.mark(seq[name], DONE if ok else FAILED, detail)
        status[seq[name]] = DONE if ok else FAILED

    def restored(c) -> str:
        return f"*: resume: {c.label} restored as snapshotted"

    with lock.locked(engine, f"resume {snap.id}"):
        # 1. every side back to its snapshot part, in parallel
        outs: dict = {}

        def one(c) -> None:
            try:
                outs[c.name] = c.restore(snap.sides[c.name], progress_stream=progress_stream)
            except BaseException as e:  # noqa: BLE001 - collected; resume is re-runnable
                outs[c.name] = e

        threads = []
        for c in controls:
            if done(restored(c)):
                continue
            if c.name not in snap.sides:
                mark(restored(c), True, "nothing of this side in the snapshot")
                continue
            journal.mark(seq[restored(c)], RUNNING)
            threads.append(threading.Thread(target=one, args=(c,), name=f"resume-{c.name}", daemon=True))
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        for c in controls:
            out = outs.get(c.name)
            if out is None:
                continue
            if isinstance(out, BaseException):
                res.problems.append(f"{c.label}: {why(out)}")
                mark(restored(c), False, why(out))
                continue
            res.notes += out.notes
            res.changes.update(out.changes)
            if out.errors:
                res.problems.extend(out.errors[:20])
                mark(restored(c), False, f"{len(out.errors)} error(s): {out.errors[0]}")
            else:
                mark(restored(c), True, ", ".join(f"{k}: {v}" for k, v in out.changes.items()))
        # 2. late runs, before their fence is lifted
        since = snap.created_at - timedelta(seconds=LATE_GRACE_S)
        for c in latec:
            name = f"*: resume: late runs behind the {c.label} fence ({late})"
            if done(name) or not done(restored(c)):
                continue
            journal.mark(seq[name], RUNNING)
            try:
                lr = c.late_runs(snap.fences[c.name], since=since, policy=late, apply=True,
                                 message=late_message(snap, late))
                res.late_runs = {"policy": late, **lr}
                mark(name, True, f"{len(lr['cancelled'])} cancelled, {len(lr['kept'])} kept")
            except Exception as e:  # noqa: BLE001
                res.problems.append(f"late runs: {why(e)}")
                mark(name, False, why(e))
        # 3. the fences, in the order they went up (the work pool last)
        for c in unfence:
            name = f"*: resume: fence lifted: {c.fence_label}"
            late_done = all(done(f"*: resume: late runs behind the {x.label} fence ({late})") for x in latec if x is c)
            if done(name) or not done(restored(c)) or not late_done:
                continue
            journal.mark(seq[name], RUNNING)
            try:
                res.changes.update(c.unfence(snap.id, snap.fences[c.name]))
                mark(name, True)
            except Exception as e:  # noqa: BLE001
                if c.name not in fenced_at:  # the fence never went up: nothing to lift
                    mark(name, True, f"never fenced ({why(e)})")
                    continue
                res.problems.append(f"{c.fence_label}: {why(e)}")
                mark(name, False, why(e))
        if all(done(n) for n in names[:-1]):
            snap.status = RESUMED
            snap.progress["resumed_at"] = iso(utcnow())
            snap.body["resume"] = {"late_runs": late, **res.as_dict()}
            save(engine, snap)
            mark(names[-1], True)
    audit.record(engine, "resume", target=snap.id, reason=snap.reason,
                 detail={"snapshot": snap.id, "late_runs": late, "changes": res.changes,
                         "late": {k: len(v) if isinstance(v, list) else v for k, v in res.late_runs.items()},
                         "problems": res.problems[:20]})
    return res
