"""`cutover pause` / `cutover resume`: stop every run at once, pause everything durably, restore exactly.

pause (``pause(ws, ...)``), each part recorded before anything it covers changes:

1. **snapshot of the fence targets** — the work pool's and its queues' ``is_paused``
   flags (one GET each) and the selection — stored as a ``pause_snapshots`` row,
   status ACTIVE;
2. **fence** (O(1), whatever the count): the legacy fence row (``cutover.core.state.fence``:
   ``legacy.apscheduler.scheduler.run_scheduled`` and ``legacy.batch.orchestrator.BatchOrchestrator`` check it before
   any legacy run starts) and the Prefect work pool paused (one PATCH: workers pick up no
   run of that pool). ``safe_at`` is recorded: from here no new run starts on either side;
3. **snapshot of every schedule state** — each APScheduler job's paused state and
   ``next_run_time`` and each batch flag (one read), then, page by page, each Prefect
   deployment's ``paused`` flag and each of its schedules' ``active`` flag — stored in the
   same row, each part before anything it covers changes;
4. **durable pause** under the operator lock — in a thread, every APScheduler job paused
   (``next_run_time`` NULL) and every batch flag set, one transaction each; here, page by
   page as the snapshot is stored, every deployment paused (the server's
   ``POST /deployments/{id}/pause_deployment``, sequential: the server is the bottleneck;
   progress on stderr; the next page is read meanwhile); then ``durable_at``.

The fence comes before the full snapshot (3) on purpose: it changes none of the states (3)
records, and reading 1,000 deployments takes longer than the 2 s the fence has. A pause that
stops half-way keeps the deployments it has stored; running it again adds the others (their
state then is still their state before the pause: nothing touches a deployment before it is
stored).

With the Prefect API down, the legacy part is done all the same, what could not be done is
recorded in the snapshot and the journal, and the command exits 3; running the same
``pause`` again (same selection) completes the same snapshot.

resume (``resume(ws, snapshot_id, ...)``), journaled (operation ``<id>-resume``):

1. every deployment's ``paused`` flag and every schedule's ``active`` flag back to the
   snapshot (what was paused before stays paused), in parallel with every APScheduler job
   (resumed at its next correct fire time from now, or kept paused) and batch flag;
2. the late-run policy for flow runs of the fenced pool(s) that became due behind the
   fence (state type SCHEDULED, due now, expected start after the pause began, minus
   ``LATE_GRACE_S``): ``skip`` cancels them all, ``run-once`` keeps the newest per
   deployment; done before the pool is un-paused, so the cancelled ones never start
   (PrefectHQ/prefect#19313);
3. the legacy fence lifted (last but one);
4. the work pool and queues back to their snapshot flags (last); status RESUMED.

A second resume is a no-op; a crash midway is resumed by running it again. With the Prefect
API down, the legacy part is restored and its fence lifted, the pool stays paused, exit 3.

Scope: ``--all`` = every ingestion of this workspace (the deployments tagged ``cutover`` and
``ingestion:<id>`` of those ingestions; other workspaces' deployments on a shared server are
left alone, though the pool fence holds their runs too); ``--select`` uses the plan's
selection syntax. The pool is shared by every deployment, so ``--select`` fences only the
legacy side of the selection unless ``--fence-pool`` is given.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

from cutover.core.errors import GateFailed, InputError, NotFound, PartialFailure
from cutover.protocol import OrchestratorError
from cutover.core.redact import redact_text

VERSION = 1
ACTIVE, RESUMED = "ACTIVE", "RESUMED"
LATE_POLICIES = ("skip", "run-once")
LATE_GRACE_S = 30.0  # a run due this shortly before the pause began was still waiting for a worker poll
Echo = Callable[[str], None]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt is not None else None


def parse_iso(s: str | None) -> datetime | None:
    if not s:
        return None
    dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def process_started_at() -> float:
    """This process's start as a Unix time (from /proc; ~10 ms resolution), for time-to-safe."""
    import os

    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        return time.time()


# -- the snapshot row ----------------------------------------------------------------------

@dataclass
class Snapshot:
    id: str
    created_at: datetime
    created_by: str | None
    reason: str | None
    status: str
    body: dict

    @property
    def progress(self) -> dict:
        return self.body.setdefault("progress", {})

    @property
    def ids(self) -> list[str]:
        return self.body["selection"]["ids"]

    def summary(self) -> dict:
        b = self.body
        deps = (b.get("prefect") or {}).get("deployments")
        legacy = b.get("legacy") or {}
        p = self.progress
        return {"id": self.id, "status": self.status, "created_at": iso(self.created_at), "created_by": self.created_by,
                "reason": self.reason, "scope": "all" if b["selection"]["all"] else b["selection"]["select"],
                "ingestions": len(self.ids), "deployments": None if deps is None else len(deps),
                "apscheduler_jobs": len(legacy.get("jobs") or {}), "batch_flags": len(legacy.get("batch") or {}),
                "pool_fence": b.get("pool_fence"), "safe_at": p.get("safe_at"), "durable_at": p.get("durable_at"),
                "resumed_at": p.get("resumed_at"), "problems": b.get("problems") or [],
                "timelines": p.get("timelines") or []}


def _row(r) -> Snapshot:
    body = r.body if isinstance(r.body, dict) else json.loads(r.body)
    at = r.created_at if r.created_at.tzinfo else r.created_at.replace(tzinfo=timezone.utc)
    return Snapshot(r.id, at, r.created_by, r.reason, r.status, body)


def list_snapshots(engine, limit: int = 50) -> list[Snapshot]:
    from sqlalchemy import select

    from cutover.core.state.models import pause_snapshots as t

    with engine.connect() as conn:
        rows = conn.execute(select(t).order_by(t.c.created_at.desc()).limit(limit)).all()
    return [_row(r) for r in rows]


def load(engine, snapshot_id: str) -> Snapshot:
    from sqlalchemy import select

    from cutover.core.state.models import pause_snapshots as t

    with engine.connect() as conn:
        r = conn.execute(select(t).where(t.c.id == snapshot_id)).first()
    if r is None:
        raise NotFound(f"no pause snapshot {snapshot_id!r}", fix="see `cutover pause list`")
    return _row(r)


def active(engine) -> Snapshot | None:
    from sqlalchemy import select

    from cutover.core.state.models import pause_snapshots as t

    with engine.connect() as conn:
        r = conn.execute(select(t).where(t.c.status == ACTIVE).order_by(t.c.created_at.desc())).first()
    return _row(r) if r else None


def _insert(engine, snap: Snapshot) -> None:
    from sqlalchemy import insert

    from cutover.core.state.models import pause_snapshots as t

    with engine.begin() as conn:
        conn.execute(insert(t).values(id=snap.id, created_at=snap.created_at, created_by=snap.created_by,
                                      reason=snap.reason, status=snap.status, body=snap.body))


def _save(engine, snap: Snapshot) -> None:
    from sqlalchemy import update

    from cutover.core.state.models import pause_snapshots as t

    with engine.begin() as conn:
        conn.execute(update(t).where(t.c.id == snap.id).values(status=snap.status, body=snap.body))


def _delete(engine, snapshot_id: str) -> None:
    from sqlalchemy import delete

    from cutover.core.state.models import pause_snapshots as t

    with engine.begin() as conn:
        conn.execute(delete(t).where(t.c.id == snapshot_id))


# -- selection -----------------------------------------------------------------------------

def select_ingestions(ws, *, all_: bool, select: str | None) -> dict:
    from cutover.core.state import states
    from cutover.engine.plan import _selected

    if all_ == bool(select):
        raise InputError("say what to pause", fix="pass --all, or --select with id globs / owner=, format=, state=, ...")
    st = states.get_states(ws.state_engine)
    ids = [ing.id for ing in ws.ingestions.list()
           if all_ or _selected({"ingestion": ing, "state": st.get(ing.id, states.LEGACY)}, select)]
    if not ids:
        raise InputError("no ingestion matches" if select else "there are no ingestions",
                         fix="see `cutover inventory`")
    return {"all": bool(all_), "select": select or None, "ids": ids}


# -- reading both sides ----------------------------------------------------------------------

def read_legacy(ws, ids: list[str]) -> dict:
    from legacy.rq.model import managed_ids
    from legacy.apscheduler.scheduler import JobSync

    wanted = set(ids)
    jobs = {j.ingestion_id: {"paused": j.paused, "next_run_time": iso(j.next_run_time)}
            for j in JobSync(ws.settings).jobs() if j.ingestion_id in wanted}
    ings = [i for i in ws.ingestions.list() if i.id in wanted]
    rq_ids = managed_ids(ws.settings)
    out = {"jobs": jobs, "batch": {i.id: bool(i.batch_paused) for i in ings},
           "no_job": sorted(i.id for i in ings if i.schedule is not None and i.id not in jobs and i.id not in rq_ids)}
    rq = read_rq(ws, ids)
    if rq is not None:
        out["rq"] = rq
    return out


def read_rq(ws, ids: list[str]) -> dict | None:
    """The RQ holds of the selection's RQ workflows ({"holds": {id: held?}}), None without an RQ setup,
    {"error": ...} when Redis does not answer (the pause then retries it when run again)."""
    from legacy.rq.side import configured, read_state

    if not configured(ws.settings):
        return None
    try:
        st = read_state(ws, ids)
    except (OrchestratorError, InputError) as e:
        return {"error": _reason(e)}
    return {"holds": st["holds"]} if st is not None else None


def _dep(d: dict, wanted: set[str]) -> dict | None:
    """The snapshot form of a deployment (None: not a cutover deployment of the selection)."""
    from flows.deploy import ingestion_of, mode_of

    tags = d.get("tags") or []
    iid = ingestion_of(tags)
    if iid not in wanted:
        return None
    return {"id": str(d["id"]), "name": d.get("name"), "ingestion_id": iid, "mode": mode_of(tags),
            "paused": bool(d.get("paused")), "work_pool": d.get("work_pool_name"),
            "work_queue": d.get("work_queue_name"),
            "schedules": [{"id": str(s["id"]), "slug": s.get("slug"), "active": bool(s.get("active"))}
                          for s in d.get("schedules") or []]}


def read_deployments(http, ids: list[str]) -> list[dict]:
    from flows.deploy import TAG

    wanted = set(ids)
    return [x for x in (_dep(d, wanted) for d in http.deployments([TAG])) if x is not None]


def stream_deployments(http, ids: list[str]):
    """Pages of :func:`read_deployments`, the next page read by a thread while the caller works on
    the current one (the writes of a page overlap the read of the next)."""
    import queue

    from flows.http import PAGE
    from flows.deploy import TAG

    wanted = set(ids)
    q: queue.Queue = queue.Queue(maxsize=2)
    body = {"deployments": {"tags": {"all_": [TAG]}}, "sort": "NAME_ASC"}

    def reader() -> None:
        offset = 0
        try:
            while True:
                page = http.request("POST", "/deployments/filter", {**body, "limit": PAGE, "offset": offset})
                q.put([x for x in (_dep(d, wanted) for d in page) if x is not None])
                if len(page) < PAGE:
                    break
                offset += PAGE
            q.put(None)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            q.put(e)

    threading.Thread(target=reader, name="deployments-reader", daemon=True).start()
    while True:
        item = q.get()
        if item is None:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


def read_pools(http, pools: list[str]) -> dict:
    out = {}
    for p in pools:
        wp = http.work_pool(p)
        out[p] = {"paused": bool(wp.get("is_paused")),
                  "queues": {q["name"]: bool(q.get("is_paused")) for q in http.work_queues(p)}}
    return out


def prefect_url(ws, *, start: bool) -> str:
    """PREFECT_API_URL, else the local server; ``start``: start the local server (server only,
    no worker) when it is not running, so that the pause can be made durable."""
    from flows.local import PrefectUnavailable, local_url, up

    s = ws.settings
    if s.prefect_api_url:
        return s.prefect_api_url
    url = local_url(s)
    if url:
        return url
    if not start:
        raise OrchestratorError("the local Prefect server is not running (PREFECT_API_URL is not set)")
    try:
        return up(s, worker=False).state.url
    except PrefectUnavailable as e:
        raise OrchestratorError(f"Prefect API unavailable: {e.one_line()}") from None


def _reason(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return redact_text(text if isinstance(e, (OrchestratorError, InputError)) else f"{type(e).__name__}: {text}")[:300]


class Progress:
    """``label done/total rate`` on stderr: redrawn in place on a terminal, every 10% otherwise."""

    def __init__(self, label: str, total: int, stream=None):
        self.label, self.total = label, total
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.monotonic()
        self.last = 0.0
        self.step = max(1, total // 10)
        self.done = 0

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if self.tty:
            if now - self.last < 0.2 and done < self.total:
                return
            self.last = now
            width = 30
            filled = int(width * done / self.total) if self.total else width
            rate = done / max(now - self.t0, 1e-6)
            self.stream.write(f"\r  {self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} "
                              f"{rate:.0f}/s")
            self.stream.flush()
        elif done == self.total or done % self.step == 0:
            self.stream.write(f"  {self.label}: {done}/{self.total}\n")
            self.stream.flush()

    def close(self) -> None:
        if self.tty and self.total:
            self.stream.write("\n")
            self.stream.flush()


# -- pause ---------------------------------------------------------------------------------

PAUSE_STEPS = (
    "*: pause: snapshot of the fence targets (work pool and queue flags), stored before any change",
    "*: pause: legacy fence (one row every legacy run checks)",
    "*: pause: Prefect work pool fence (one PATCH)",
    "*: pause: snapshot of every schedule state (deployments, schedules, APScheduler jobs, batch flags)",
    "*: pause: every Prefect deployment paused",
    "*: pause: every APScheduler job paused and batch flag set",
    "*: pause: snapshot marked durable",
)
S_SNAP0, S_LFENCE, S_PFENCE, S_SNAP, S_PREFECT, S_LEGACY, S_DURABLE = range(7)


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


def _counts(snap_body: dict) -> dict:
    deps = (snap_body.get("prefect") or {}).get("deployments")
    legacy = snap_body.get("legacy") or {}
    return {
        "ingestions": len(snap_body["selection"]["ids"]),
        "deployments": None if deps is None else len(deps),
        "deployments_already_paused": None if deps is None else sum(1 for d in deps if d["paused"]),
        "apscheduler_jobs": len(legacy.get("jobs") or {}),
        "apscheduler_jobs_already_paused": sum(1 for j in (legacy.get("jobs") or {}).values() if j["paused"]),
        "batch_flags": len(legacy.get("batch") or {}),
        "batch_flags_already_set": sum(1 for v in (legacy.get("batch") or {}).values() if v),
        "work_pools": sorted(((snap_body.get("prefect") or {}).get("pools") or {}).keys()),
        "rq_workflows": len(((legacy.get("rq") or {}).get("holds") or {})),
        "rq_workflows_already_held": sum(1 for v in ((legacy.get("rq") or {}).get("holds") or {}).values() if v),
    }


def pause(ws, *, all_: bool = False, select: str | None = None, reason: str = "", dry_run: bool = False,
          fence_pool: bool | None = None, echo: Echo = print, progress_stream=None,
          started_at: float | None = None) -> PauseResult:
    from cutover.core.state import audit
    from cutover.core.state import lock
    from cutover.core.state import fence
    from flows.http import PrefectHTTP
    from cutover.core.state.journal import DONE, FAILED, RUNNING, Journal

    t_start = started_at if started_at is not None else process_started_at()
    timeline: dict[str, float] = {}

    def tick(name: str) -> None:  # seconds since the process started, for the bench and the post-mortem
        timeline[name] = round(time.time() - t_start, 3)

    tick("imports")
    # The Prefect side's connection and the fence targets' read (work pool and queue flags) start now,
    # in parallel with opening the state DB (alembic's schema check) and reading the selection: both
    # are on the way to the fence. Read only; nothing is changed before the snapshot is stored.
    early: dict = {}
    pool_names = [ws.settings.prefect_work_pool]
    prefetch = None
    if not dry_run:
        prefetch = threading.Thread(target=_connect_and_read_pools, args=(ws, pool_names, early),
                                    name="pause-prefetch", daemon=True)
        prefetch.start()
    engine = ws.state_engine
    tick("state_db")
    sel = select_ingestions(ws, all_=all_, select=select)
    pool_fence = sel["all"] if fence_pool is None else bool(fence_pool)
    cur = active(engine)
    reassert = False
    if cur is not None:
        same = (cur.body["selection"]["all"], cur.body["selection"]["select"]) == (sel["all"], sel["select"])
        if not same:
            raise GateFailed(f"pause snapshot {cur.id} ({cur.reason or 'no reason'}) is in force for "
                             f"{'every ingestion' if cur.body['selection']['all'] else cur.body['selection']['select']}",
                             fix=f"one pause at a time: resume it first (cutover resume --snapshot {cur.id}), "
                                 "or run the same pause again to complete it")
        sel, pool_fence = cur.body["selection"], bool(cur.body.get("pool_fence"))
        if cur.progress.get("durable_at"):
            echo(f"already paused: snapshot {cur.id} since {cur.progress.get('safe_at', '')[:19]} "
                 f"({cur.reason or 'no reason'})" + ("" if dry_run else "; re-asserting it"))
            if dry_run:
                return PauseResult(cur.id, dry_run=True, already=True, counts=_counts(cur.body),
                                   snapshot=cur.summary())
            reassert = True
        elif not dry_run:
            echo(f"completing pause snapshot {cur.id} (started {iso(cur.created_at)[:19]} by {cur.created_by})")

    # -- dry run: reads only -------------------------------------------------------------
    if dry_run:
        body = {"selection": sel, "legacy": read_legacy(ws, sel["ids"]), "prefect": None}
        problems = []
        try:
            with PrefectHTTP(prefect_url(ws, start=False)) as http:
                body["prefect"] = {"pools": read_pools(http, pool_names) if pool_fence else {},
                                   "deployments": read_deployments(http, sel["ids"])}
        except OrchestratorError as e:
            problems.append(f"Prefect side not read: {_reason(e)}")
        c = _counts(body)
        echo(f"would snapshot and pause {c['ingestions']} ingestion(s):")
        if c["deployments"] is None:
            echo("  Prefect: unknown (not reachable)")
        else:
            echo(f"  Prefect: {c['deployments']} deployment(s), {c['deployments'] - c['deployments_already_paused']} "
                 f"to pause ({c['deployments_already_paused']} already paused, they stay paused)")
        echo("  fence: legacy fence row" + (f"; work pool {', '.join(pool_names)} paused (one PATCH each)"
                                            if pool_fence else "; no work pool fence (--select without --fence-pool)"))
        echo(f"  APScheduler: {c['apscheduler_jobs']} job(s), {c['apscheduler_jobs'] - c['apscheduler_jobs_already_paused']} "
             f"to pause; batch: {c['batch_flags'] - c['batch_flags_already_set']} flag(s) to set")
        rq = body["legacy"].get("rq")
        if rq is not None:
            if rq.get("error"):
                problems.append(f"RQ side not read: {rq['error']}")
            else:
                echo(f"  RQ: {c['rq_workflows']} workflow(s), {c['rq_workflows'] - c['rq_workflows_already_held']} to hold"
                     + ("; workers suspended (rq suspend)" if pool_fence else "; workers not suspended (--select)"))
        for p in problems:
            echo(f"  problem: {p}")
        echo("Dry run: nothing was changed.")
        return PauseResult(None, dry_run=True, counts=c, problems=problems)

    # -- 1. snapshot of the fence targets -------------------------------------------------
    problems: list[str] = []
    prefetch.join()
    http, url = early.get("http"), early.get("url")
    if early.get("error"):
        problems.append(f"Prefect: {early['error']}")
    if cur is None:
        snap = Snapshot(uuid.uuid4().hex[:12], utcnow(), audit.who(), reason or None, ACTIVE,
                        {"version": VERSION, "selection": sel, "pool_fence": pool_fence, "legacy": None,
                         "prefect": {"api_url": None, "pools": None, "deployments": None}, "progress": {},
                         "problems": []})
    else:
        snap = cur
    journal = Journal(engine, snap.id, "pause")
    pf = snap.body["prefect"]
    pools_read = False
    if pool_fence and pf.get("pools") is None and early.get("pools") is not None:
        pf["pools"] = early["pools"]
        pf["api_url"] = url
        pools_read = True
    elif pool_fence and pf.get("pools") is None and early.get("pools_error"):
        problems.append(f"Prefect work pool not read: {early['pools_error']}")
    tick("snapshot_pools_read")
    if cur is None:
        _insert(engine, snap)
    elif pools_read:
        _save(engine, snap)  # stored before the pool is touched
    tick("snapshot_stored")

    # -- 2. fence (first the two writes, then the bookkeeping) ------------------------------
    prog = snap.progress
    try:
        fence.raise_fence(engine, snap.id, reason=snap.reason, ids=None if sel["all"] else sel["ids"])
    except ValueError as e:
        if cur is None:
            _delete(engine, snap.id)
        raise GateFailed(f"another pause is in force: {e}", fix="see `cutover pause list`") from None
    prog.setdefault("legacy_fence_at", iso(utcnow()))
    tick("legacy_fence")
    if pool_fence and (reassert or prog.get("rq_fence_at") is None):
        rq_error = _fence_rq(ws, engine, snap)
        if rq_error:
            problems.append(f"RQ workers not suspended: {rq_error}")
        else:
            tick("rq_fence")
    pool_error = None
    if pool_fence and (reassert or prog.get("pool_fence_at") is None):
        if http is None or pf.get("pools") is None:
            pool_error = "Prefect API not reachable"
        else:
            try:
                for p in pf["pools"]:
                    http.set_pool_paused(p, True)
                prog.setdefault("pool_fence_at", iso(utcnow()))
                tick("pool_fence")
            except OrchestratorError as e:
                pool_error = _reason(e)
                problems.append(f"work pool fence: {pool_error}")
    if prog.get("safe_at") is None and pool_fence and prog.get("pool_fence_at"):
        prog["safe_at"] = iso(utcnow())
        prog["safe_after_s"] = round(time.time() - t_start, 3)

    journal.register(list(PAUSE_STEPS))
    status = {seq: st for seq, (_, st, _) in journal.statuses().items()}

    def mark(seq: int, ok: bool, detail: str | None = None) -> None:
        if status.get(seq) == DONE:
            return
        journal.mark(seq, DONE if ok else FAILED, detail)
        status[seq] = DONE if ok else FAILED

    def todo(seq: int) -> bool:
        return reassert or status.get(seq) != DONE

    mark(S_SNAP0, (not pool_fence) or pf.get("pools") is not None,
         None if (not pool_fence or pf.get("pools") is not None) else "Prefect work pool not read")
    mark(S_LFENCE, True)
    if not pool_fence:
        mark(S_PFENCE, True, "no pool fence (--select): the Prefect side is safe once its deployments are paused")
    elif prog.get("pool_fence_at") and not pool_error:
        mark(S_PFENCE, True, ", ".join(pf["pools"]))
    else:
        mark(S_PFENCE, False, pool_error)
    _save(engine, snap)
    if not reassert:
        safe_note = (f"fenced {prog['safe_after_s']:.2f}s after the command started"
                     if prog.get("safe_after_s") is not None
                     else "legacy side fenced; the Prefect side is safe once its deployments are paused"
                     if not pool_fence else "legacy side fenced; the Prefect side is NOT fenced yet")
        echo(f"pause snapshot {snap.id}: {safe_note}")

    # -- 3. snapshot of every schedule state: the legacy side now (one read, fast), the Prefect
    #       deployments page by page under the lock below, each page stored before it is paused -------
    if snap.body.get("legacy") is None:
        snap.body["legacy"] = read_legacy(ws, sel["ids"])
        _save(engine, snap)
    elif (snap.body["legacy"].get("rq") or {}).get("error"):  # Redis did not answer last time: read it now
        snap.body["legacy"]["rq"] = read_rq(ws, sel["ids"])
        _save(engine, snap)
    tick("snapshot_legacy")

    # -- 4. durable pause (legacy in a thread, Prefect here) -------------------------------
    try:
        lock_id = lock.acquire(engine, f"pause {snap.id}")
    except lock.Locked as e:
        problems.append(f"durable pause not done: {e.one_line()}")
        lock_id = None
    tick("lock")
    legacy_errors: list[str] = []
    legacy_counts: dict = {}
    repaused = 0
    if lock_id is not None:
        try:
            th = None
            if todo(S_LEGACY):
                if status.get(S_LEGACY) != DONE:
                    journal.mark(S_LEGACY, RUNNING)
                th = threading.Thread(target=_pause_legacy, args=(ws, snap.body["legacy"], legacy_errors,
                                                                  legacy_counts, t_start),
                                      name="pause-legacy", daemon=True)
                th.start()
            if todo(S_PREFECT) or not pf.get("deployments_complete"):
                if http is None:
                    mark(S_SNAP, False, "Prefect API not reachable (the legacy part is stored)")
                    mark(S_PREFECT, False, "Prefect API not reachable")
                else:
                    if status.get(S_PREFECT) != DONE:
                        journal.mark(S_PREFECT, RUNNING)
                    try:
                        n = _snapshot_and_pause_deployments(engine, snap, http, url, sel["ids"], progress_stream,
                                                            on_complete=lambda: tick("snapshot_full"))
                        mark(S_SNAP, True)
                        tick("prefect_durable")
                        repaused += n
                        prog.setdefault("prefect_durable_at", iso(utcnow()))
                        if prog.get("safe_at") is None and not pool_fence:  # --select: safe = paused
                            prog["safe_at"] = prog["prefect_durable_at"]
                            prog["safe_after_s"] = round(time.time() - t_start, 3)
                        mark(S_PREFECT, True, f"{n} deployment(s) paused")
                    except OrchestratorError as e:
                        problems.append(f"Prefect deployments: {_reason(e)}")
                        if not pf.get("deployments_complete"):
                            mark(S_SNAP, False, f"Prefect deployments not all read: {_reason(e)}")
                        mark(S_PREFECT, False, _reason(e))
            if th is not None:
                th.join()
                timeline["legacy_durable"] = legacy_counts.get("done_after_s")
                repaused += legacy_counts.get("changed", 0)
                if legacy_errors:
                    problems.extend(legacy_errors[:20])
                    mark(S_LEGACY, False, f"{len(legacy_errors)} error(s): {legacy_errors[0]}")
                else:
                    prog.setdefault("legacy_durable_at", iso(utcnow()))
                    mark(S_LEGACY, True, f"{legacy_counts.get('changed', 0)} job(s)/flag(s) paused")
            if (status.get(S_PREFECT) == DONE and status.get(S_LEGACY) == DONE and status.get(S_PFENCE) == DONE
                    and not prog.get("durable_at")):
                prog["durable_at"] = iso(utcnow())
                prog["durable_after_s"] = round(time.time() - t_start, 3)
                tick("durable")
                mark(S_DURABLE, True)
        finally:
            lock.release(engine, lock_id)
    snap.body["problems"] = problems
    c = _counts(snap.body)
    if not reassert:
        echo(f"  snapshot: {c['ingestions']} ingestion(s); "
             + (f"{c['deployments']} Prefect deployment(s) ({c['deployments_already_paused']} already paused)"
                if c["deployments"] is not None and pf.get("deployments_complete")
                else "Prefect deployments not (all) read")
             + f"; {c['apscheduler_jobs']} APScheduler job(s) ({c['apscheduler_jobs_already_paused']} already paused); "
               f"{c['batch_flags']} batch flag(s) ({c['batch_flags_already_set']} already set)"
             + (f"; {c['rq_workflows']} RQ workflow(s) held ({c['rq_workflows_already_held']} already held)"
                + ("; RQ workers suspended" if prog.get("rq_fence_at") else "")
                if (snap.body.get("legacy") or {}).get("rq") is not None else ""))
    if http is not None:
        timeline["http_retries"] = http.retried
    prog.setdefault("timelines", []).append(timeline)
    _save(engine, snap)
    if http is not None:
        http.close()
    audit.record(engine, "pause", target=snap.id, reason=reason or snap.reason,
                 detail={"snapshot": snap.id, "scope": "all" if sel["all"] else sel["select"], **c,
                         "reasserted": reassert, "repaused": repaused if reassert else None,
                         "safe_after_s": prog.get("safe_after_s"), "durable_after_s": prog.get("durable_after_s"),
                         "problems": problems[:20]})
    res = PauseResult(snap.id, already=reassert, counts=c, problems=problems, safe_after_s=prog.get("safe_after_s"),
                      durable_after_s=prog.get("durable_after_s"), snapshot=snap.summary())
    if reassert:
        echo(f"  re-asserted: {repaused} item(s) un-paused behind the snapshot were paused again")
    elif prog.get("durable_at"):
        echo(f"  durable {prog['durable_after_s']:.2f}s after the command started")
    for p in problems:
        echo(f"  NOT DONE: {p}")
    return res


def _fence_rq(ws, engine, snap: Snapshot) -> str | None:
    """The RQ side's fast fence: suspend every worker on its Redis (``rq suspend``), having stored
    first whether they were suspended already (resume then leaves them so). None, or what failed."""
    from legacy.rq.side import configured, suspend_workers, workers_suspended

    if not configured(ws.settings):
        return None
    try:
        if snap.body.get("rq_fence") is None:
            snap.body["rq_fence"] = {"suspended_before": workers_suspended(ws)}
            _save(engine, snap)  # stored before anything changes
        suspend_workers(ws)
    except (OrchestratorError, InputError) as e:
        return _reason(e)
    snap.progress.setdefault("rq_fence_at", iso(utcnow()))
    return None


def _rq_unsuspend_due(snap: Snapshot) -> bool:
    """Whether resume must resume the RQ workers: this pause suspended them (they were not before)."""
    f = snap.body.get("rq_fence") or {}
    return f.get("suspended_before") is False and bool(snap.progress.get("rq_fence_at"))


def _connect_and_read_pools(ws, pools: list[str], out: dict) -> None:
    """(thread) The Prefect API's URL and client, and the work pools' and queues' paused flags."""
    from flows.http import PrefectHTTP

    try:
        out["url"] = prefect_url(ws, start=True)
        out["http"] = PrefectHTTP(out["url"])
    except OrchestratorError as e:
        out["error"] = _reason(e)
        return
    try:
        out["pools"] = read_pools(out["http"], pools)
    except OrchestratorError as e:
        out["pools_error"] = _reason(e)


def _pause_legacy(ws, legacy: dict, errors: list[str], counts: dict, t_start: float = 0.0) -> None:
    """Every APScheduler job and batch flag of the snapshot paused (already paused ones untouched),
    one transaction each side (legacy.apscheduler.bulk)."""
    from legacy.apscheduler.bulk import pause_jobs, set_batch_flags

    counts["changed"] = 0
    try:
        counts["changed"] += pause_jobs(ws.settings, list(legacy["jobs"]))
    except Exception as e:  # noqa: BLE001 - collected, reported, the pause is re-runnable
        errors.append(f"APScheduler jobs: {_reason(e)}")
    try:
        counts["changed"] += set_batch_flags(ws, {iid: True for iid in legacy["batch"]})
    except Exception as e:  # noqa: BLE001
        errors.append(f"batch flags: {_reason(e)}")
    rq = legacy.get("rq")
    if rq is not None:
        if rq.get("error"):
            errors.append(f"RQ holds: {rq['error']}")
        else:
            try:
                from legacy.rq.side import set_holds

                counts["changed"] += set_holds(ws, {iid: True for iid in rq["holds"]}, reason="cutover pause")
            except Exception as e:  # noqa: BLE001
                errors.append(f"RQ holds: {_reason(e)}")
    counts["done_after_s"] = round(time.time() - t_start, 3)


def _snapshot_and_pause_deployments(engine, snap: Snapshot, http, url: str, ids: list[str], stream,
                                    on_complete: Callable[[], None] | None = None) -> int:
    """Page by page: add the deployments the snapshot does not hold yet (their state now, which no
    one has changed for this pause) and store the snapshot; then PATCH paused=true on every
    deployment of that page that the snapshot holds and that is not paused now (sequential).
    The next page is read meanwhile. Returns how many were paused."""
    from flows.http import NotFoundHTTP

    pf = snap.body["prefect"]
    held = {d["id"] for d in pf.get("deployments") or []}
    building = not pf.get("deployments_complete")
    try:
        total = int(http.request("POST", "/deployments/count", {"deployments": {"tags": {"all_": ["cutover"]}}}))
    except Exception:  # noqa: BLE001 - only for the progress bar
        total = len(held)
    bar = Progress("pausing Prefect deployments", total, stream)
    seen = n = 0
    for page in stream_deployments(http, ids):
        if building:
            new = [d for d in page if d["id"] not in held]
            if new:
                pf["deployments"] = (pf.get("deployments") or []) + new
                pf["api_url"] = pf.get("api_url") or url
                held.update(d["id"] for d in new)
                _save(engine, snap)  # stored before any of them is touched
        for d in page:
            seen += 1
            if d["id"] in held and d["paused"] is False:
                try:
                    http.set_deployment_paused(d["id"], True)
                    n += 1
                except NotFoundHTTP:  # deleted meanwhile: nothing left to pause
                    pass
            bar.update(min(seen, total) if total else seen)
    bar.close()
    if building:
        pf.setdefault("deployments", [])
        pf["deployments_complete"] = True
        _save(engine, snap)
        if on_complete:
            on_complete()
    return n


# -- resume --------------------------------------------------------------------------------

RESUME_STEPS = (
    "*: resume: Prefect deployments and schedules restored as snapshotted",
    "*: resume: APScheduler jobs and batch flags restored as snapshotted",
    "*: resume: late runs behind the fence ({policy})",
    "*: resume: legacy fence lifted",
    "*: resume: work pool and queues restored as snapshotted (pool fence lifted)",
    "*: resume: snapshot marked RESUMED",
)
R_PREFECT, R_LEGACY, R_LATE, R_LFENCE, R_POOL, R_DONE = range(6)


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


def _deployment_changes(snap_deps: list[dict], current: list[dict]) -> tuple[list, list, list[str]]:
    """([(dep id, name, paused)], [(dep id, name, schedule id, active)], notes) to restore the snapshot."""
    cur = {d["id"]: d for d in current}
    flags, scheds, notes = [], [], []
    for d in snap_deps:
        c = cur.get(d["id"])
        if c is None:
            notes.append(f"deployment {d['name']} ({d['id']}) was deleted since the snapshot: nothing to restore")
            continue
        if c["paused"] != d["paused"]:
            flags.append((d["id"], d["name"], d["paused"]))
        cs = {s["id"]: s for s in c["schedules"]}
        for s in d["schedules"]:
            if s["id"] not in cs:
                notes.append(f"schedule {s['slug'] or s['id']} of {d['name']} was removed since the snapshot")
            elif cs[s["id"]]["active"] != s["active"]:
                scheds.append((d["id"], d["name"], s["id"], s["active"]))
    return flags, scheds, notes


def _rq_changes(ws, legacy: dict) -> tuple[list, list[str]]:
    """([(ingestion id, held)], notes) to restore the snapshot's RQ holds (raises OrchestratorError)."""
    from legacy.rq.side import read_state

    holds = (legacy.get("rq") or {}).get("holds") or {}
    if not holds:
        return [], []
    now = read_state(ws, list(holds)) or {"holds": {}}
    out, notes = [], []
    for iid, was in holds.items():
        if iid not in now["holds"]:
            notes.append(f"RQ workflow {iid} was removed since the snapshot: nothing to restore")
        elif now["holds"][iid] != was:
            out.append((iid, was))
    return out, notes


def _legacy_changes(ws, legacy: dict) -> tuple[list, list, list[str]]:
    """([(job id, paused)], [(ingestion id, batch paused)], notes) to restore the snapshot."""
    now = read_legacy(ws, list(legacy["batch"].keys() | legacy["jobs"].keys()))
    jobs, flags, notes = [], [], []
    for iid, j in legacy["jobs"].items():
        c = now["jobs"].get(iid)
        if c is None:
            notes.append(f"APScheduler job {iid} was removed since the snapshot: nothing to restore")
        elif c["paused"] != j["paused"]:
            jobs.append((iid, j["paused"]))
    for iid, was in legacy["batch"].items():
        if iid not in now["batch"]:
            notes.append(f"ingestion {iid} was removed since the snapshot")
        elif now["batch"][iid] != was:
            flags.append((iid, was))
    return jobs, flags, notes


def late_runs(http, snap: Snapshot, policy: str, now: datetime) -> tuple[list[dict], list[dict]]:
    """(runs to cancel, runs to keep) among the fenced pools' runs that are due now and became due
    after the pause began."""
    pools = sorted(((snap.body.get("prefect") or {}).get("pools") or {}).keys())
    if not pools or not snap.progress.get("pool_fence_at"):
        return [], []
    since = snap.created_at - timedelta(seconds=LATE_GRACE_S)
    runs = []
    for r in http.scheduled_runs(pools=pools, before=now.isoformat()):
        t = parse_iso(r.get("expected_start_time") or r.get("next_scheduled_start_time"))
        if t is not None and t >= since:
            runs.append(r)
    if policy == "skip":
        return runs, []
    newest: dict[str, dict] = {}
    for r in runs:
        key = str(r.get("deployment_id") or r["id"])
        t = parse_iso(r.get("expected_start_time") or r.get("next_scheduled_start_time"))
        if key not in newest or t > parse_iso(newest[key].get("expected_start_time")
                                              or newest[key].get("next_scheduled_start_time")):
            newest[key] = r
    keep_ids = {r["id"] for r in newest.values()}
    return [r for r in runs if r["id"] not in keep_ids], list(newest.values())


def resume(ws, snapshot_id: str, *, late: str = "skip", dry_run: bool = False, echo: Echo = print,
           progress_stream=None) -> ResumeResult:
    from cutover.core.state import audit
    from cutover.core.state import lock
    from cutover.core.state import fence
    from flows.http import NotFoundHTTP, PrefectHTTP
    from cutover.core.state.journal import DONE, FAILED, RUNNING, Journal

    if late not in LATE_POLICIES:
        raise InputError(f"--late-runs {late} is not one of {', '.join(LATE_POLICIES)}", fix="use skip or run-once")
    engine = ws.state_engine
    snap = load(engine, snapshot_id)
    res = ResumeResult(snap.id, dry_run=dry_run)
    if snap.status == RESUMED:
        echo(f"snapshot {snap.id} was already resumed at {(snap.progress.get('resumed_at') or '')[:19]}: nothing to do")
        res.already = True
        return res
    pf = snap.body.get("prefect") or {}
    has_prefect = pf.get("deployments") is not None or bool(pf.get("pools"))
    http, problems = None, []
    if has_prefect:
        try:
            http = PrefectHTTP(prefect_url(ws, start=not dry_run))  # today's configuration, not the recorded URL
            http.health()
        except OrchestratorError as e:
            problems.append(f"Prefect: {_reason(e)}")
            if http is not None:
                http.close()
            http = None

    if dry_run:
        jobs, flags, notes = _legacy_changes(ws, snap.body["legacy"]) if snap.body.get("legacy") else ([], [], [])
        echo(f"would resume pause snapshot {snap.id} ({snap.reason or 'no reason'}):")
        echo(f"  APScheduler: {sum(1 for _, p in jobs if not p)} job(s) to resume, {sum(1 for _, p in jobs if p)} "
             f"to re-pause; batch: {len(flags)} flag(s) to restore")
        if (snap.body.get("legacy") or {}).get("rq"):
            try:
                holds, rq_notes = _rq_changes(ws, snap.body["legacy"])
                notes += rq_notes
                echo(f"  RQ: {sum(1 for _, h in holds if not h)} workflow hold(s) to lift, "
                     f"{sum(1 for _, h in holds if h)} to keep"
                     + ("; workers resumed (they were not suspended before)" if _rq_unsuspend_due(snap)
                        else ""))
            except (OrchestratorError, InputError) as e:
                problems.append(f"RQ: {_reason(e)}")
        if http is not None:
            d_flags, d_scheds, d_notes = ([], [], [])
            if pf.get("deployments") is not None:
                d_flags, d_scheds, d_notes = _deployment_changes(pf["deployments"], read_deployments(http, snap.ids))
            cancel, keep = late_runs(http, snap, late, utcnow())
            echo(f"  Prefect: {sum(1 for *_, p in d_flags if not p)} deployment(s) to resume, "
                 f"{sum(1 for *_, p in d_flags if p)} to re-pause, {len(d_scheds)} schedule flag(s) to restore")
            echo(f"  late runs ({late}): {len(cancel)} to cancel, {len(keep)} to keep")
            notes += d_notes
        elif has_prefect:
            echo("  Prefect: not reachable")
        echo("  then: legacy fence lifted; " + (f"work pool(s) {', '.join(pf.get('pools') or {})} restored"
                                              if snap.progress.get("pool_fence_at") else "no pool fence to lift"))
        for n in notes:
            echo(f"  note: {n}")
        for p in problems:
            echo(f"  problem: {p}")
        echo("Dry run: nothing was changed.")
        res.problems = problems
        return res

    journal = Journal(engine, f"{snap.id}-resume", "resume")
    journal.register([s.format(policy=late) for s in RESUME_STEPS])
    status = {seq: st for seq, (_, st, _) in journal.statuses().items()}

    def mark(seq: int, ok: bool, detail: str | None = None) -> None:
        journal.mark(seq, DONE if ok else FAILED, detail)
        status[seq] = DONE if ok else FAILED

    with lock.locked(engine, f"resume {snap.id}"):
        # 1. restore states: legacy in a thread, Prefect here
        legacy_out: dict = {}
        th = None
        if status.get(R_LEGACY) != DONE:
            journal.mark(R_LEGACY, RUNNING)
            th = threading.Thread(target=_restore_legacy, args=(ws, snap.body.get("legacy"), legacy_out),
                                  name="resume-legacy", daemon=True)
            th.start()
        if status.get(R_PREFECT) != DONE:
            if pf.get("deployments") is None:
                mark(R_PREFECT, True, "no Prefect deployment in the snapshot")
            elif http is None:
                mark(R_PREFECT, False, "Prefect API not reachable")
            else:
                journal.mark(R_PREFECT, RUNNING)
                try:
                    # page by page: the next page is read while this one's writes go out
                    held = {d["id"]: d for d in pf["deployments"]}
                    bar = Progress("restoring Prefect deployments", len(held), progress_stream)
                    d_flags, d_scheds, seen = [], [], set()
                    for page in stream_deployments(http, snap.ids):
                        mine = [c for c in page if c["id"] in held]
                        seen.update(c["id"] for c in mine)
                        p_flags, p_scheds, p_notes = _deployment_changes([held[c["id"]] for c in mine], mine)
                        res.notes += p_notes
                        for dep_id, _name, paused in p_flags:
                            try:
                                http.set_deployment_paused(dep_id, paused)
                            except NotFoundHTTP:
                                res.notes.append(f"deployment {dep_id} was deleted meanwhile")
                        for dep_id, _name, sched_id, act in p_scheds:
                            try:
                                http.set_schedule_active(dep_id, sched_id, act)
                            except NotFoundHTTP:
                                res.notes.append(f"schedule {sched_id} was deleted meanwhile")
                        d_flags += p_flags
                        d_scheds += p_scheds
                        bar.update(len(seen))
                    bar.close()
                    res.notes += [f"deployment {d['name']} ({i}) was deleted since the snapshot: nothing to restore"
                                  for i, d in held.items() if i not in seen]
                    res.changes["deployments_resumed"] = sum(1 for *_, p in d_flags if not p)
                    res.changes["deployments_repaused"] = sum(1 for *_, p in d_flags if p)
                    res.changes["schedule_flags_restored"] = len(d_scheds)
                    mark(R_PREFECT, True, f"{len(d_flags)} deployment flag(s), {len(d_scheds)} schedule flag(s)")
                except OrchestratorError as e:
                    problems.append(f"Prefect deployments: {_reason(e)}")
                    mark(R_PREFECT, False, _reason(e))
        if th is not None:
            th.join()
            res.notes += legacy_out.get("notes", [])
            if legacy_out.get("errors"):
                problems.extend(legacy_out["errors"][:20])
                mark(R_LEGACY, False, f"{len(legacy_out['errors'])} error(s): {legacy_out['errors'][0]}")
            else:
                res.changes.update(legacy_out.get("changes", {}))
                mark(R_LEGACY, True, json.dumps(legacy_out.get("changes", {})))
        # 2. late runs, before the pool is un-paused
        if status.get(R_LATE) != DONE and status.get(R_PREFECT) == DONE:
            if not snap.progress.get("pool_fence_at"):
                mark(R_LATE, True, "no pool fence: no run was held back")
            elif http is None:
                mark(R_LATE, False, "Prefect API not reachable")
            else:
                journal.mark(R_LATE, RUNNING)
                try:
                    cancel, keep = late_runs(http, snap, late, utcnow())
                    for r in cancel:
                        http.cancel_flow_run(r["id"], f"late behind pause snapshot {snap.id}: skipped on resume "
                                                      f"(--late-runs {late})")
                    res.late_runs = {"policy": late, "cancelled": [r["id"] for r in cancel],
                                     "kept": [r["id"] for r in keep]}
                    mark(R_LATE, True, f"{len(cancel)} cancelled, {len(keep)} kept")
                except OrchestratorError as e:
                    problems.append(f"late runs: {_reason(e)}")
                    mark(R_LATE, False, _reason(e))
        # 3. the legacy fence, last but one
        if status.get(R_LFENCE) != DONE and status.get(R_LEGACY) == DONE:
            fence.lift(engine, snap.id)
            rq_error = None
            if _rq_unsuspend_due(snap):
                try:
                    from legacy.rq.side import unsuspend_workers

                    unsuspend_workers(ws)
                    res.changes["rq_workers_resumed"] = True
                except (OrchestratorError, InputError) as e:
                    rq_error = f"RQ workers still suspended: {_reason(e)}"
                    problems.append(rq_error)
            mark(R_LFENCE, rq_error is None, rq_error)
        # 4. the work pool, last
        if status.get(R_POOL) != DONE and status.get(R_LATE) == DONE and status.get(R_PREFECT) == DONE:
            pools = pf.get("pools") or {}
            if not pools:
                mark(R_POOL, True, "no pool fence")
            elif http is None and not snap.progress.get("pool_fence_at"):
                mark(R_POOL, True, "the pool was never fenced")
            elif http is None:
                mark(R_POOL, False, "Prefect API not reachable")
            else:
                journal.mark(R_POOL, RUNNING)
                try:
                    for p, st in pools.items():
                        wq = {q["name"]: bool(q.get("is_paused")) for q in http.work_queues(p)}
                        for q, was in st["queues"].items():
                            if q in wq and wq[q] != was:
                                http.set_queue_paused(p, q, was)
                        if bool(http.work_pool(p).get("is_paused")) != st["paused"]:
                            http.set_pool_paused(p, st["paused"])
                    mark(R_POOL, True, ", ".join(f"{p}: {'paused' if s['paused'] else 'active'}" for p, s in pools.items()))
                except OrchestratorError as e:
                    problems.append(f"work pool: {_reason(e)}")
                    mark(R_POOL, False, _reason(e))
        if all(status.get(s) == DONE for s in (R_PREFECT, R_LEGACY, R_LATE, R_LFENCE, R_POOL)):
            snap.status = RESUMED
            snap.progress["resumed_at"] = iso(utcnow())
            snap.body["resume"] = {"late_runs": late, **res.as_dict()}
            _save(engine, snap)
            mark(R_DONE, True)
    if http is not None:
        http.close()
    res.problems = problems
    audit.record(engine, "resume", target=snap.id, reason=snap.reason,
                 detail={"snapshot": snap.id, "late_runs": late, "changes": res.changes,
                         "late": {k: len(v) if isinstance(v, list) else v for k, v in res.late_runs.items()},
                         "problems": problems[:20]})
    return res


def _restore_legacy(ws, legacy: dict | None, out: dict) -> None:
    """Jobs and batch flags back to the snapshot, one transaction each side (legacy.apscheduler.bulk):
    a job active before the pause resumes at its next correct fire time from now."""
    from legacy.apscheduler.bulk import restore_jobs, set_batch_flags

    out.update(errors=[], notes=[], changes={"jobs_resumed": 0, "jobs_repaused": 0, "batch_flags_restored": 0})
    if not legacy:
        return
    try:
        jobs, flags, notes = _legacy_changes(ws, legacy)
    except Exception as e:  # noqa: BLE001
        out["errors"].append(f"legacy side not read: {_reason(e)}")
        return
    out["notes"] += notes
    try:
        resumed, repaused, problems = restore_jobs(ws.settings, dict(jobs))
        out["changes"]["jobs_resumed"], out["changes"]["jobs_repaused"] = resumed, repaused
        out["errors"] += problems
    except Exception as e:  # noqa: BLE001 - collected; resume is re-runnable
        out["errors"].append(f"APScheduler jobs: {_reason(e)}")
    try:
        out["changes"]["batch_flags_restored"] = set_batch_flags(ws, dict(flags))
    except Exception as e:  # noqa: BLE001
        out["errors"].append(f"batch flags: {_reason(e)}")
    if legacy.get("rq"):
        if legacy["rq"].get("error"):
            return  # the pause never read (so never held) the RQ side
        try:
            from legacy.rq.side import set_holds

            holds, rq_notes = _rq_changes(ws, legacy)
            out["notes"] += rq_notes
            out["changes"]["rq_holds_lifted"] = set_holds(ws, {i: h for i, h in holds if not h})
            out["changes"]["rq_holds_kept"] = sum(1 for h in legacy["rq"]["holds"].values() if h)
        except Exception as e:  # noqa: BLE001 - collected; resume is re-runnable
            out["errors"].append(f"RQ holds: {_reason(e)}")


# -- drift: what was un-paused behind an active snapshot's back (for `cutover status`) ------

def drift(ws, snap: Snapshot, prefect_active: dict | None) -> list[dict]:
    """Items the pause paused that are running again while the snapshot is ACTIVE.

    ``prefect_active``: {(ingestion, mode): deployment scheduling?} as `cutover status` read it
    (None: the Prefect side could not be read; it is then left out)."""
    from cutover.core.state import fence

    out: list[dict] = []
    p = snap.progress
    legacy = snap.body.get("legacy") or {}
    if p.get("legacy_fence_at"):
        f = fence.read(ws.state_engine)
        if f is None or f["snapshot"] != snap.id:
            out.append({"kind": "legacy fence", "ingestion_id": None, "item": "legacy-fence",
                        "detail": "the legacy fence was lifted"})
    if p.get("legacy_durable_at") and legacy:
        now = read_legacy(ws, snap.ids)
        for iid in legacy.get("jobs", {}):
            j = now["jobs"].get(iid)
            if j is not None and not j["paused"]:
                out.append({"kind": "apscheduler job", "ingestion_id": iid, "item": iid,
                            "detail": f"APScheduler job resumed (next run {j['next_run_time']})"})
        for iid in legacy.get("batch", {}):
            if iid in now["batch"] and not now["batch"][iid]:
                out.append({"kind": "batch flag", "ingestion_id": iid, "item": iid, "detail": "batch flag cleared"})
        held = (now.get("rq") or {}).get("holds") or {}
        for iid in ((legacy.get("rq") or {}).get("holds") or {}):
            if iid in held and not held[iid]:
                out.append({"kind": "rq hold", "ingestion_id": iid, "item": iid, "detail": "RQ hold lifted"})
    deps = (snap.body.get("prefect") or {}).get("deployments")
    if p.get("prefect_durable_at") and deps and prefect_active is not None:
        for d in deps:
            if prefect_active.get((d["ingestion_id"], d["mode"] or "live")):
                out.append({"kind": "prefect deployment", "ingestion_id": d["ingestion_id"], "item": d["name"],
                            "detail": f"Prefect deployment {d['name']} un-paused"})
    if _rq_unsuspend_due(snap):
        try:
            from legacy.rq.side import workers_suspended

            if not workers_suspended(ws):
                out.append({"kind": "rq workers", "ingestion_id": None, "item": "rq:suspended",
                            "detail": "RQ workers resumed (rq resume)"})
        except (OrchestratorError, InputError):
            pass
    pools = (snap.body.get("prefect") or {}).get("pools") or {}
    if p.get("pool_fence_at") and pools and prefect_active is not None:
        try:
            from flows.http import PrefectHTTP

            with PrefectHTTP(prefect_url(ws, start=False), timeout=5.0, retries=1) as http:
                for name in pools:
                    if not http.work_pool(name).get("is_paused"):
                        out.append({"kind": "work pool", "ingestion_id": None, "item": name,
                                    "detail": f"work pool {name} un-paused"})
        except OrchestratorError:
            pass
    return out
