"""`cutover pause`: stop every run at once, then pause everything durably, each part recorded before it changes.

The sides are the incident controls of ``cutover.registry.incident_controls`` (legacy
APScheduler/batch, RQ, Prefect; ``cutover.protocol.IncidentWriter``); this module knows
nothing of what they hold. In order:

1. **snapshot of the fence targets** (each fencing side's ``read_fence``: the work pool's and
   its queues' flags, whether the RQ workers were suspended — read in threads, in parallel with
   opening the state DB) and the selection, stored as a ``pause_snapshots`` row, ACTIVE;
2. **fences** (O(1), whatever the count; no lock: a fence never conflicts with an operation):
   the legacy fence row (for ``--select`` too), the RQ worker suspension and the Prefect work
   pool (``--all`` / ``--fence-pool``). ``safe_at``: from here no new run starts;
3. **under the operation lock** (waiting for an execute / rollback in progress to finish its
   steps, up to ``CUTOVER_PAUSE_LOCK_WAIT_S``, 300 s: the fences hold meanwhile; the snapshot of
   the schedule states then never interleaves with another operation's steps), each side's
   ``pause_many`` in its own thread: it stores its part of the snapshot (page by page for
   Prefect) before pausing what that part covers; then ``durable_at``.

The fence comes before the full snapshot on purpose: it changes none of the states (3)
records, and reading 1,000 deployments takes longer than the 2 s the fence has.

A pause cut short (a side down, the lock held too long) keeps what it stored; the same command
again completes the same snapshot (exit 3 meanwhile). The same command while the pause is
complete says so, re-asserts it (re-pauses anything un-paused behind its back) and exits 0.

``--dry-run`` is :func:`describe`: the same steps, read-only, described.

Scope: ``--all`` = every ingestion of this workspace; ``--select`` uses the plan's selection
syntax and fences only the selective fences (the legacy row) unless ``--fence-pool`` is given.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

from cutover.core.errors import GateFailed
from cutover.core.state import audit, lock
from cutover.core.state.journal import DONE, FAILED, Journal
from cutover.core.state.snapshots import (
    ACTIVE, VERSION, Snapshot, active, delete_snapshot, insert_snapshot, iso, list_snapshots, load, save, utcnow,
)
from cutover.engine.incident import (
    Echo, acquire_lock, counts, fencers, lock_wait_s, process_started_at, reason as why, select_ingestions,
)
from cutover.engine.resume import LATE_POLICIES, ResumeResult, resume
from cutover.protocol import FenceHeld
from cutover.registry import incident_controls

__all__ = ["ACTIVE", "LATE_POLICIES", "PauseResult", "ResumeResult", "Snapshot", "active", "describe", "list_snapshots",
           "load", "pause", "process_started_at", "resume"]


@dataclass
class PauseResult:
    snapshot_id: str | None
    dry_run: bool = False
    already: bool = False
    counts: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    safe_after_s: float | None = None
    durable_after_s: float | None = None
    snapshot: dict | None = None

    def as_dict(self) -> dict:
        return {"snapshot_id": self.snapshot_id, "dry_run": self.dry_run, "already_paused": self.already,
                "counts": self.counts, "problems": self.problems, "safe_after_s": self.safe_after_s,
                "durable_after_s": self.durable_after_s, "snapshot": self.snapshot}


def steps(controls: list, fenced: list) -> list[str]:
    """The journal steps of a pause."""
    return (["*: pause: snapshot of the fence targets, stored before any change"]
            + [f"*: pause: fence: {c.fence_label}" for c in fenced]
            + [f"*: pause: {c.label}: each stored in the snapshot, then paused" for c in controls]
            + ["*: pause: snapshot marked durable"])


def in_force(cur: Snapshot | None, sel: dict) -> Snapshot | None:
    """The pause in force for this same selection (None: none); GateFailed when another selection's is."""
    if cur is None:
        return None
    if (cur.body["selection"]["all"], cur.body["selection"]["select"]) != (sel["all"], sel["select"]):
        raise GateFailed(f"pause snapshot {cur.id} ({cur.reason or 'no reason'}) is in force for "
                         f"{'every ingestion' if cur.body['selection']['all'] else cur.body['selection']['select']}",
                         fix=f"one pause at a time: resume it first (cutover resume --snapshot {cur.id}), "
                             "or run the same pause again to complete it")
    return cur


# -- the dry run: the same steps, read only ---------------------------------------------------------

def describe(ws, *, all_: bool = False, select: str | None = None, fence_pool: bool | None = None,
             echo: Echo = print) -> PauseResult:
    controls = incident_controls(ws, start_prefect=False)
    try:
        sel = select_ingestions(ws, all_=all_, select=select)
        pool_fence = sel["all"] if fence_pool is None else bool(fence_pool)
        cur = in_force(active(ws.state_engine), sel)
        if cur is not None and cur.progress.get("durable_at"):
            echo(f"the pause is already in force: snapshot {cur.id} since "
                 f"{(cur.progress.get('safe_at') or '')[:19]} ({cur.reason or 'no reason'})")
            return PauseResult(cur.id, dry_run=True, already=True, counts=counts(cur, controls), snapshot=cur.summary())
        if cur is not None:
            echo(f"would complete pause snapshot {cur.id} (started {iso(cur.created_at)[:19]} by {cur.created_by})")
            sel, pool_fence = cur.body["selection"], bool(cur.body.get("pool_fence"))
        snap = Snapshot("(dry run)", utcnow(), None, None, ACTIVE, {"selection": sel})
        problems, lines = [], []
        for c in controls:
            try:
                part = c.read(sel["ids"])
            except Exception as e:  # noqa: BLE001 - a side not read is a finding of the dry run
                problems.append(f"{c.label}: not read: {why(e)}")
                lines.append(f"{c.label}: unknown (not reachable)")
                continue
            snap.sides[c.name] = part
            lines += c.describe_pause(part, fence=c in fencers([c], pool_fence))
        up = fencers(controls, pool_fence)
        c_ = counts(snap, controls)
        echo(f"would snapshot and pause {c_['ingestions']} ingestion(s):")
        for line in lines:
            echo(f"  {line}")
        echo("  fences: " + "; ".join(c.fence_label for c in up)
             + ("" if pool_fence else " (--select without --fence-pool: no global fence)"))
        for p in problems:
            echo(f"  problem: {p}")
        echo("Dry run: nothing was changed.")
        return PauseResult(None, dry_run=True, counts=c_, problems=problems)
    finally:
        for c in controls:
            c.close()


# -- the pause ----------------------------------------------------------------------------------

def pause(ws, *, all_: bool = False, select: str | None = None, reason: str = "", dry_run: bool = False,
          fence_pool: bool | None = None, echo: Echo = print, progress_stream=None,
          started_at: float | None = None) -> PauseResult:
    if dry_run:
        return describe(ws, all_=all_, select=select, fence_pool=fence_pool, echo=echo)
    run = PauseRun(ws, echo, progress_stream, started_at if started_at is not None else process_started_at())
    try:
        return run.run(all_=all_, select=select, reason=reason, fence_pool=fence_pool)
    finally:
        for c in run.controls:
            c.close()


class PauseRun:
    """One `cutover pause`: fences first, then the durable pause under the operation lock."""

    def __init__(self, ws, echo: Echo, progress_stream, t_start: float):
        self.ws, self.echo, self.stream, self.t_start = ws, echo, progress_stream, t_start
        self.engine = None
        self.timeline: dict[str, float | int | None] = {}
        self.problems: list[str] = []
        self.down: set[str] = set()  # sides that did not answer in this run: not tried again
        self.controls: list = []
        self._save_lock = threading.Lock()

    def tick(self, name: str) -> None:  # seconds since the process started, for the bench and the post-mortem
        self.timeline[name] = round(time.time() - self.t_start, 3)

    def save(self, snap: Snapshot) -> None:
        """Store the snapshot as it is now, unless a resume marked it RESUMED meanwhile."""
        with self._save_lock:
            snap.body["counts"] = counts(snap, self.controls)
            save(self.engine, snap, expect=ACTIVE)

    def run(self, *, all_: bool, select: str | None, reason: str, fence_pool: bool | None) -> PauseResult:
        ws, echo = self.ws, self.echo
        self.tick("imports")
        self.controls = controls = incident_controls(ws, start_prefect=True)
        # the fence targets are read now (the Prefect side connects meanwhile), in parallel with opening
        # the state DB and reading the selection: both are on the way to the fences. Nothing changes yet.
        early: dict[str, dict] = {}
        errors: dict[str, str] = {}
        threads = [threading.Thread(target=_read_fence, args=(c, early, errors), name=f"fence-read-{c.name}",
                                    daemon=True) for c in fencers(controls, True)]
        for th in threads:
            th.start()
        self.engine = engine = ws.state_engine
        self.tick("state_db")
        sel = select_ingestions(ws, all_=all_, select=select)
        pool_fence = sel["all"] if fence_pool is None else bool(fence_pool)
        cur = in_force(active(engine), sel)
        already = cur is not None and bool(cur.progress.get("durable_at"))
        if cur is not None:
            sel, pool_fence = cur.body["selection"], bool(cur.body.get("pool_fence"))
            if already:
                echo(f"the pause is already in force: snapshot {cur.id} since "
                     f"{(cur.progress.get('safe_at') or '')[:19]} ({cur.reason or 'no reason'}); re-asserting it")
            else:
                echo(f"completing pause snapshot {cur.id} (started {iso(cur.created_at)[:19]} by {cur.created_by})")
        up = fencers(controls, pool_fence)
        for th in threads:
            th.join()

        # -- 1. snapshot of the fence targets, stored before any fence goes up
        snap = cur or Snapshot(uuid.uuid4().hex[:12], utcnow(), audit.who(), reason or None, ACTIVE,
                               {"version": VERSION, "selection": sel, "pool_fence": pool_fence, "sides": {},
                                "fences": {}, "progress": {"fenced": {}, "durable": {}}, "problems": []})
        prog = snap.progress
        fenced_at, durable_at = prog.setdefault("fenced", {}), prog.setdefault("durable", {})
        new_fence_state = False
        for c in up:
            if c.name in errors:
                self.down.add(c.name)
                self.problems.append(f"{c.label}: fence target not read: {errors[c.name]}")
            elif c.name not in snap.fences:  # a fence state stored earlier is kept: it is the one before the pause
                snap.fences[c.name] = early[c.name]
                new_fence_state = True
        self.tick("snapshot_fences_read")
        snap.body["counts"] = counts(snap, controls)
        if cur is None:
            insert_snapshot(engine, snap)
        elif new_fence_state:
            self.save(snap)
        self.tick("snapshot_stored")

        # -- 2. fences: O(1) each, no lock
        for c in up:
            if c.name not in snap.fences:
                continue
            try:
                c.fence(snap.id, ids=None if sel["all"] else sel["ids"], reason=snap.reason)
            except FenceHeld as e:
                if cur is None:
                    delete_snapshot(engine, snap.id)
                raise GateFailed(f"another pause is in force: {e}", fix="see `cutover pause list`") from None
            except Exception as e:  # noqa: BLE001 - reported; the other fences go up all the same
                self.down.add(c.name)
                self.problems.append(f"{c.fence_label}: {why(e)}")
                continue
            fenced_at.setdefault(c.name, iso(utcnow()))
            self.tick(f"fence_{c.name}")
        self.mark_safe(snap, controls, pool_fence)
        journal = Journal(engine, snap.id, "pause")
        journal.register(steps(controls, up))
        self.save(snap)
        if not already:
            safe_note = (f"fenced {prog['safe_after_s']:.2f}s after the command started"
                         if prog.get("safe_after_s") is not None
                         else "selective fences up; the rest is safe once paused" if not pool_fence
                         else "NOT every fence is up yet")
            echo(f"pause snapshot {snap.id}: {safe_note}")

        # -- 3. durable pause, under the operation lock
        lock_id, held_by = acquire_lock(engine, f"pause {snap.id}", wait_s=0.0 if already else lock_wait_s(ws),
                                        echo=echo)
        self.tick("lock")
        repaused = 0
        if lock_id is None:
            self.problems.append(f"durable pause not done: {held_by}")
        elif load(engine, snap.id).status != ACTIVE:  # resumed while this pause waited for the lock
            lock.release(engine, lock_id)
            lock_id = None
            self.problems.append(f"snapshot {snap.id} was resumed while this pause waited for the operation lock: "
                                 "nothing more was paused")
        try:
            if lock_id is not None:
                repaused = self.pause_sides(snap, controls, pool_fence)
                self.mark_safe(snap, controls, pool_fence)
                if (all(c.name in durable_at for c in controls) and all(c.name in fenced_at for c in up)
                        and not prog.get("durable_at")):
                    prog["durable_at"] = iso(utcnow())
                    prog["durable_after_s"] = round(time.time() - self.t_start, 3)
                    self.tick("durable")
            self.journal(journal, snap, controls, up)
            snap.body["problems"] = self.problems
            self.timeline["http_retries"] = sum(getattr(c, "retried", 0) for c in controls)
            prog.setdefault("timelines", []).append(self.timeline)
            self.save(snap)  # still under the lock: a resume cannot have started in between
        finally:
            if lock_id is not None:
                lock.release(engine, lock_id)

        # -- report
        c_ = snap.body["counts"]
        if not already:
            echo(f"  snapshot: {c_['ingestions']} ingestion(s); "
                 + "; ".join(_part_line(c, snap) for c in controls))
        audit.record(engine, "pause", target=snap.id, reason=reason or snap.reason,
                     detail={"snapshot": snap.id, "scope": "all" if sel["all"] else sel["select"], **c_,
                             "reasserted": already, "repaused": repaused if already else None,
                             "safe_after_s": prog.get("safe_after_s"), "durable_after_s": prog.get("durable_after_s"),
                             "problems": self.problems[:20]})
        if already:
            echo(f"  re-asserted: {repaused} item(s) un-paused behind the snapshot were paused again")
        elif prog.get("durable_at"):
            echo(f"  durable {prog['durable_after_s']:.2f}s after the command started")
        problems = self.problems
        if already:  # the pause is complete; re-asserting it is best effort (`cutover status` shows any drift)
            for p in problems:
                echo(f"  not re-asserted: {p}")
            problems = []
        for p in problems:
            echo(f"  NOT DONE: {p}")
        return PauseResult(snap.id, already=already, counts=c_, problems=problems,
                           safe_after_s=prog.get("safe_after_s"), durable_after_s=prog.get("durable_after_s"),
                           snapshot=snap.summary())

    def mark_safe(self, snap: Snapshot, controls: list, pool_fence: bool) -> None:
        """safe_at: every side is fenced or (a side without its fence up: --select) paused durably."""
        p = snap.progress
        up = {c.name for c in fencers(controls, pool_fence)}
        if p.get("safe_at") is None and all(c.name in p["fenced"] if c.name in up else c.name in p["durable"]
                                            for c in controls):
            p["safe_at"] = iso(utcnow())
            p["safe_after_s"] = round(time.time() - self.t_start, 3)

    def pause_sides(self, snap: Snapshot, controls: list, pool_fence: bool) -> int:
        """Every side's pause_many in its own thread; returns how many items changed. A side without a
        fence up (a team's job store, its crontab ...) makes the pause safe only once it is paused: the
        moment the last of them is, safe_at is stored, without waiting for the other sides' threads."""
        results: dict[str, int | BaseException] = {}
        unfenced = {c.name for c in controls} - {c.name for c in fencers(controls, pool_fence)}

        def one(c) -> None:
            def store(part: dict) -> None:
                snap.sides[c.name] = part
                self.save(snap)

            try:
                results[c.name] = c.pause_many(snap.ids, snap.sides.get(c.name), store=store,
                                               progress_stream=self.stream)
            except BaseException as e:  # noqa: BLE001 - collected, reported; the pause is re-runnable
                results[c.name] = e
            self.tick(f"durable_{c.name}")
            if c.name in unfenced and not isinstance(results[c.name], BaseException) and \
                    c.complete(snap.sides.get(c.name)) and snap.progress.get("safe_at") is None:
                with self._save_lock:
                    snap.progress["durable"].setdefault(c.name, iso(utcnow()))
                    self.mark_safe(snap, controls, pool_fence)
                if snap.progress.get("safe_at") is not None:
                    self.save(snap)

        todo = [c for c in controls if c.name not in self.down]
        for c in controls:
            if c.name in self.down and c.name not in snap.progress["durable"]:
                self.problems.append(f"{c.label}: not paused (the side did not answer)")
        threads = [threading.Thread(target=one, args=(c,), name=f"pause-{c.name}", daemon=True) for c in todo]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        n = 0
        for c in todo:
            r = results.get(c.name)
            if isinstance(r, BaseException):
                self.problems.append(f"{c.label}: {why(r)}")
            elif c.complete(snap.sides.get(c.name)):
                n += r or 0
                snap.progress["durable"].setdefault(c.name, iso(utcnow()))
        return n

    def journal(self, journal: Journal, snap: Snapshot, controls: list, up: list) -> None:
        p = snap.progress
        done = {s: st for s, (_, st, _) in journal.statuses().items()}

        def mark(seq: int, ok: bool) -> None:
            if done.get(seq) != DONE:
                journal.mark(seq, DONE if ok else FAILED)

        mark(0, all(c.name in snap.fences for c in up))
        for i, c in enumerate(up, 1):
            mark(i, c.name in p["fenced"])
        for i, c in enumerate(controls, 1 + len(up)):
            mark(i, c.name in p["durable"])
        mark(1 + len(up) + len(controls), bool(p.get("durable_at")))


def _read_fence(c, out: dict, errors: dict) -> None:
    """(thread) One side's fence target state."""
    try:
        out[c.name] = c.read_fence()
    except Exception as e:  # noqa: BLE001 - the fence of that side then waits for the next run
        errors[c.name] = why(e)


def _part_line(c, snap: Snapshot) -> str:
    part = snap.sides.get(c.name)
    if not c.complete(part):
        return f"{c.label} not (all) read"
    k = c.counts(part)
    out = []
    for name, v in k.items():  # "3 apscheduler jobs (1 already paused)": a count, then its "_already_..." part
        if "_already_" in name:
            continue
        extra = [f"{k[x]} {x.split('_already_', 1)[1].replace('_', ' ')}".replace(" ", " already ", 1)
                 for x in k if x.startswith(f"{name}_already_")]
        out.append(f"{v} {name.replace('_', ' ')}" + (f" ({', '.join(extra)})" if extra else ""))
    return ", ".join(out)
