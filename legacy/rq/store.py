"""cutover's state in Redis next to RQ's own: workflow definitions, holds, kickoffs, run state.

Used by the client side (``legacy.rq.adapter``) and by the jobs the RQ workers run
(``legacy.rq.jobs``); imports ``redis``/``rq`` (never at CLI start-up: the callers import
this module lazily).

Keys (``P`` = the config's ``key_prefix``, default ``cutover``)::

    P:rq:defs              set      ingestion ids that have a definition
    P:rq:def:<id>          hash     the "job": queue, schedule, timezone, steps (the DAG), env, opts
    P:rq:hold:<id>         string   JSON {at, by, reason}: present = enqueues of <id> are HELD (paused)
    P:rq:held:<id>         zset     kickoff job id -> its scheduled time (epoch s), moved here by the hold
    P:rq:runs:<id>         zset     workflow run id -> enqueue time (the run index; trimmed by run_ttl)
    P:rq:run:<run id>      hash     one workflow run: status, trigger, step job ids, pending files,
                                    per-step outcomes, first error, cancel flag (expires after run_ttl)

RQ's own keys hold the jobs: ``rq:job:<id>``, the queues, and the registries (Scheduled,
Started, Finished, Failed, Deferred, Canceled) per queue.

The schedule: RQ keeps a *kickoff* job of each scheduled ingestion in the queue's
ScheduledJobRegistry (``enqueue_at`` semantics), id ``<ns>-start-<ingestion>-<epoch>``; a worker
started with ``--with-scheduler`` moves it to the queue when due; it runs
:func:`legacy.rq.jobs.kickoff`, which first places the NEXT kickoff (the schedule's next fire
time after this one, from now: missed fire times are skipped, not caught up) and then enqueues
the workflow run. Fire times come from the ingestion's schedule through the same APScheduler 3
trigger the rest of cutover uses, so ``cutover schedules verify`` proves the Prefect schedule
against what RQ really fires.

The hold (pause) is atomic with the kickoff's placement: a kickoff is placed in the scheduled
registry or, when the hold key is set, in the held zset, in one WATCHed transaction on the hold
key; ``hold`` sets the key first and then moves the kickoffs out of the registry, ``unhold``
deletes it first and then moves them back -- so a kickoff placed concurrently always ends where
the hold says.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from cutover.core.extras import require, require_installed
from cutover.core.redact import redact_text, redact_url
from cutover.core.schedule.triggers import build_trigger, describe, schedule_timezone
from cutover.protocol import OrchestratorError
from legacy.rq.model import workflow_from_steps

log = logging.getLogger("cutover.rq")
UTC = timezone.utc
KICKOFF_FUNC = "legacy.rq.jobs.kickoff"
STEP_FUNC = "legacy.rq.jobs.run_step"
# run statuses in P:rq:run:<id> before the run record exists / when it never will
PENDING, SKIPPED = "PENDING", "SKIPPED"
ACTIVE_JOB = ("queued", "started", "deferred", "scheduled", "ready_to_enqueue", "rate_limited", "created")
RUN_INDEX_MAX = 5000


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


def parse_iso(s: Any) -> datetime | None:
    if not s:
        return None
    if isinstance(s, bytes):
        s = s.decode()
    dt = datetime.fromisoformat(str(s).replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _s(v: Any) -> str | None:
    if v is None:
        return None
    return v.decode() if isinstance(v, bytes) else str(v)


def redis_error(what: str, e: BaseException) -> OrchestratorError:
    first = redact_text(str(e)).splitlines()
    return OrchestratorError(f"{what}: Redis unreachable ({type(e).__name__}: {first[0] if first else ''})")


def connect(url: str, *, timeout: float = 5.0):
    """A Redis client for ``url`` (RQ needs bytes responses: no decode_responses). Raises
    OrchestratorError (URL password redacted) when the server does not answer; MissingExtra
    (exit 2: install cutover[rq]) when rq or redis is not installed."""
    require_installed("rq", what="the RQ legacy side")
    redis = require("redis", what="the RQ legacy side")

    try:
        conn = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=max(timeout, 30.0),
                                    health_check_interval=30)
        conn.ping()
    except (redis.RedisError, OSError, ValueError) as e:
        raise redis_error(f"Redis at {redact_url(url)}", e) from None
    return conn


@dataclass
class Definition:
    """What an RQ "job" of cutover is: one ingestion's workflow, its queue and its schedule."""

    ingestion_id: str
    queue: str
    steps: list[dict]
    schedule: dict | None = None
    timezone: str = "UTC"
    env: dict[str, str] = field(default_factory=dict)  # the workspace of the worker-side jobs
    opts: dict[str, int] = field(default_factory=dict)  # result_ttl, failure_ttl, run_ttl, job_timeout, misfire_s
    updated_at: str | None = None

    def fingerprint(self) -> str:
        return json.dumps([self.queue, self.steps, self.schedule, self.timezone, self.env, self.opts], sort_keys=True)

    def to_hash(self) -> dict[str, str]:
        return {"ingestion_id": self.ingestion_id, "queue": self.queue, "steps": json.dumps(self.steps),
                "schedule": json.dumps(self.schedule), "timezone": self.timezone, "env": json.dumps(self.env),
                "opts": json.dumps(self.opts), "updated_at": self.updated_at or iso(utcnow())}

    @classmethod
    def from_hash(cls, h: dict) -> "Definition":
        g = {(_s(k)): _s(v) for k, v in h.items()}
        return cls(ingestion_id=g["ingestion_id"], queue=g["queue"], steps=json.loads(g["steps"]),
                   schedule=json.loads(g.get("schedule") or "null"), timezone=g.get("timezone") or "UTC",
                   env=json.loads(g.get("env") or "{}"), opts=json.loads(g.get("opts") or "{}"),
                   updated_at=g.get("updated_at"))

    def opt(self, name: str, default: int) -> int:
        return int(self.opts.get(name, default))

    def workflow(self):
        return workflow_from_steps(self.ingestion_id, self.steps, where=f"RQ definition of {self.ingestion_id}")

    def trigger(self):
        """The APScheduler 3 trigger of the schedule (None: manual)."""
        if self.schedule is None:
            return None
        return build_trigger(self.schedule, self.timezone)

    def describe(self) -> str | None:
        if self.schedule is None:
            return None
        return f"{describe(self.schedule)} ({schedule_timezone(self.schedule, self.timezone)})"


@dataclass
class Kickoff:
    job_id: str
    at: datetime
    held: bool
    queue: str


class Store:
    def __init__(self, conn, prefix: str = "cutover"):
        self.conn = conn
        self.prefix = prefix
        self.ns = re.sub(r"[^A-Za-z0-9_-]", "-", prefix)
        self.base = f"{prefix}:rq"

    # -- keys ------------------------------------------------------------------------------
    def k_defs(self) -> str:
        return f"{self.base}:defs"

    def k_def(self, iid: str) -> str:
        return f"{self.base}:def:{iid}"

    def k_hold(self, iid: str) -> str:
        return f"{self.base}:hold:{iid}"

    def k_held(self, iid: str) -> str:
        return f"{self.base}:held:{iid}"

    def k_runs(self, iid: str) -> str:
        return f"{self.base}:runs:{iid}"

    def k_run(self, run_id: str) -> str:
        return f"{self.base}:run:{run_id}"

    def kickoff_id(self, iid: str, at: datetime) -> str:
        return f"{self.ns}-start-{iid}-{int(at.timestamp())}"

    def kickoff_re(self, iid: str) -> re.Pattern:
        return re.compile(rf"^{re.escape(self.ns)}-start-{re.escape(iid)}-(\d+)$")

    def step_job_id(self, run_id: str, step: str) -> str:
        return f"{self.ns}-{run_id}-{step}"

    def queue(self, name: str):
        from rq import Queue

        return Queue(name, connection=self.conn)

    # -- definitions -----------------------------------------------------------------------
    def read_def(self, iid: str) -> Definition | None:
        h = self.conn.hgetall(self.k_def(iid))
        return Definition.from_hash(h) if h else None

    def def_ids(self) -> list[str]:
        return sorted(_s(x) for x in self.conn.smembers(self.k_defs()))

    def write_def(self, d: Definition) -> None:
        with self.conn.pipeline() as p:
            p.delete(self.k_def(d.ingestion_id))
            p.hset(self.k_def(d.ingestion_id), mapping=d.to_hash())
            p.sadd(self.k_defs(), d.ingestion_id)
            p.execute()

    def delete_def(self, iid: str) -> bool:
        with self.conn.pipeline() as p:
            p.delete(self.k_def(iid))
            p.srem(self.k_defs(), iid)
            p.delete(self.k_hold(iid))
            res = p.execute()
        return bool(res[0])

    # -- the hold ----------------------------------------------------------------------------
    def hold_info(self, iid: str) -> dict | None:
        raw = self.conn.get(self.k_hold(iid))
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return {"at": None, "by": None, "reason": _s(raw)}

    def is_held(self, iid: str) -> bool:
        return bool(self.conn.exists(self.k_hold(iid)))

    def held_map(self, ids: Iterable[str]) -> dict[str, bool]:
        ids = list(ids)
        if not ids:
            return {}
        with self.conn.pipeline(transaction=False) as p:
            for iid in ids:
                p.exists(self.k_hold(iid))
            return {iid: bool(v) for iid, v in zip(ids, p.execute())}

    def hold(self, iid: str, *, by: str | None = None, reason: str | None = None) -> bool:
        """Set the hold (persisted in Redis), then move the ingestion's kickoffs out of the
        scheduled registry. True if anything changed."""
        body = json.dumps({"at": iso(utcnow()), "by": by, "reason": reason})
        changed = bool(self.conn.set(self.k_hold(iid), body, nx=True))
        d = self.read_def(iid)
        moved = self._move_to_held(iid, d.queue) if d is not None else 0
        return changed or moved > 0

    def unhold(self, iid: str) -> bool:
        """Delete the hold, then put the held kickoffs back: each at its own time when that is
        still ahead, else (its fire time passed while held) at the schedule's next fire time from
        now. A scheduled ingestion left without a kickoff gets one. True if anything changed."""
        changed = bool(self.conn.delete(self.k_hold(iid)))
        d = self.read_def(iid)
        if d is None:
            return changed
        moved = self._restore_held(d)
        placed = self.ensure_kickoff(d) is not None
        return changed or moved > 0 or placed

    def _registry(self, queue_name: str):
        from rq.registry import ScheduledJobRegistry

        return ScheduledJobRegistry(queue=self.queue(queue_name))

    def _move_to_held(self, iid: str, queue_name: str) -> int:
        from redis.exceptions import WatchError

        reg = self._registry(queue_name)
        pat = self.kickoff_re(iid)
        moved = 0
        with self.conn.pipeline() as p:
            while True:
                try:
                    p.watch(reg.key)
                    mine = [(_s(j), s) for j, s in p.zrange(reg.key, 0, -1, withscores=True) if pat.match(_s(j))]
                    p.multi()
                    for jid, score in mine:
                        p.zrem(reg.key, jid)
                        p.zadd(self.k_held(iid), {jid: score})
                    p.execute()
                    moved = len(mine)
                    break
                except WatchError:  # the RQ scheduler (or another client) changed the registry: read again
                    continue
        return moved

    def _restore_held(self, d: Definition) -> int:
        from redis.exceptions import WatchError
        from rq.job import Job

        iid = d.ingestion_id
        reg = self._registry(d.queue)
        now = time.time()
        n = 0
        held = [(_s(j), s) for j, s in self.conn.zrange(self.k_held(iid), 0, -1, withscores=True)]
        for jid, score in held:
            with self.conn.pipeline() as p:
                try:
                    p.watch(self.k_hold(iid), self.k_held(iid))
                    if p.exists(self.k_hold(iid)):  # held again meanwhile: leave it
                        p.unwatch()
                        return n
                    exists = Job.exists(jid, connection=self.conn)
                    p.multi()
                    p.zrem(self.k_held(iid), jid)
                    if exists and score > now:
                        p.zadd(reg.key, {jid: int(score)})  # exactly where it was
                    elif exists:
                        p.delete(Job.key_for(jid))  # its time passed while held: replaced below
                    p.execute()
                    n += 1
                except WatchError:
                    continue
        return n

    # -- kickoffs (the schedule) -------------------------------------------------------------
    def kickoffs(self, d: Definition) -> list[Kickoff]:
        pat = self.kickoff_re(d.ingestion_id)
        reg = self._registry(d.queue)
        out = [Kickoff(_s(j), datetime.fromtimestamp(s, UTC), False, d.queue)
               for j, s in self.conn.zrange(reg.key, 0, -1, withscores=True) if pat.match(_s(j))]
        out += [Kickoff(_s(j), datetime.fromtimestamp(s, UTC), True, d.queue)
                for j, s in self.conn.zrange(self.k_held(d.ingestion_id), 0, -1, withscores=True)]
        return sorted(out, key=lambda k: k.at)

    def next_fire(self, d: Definition, after: datetime | None = None) -> datetime | None:
        """The schedule's first fire time strictly after ``after`` and not before now (whole seconds)."""
        trig = d.trigger()
        if trig is None:
            return None
        now = utcnow()
        start = now if after is None else max(now, after + timedelta(seconds=1))
        start = start.replace(microsecond=0) + (timedelta(seconds=1) if start.microsecond else timedelta(0))
        nxt = trig.get_next_fire_time(None, start)
        if nxt is None:
            return None
        nxt = nxt.astimezone(UTC)
        if after is not None and nxt <= after:  # a date trigger keeps answering its (past) date
            return None
        return nxt

    def place_kickoff(self, d: Definition, at: datetime) -> str:
        """Create the kickoff job for ``at`` (idempotent by its id) in the scheduled registry, or in
        the held zset when the hold is set -- decided in one transaction WATCHing the hold key."""
        from redis.exceptions import WatchError
        from rq.job import Job, JobStatus

        jid = self.kickoff_id(d.ingestion_id, at)
        q = self.queue(d.queue)
        with self.conn.pipeline() as p:
            while True:
                try:
                    p.watch(self.k_hold(d.ingestion_id))
                    if Job.exists(jid, connection=self.conn):
                        p.unwatch()
                        return jid
                    held = bool(p.exists(self.k_hold(d.ingestion_id)))
                    job = q.create_job(KICKOFF_FUNC, kwargs={"prefix": self.prefix, "ingestion_id": d.ingestion_id,
                                                             "fire_ts": int(at.timestamp())},
                                       job_id=jid, result_ttl=d.opt("result_ttl", 7 * 86400),
                                       failure_ttl=d.opt("failure_ttl", 30 * 86400), timeout=300,
                                       description=f"cutover: start the workflow of {d.ingestion_id} ({iso(at)})",
                                       meta={"cutover": self.prefix, "ingestion_id": d.ingestion_id,
                                             "kind": "kickoff", "fire_time": iso(at)})
                    p.multi()
                    if held:
                        job.set_status(JobStatus.SCHEDULED, pipeline=p)
                        job.save(pipeline=p)
                        p.zadd(self.k_held(d.ingestion_id), {jid: int(at.timestamp())})
                    else:
                        q.schedule_job(job, at, pipeline=p)
                    p.execute()
                    return jid
                except WatchError:
                    continue

    def remove_kickoffs(self, d: Definition, keep: str | None = None) -> int:
        from rq.job import Job

        n = 0
        reg = self._registry(d.queue)
        for k in self.kickoffs(d):
            if k.job_id == keep:
                continue
            with self.conn.pipeline() as p:
                p.zrem(self.k_held(d.ingestion_id) if k.held else reg.key, k.job_id)
                p.delete(Job.key_for(k.job_id))
                p.execute()
            n += 1
        return n

    def ensure_kickoff(self, d: Definition, *, reset: bool = False) -> str | None:
        """The schedule's kickoff (held or not, as the hold says); none for a manual definition.

        ``reset`` (the schedule changed): exactly one, at the next fire time from now. Otherwise
        the kickoffs there are kept as they are (a due kickoff waiting for the scheduler is not
        replaced: that would skip its run) and one is created only when there is none.
        Returns the id of a kickoff it created, else None."""
        have = self.kickoffs(d)
        if not reset and have:
            return None
        nxt = self.next_fire(d)
        if nxt is None:
            self.remove_kickoffs(d)
            return None
        want = self.kickoff_id(d.ingestion_id, nxt)
        if [k.job_id for k in have] == [want]:
            return None
        jid = self.place_kickoff(d, nxt)
        self.remove_kickoffs(d, keep=jid)
        return jid

    # -- workflow runs -----------------------------------------------------------------------
    def enqueue_run(self, d: Definition, *, trigger: str, run_id: str | None = None) -> str:
        """Enqueue one workflow run: its state hash, then every step as an RQ job (``depends_on``
        with ``allow_failure``: a failed step does not strand the ones after it; they see the
        failure and publish closes the run FAILED), all in ONE Redis transaction, so a worker
        never sees a partial DAG. Returns the run id (= the run record's id)."""
        from rq.job import Dependency, JobStatus

        wf = d.workflow()
        run_id = run_id or uuid.uuid4().hex
        run_ttl = d.opt("run_ttl", 30 * 86400)
        now = utcnow()
        job_ids = {s.name: self.step_job_id(run_id, s.name) for s in wf.steps}
        jobs = []
        for s in wf.order():
            q = self.queue(s.queue or d.queue)
            deps = [job_ids[x] for x in s.depends_on]
            job = q.create_job(
                STEP_FUNC, kwargs={"prefix": self.prefix, "run_id": run_id, "step": s.name},
                job_id=job_ids[s.name], timeout=s.timeout or d.opt("job_timeout", 3600),
                result_ttl=d.opt("result_ttl", 7 * 86400), failure_ttl=d.opt("failure_ttl", 30 * 86400),
                ttl=run_ttl, depends_on=Dependency(jobs=deps, allow_failure=True) if deps else None,
                status=JobStatus.DEFERRED if deps else JobStatus.QUEUED,
                description=f"cutover: {d.ingestion_id} {s.kind} {s.name} (run {run_id[:12]})",
                meta={"cutover": self.prefix, "ingestion_id": d.ingestion_id, "run_id": run_id, "step": s.name,
                      "kind": s.kind})
            jobs.append((q, job, bool(deps)))
        state = {"ingestion_id": d.ingestion_id, "trigger": trigger, "status": PENDING, "created_at": iso(now),
                 "queue": d.queue, "workflow": json.dumps(wf.steps_dicts()), "jobs": json.dumps(job_ids),
                 "env": json.dumps(d.env), "opts": json.dumps(d.opts)}
        with self.conn.pipeline() as p:  # MULTI ... EXEC
            p.hset(self.k_run(run_id), mapping=state)
            p.expire(self.k_run(run_id), run_ttl)
            p.zadd(self.k_runs(d.ingestion_id), {run_id: now.timestamp()})
            p.zremrangebyscore(self.k_runs(d.ingestion_id), 0, now.timestamp() - run_ttl)
            p.zremrangebyrank(self.k_runs(d.ingestion_id), 0, -RUN_INDEX_MAX - 1)
            p.expire(self.k_runs(d.ingestion_id), run_ttl)
            for q, job, deferred in jobs:
                p.sadd(q.redis_queues_keys, q.key)
                if deferred:
                    job.register_dependency(pipeline=p)
                    q._persist_job(job, p, status=JobStatus.DEFERRED)
                else:
                    q._enqueue_job(job, pipeline=p)
            p.execute()
        return run_id

    def read_run(self, run_id: str) -> dict[str, Any] | None:
        h = self.conn.hgetall(self.k_run(run_id))
        if not h:
            return None
        out: dict[str, Any] = {_s(k): _s(v) for k, v in h.items()}
        for k in ("workflow", "jobs", "env", "opts", "files"):
            if out.get(k):
                out[k] = json.loads(out[k])
        out["run_id"] = run_id
        return out

    def run_ids(self, iid: str, *, since: datetime | None = None) -> list[str]:
        lo = since.timestamp() if since is not None else "-inf"
        return [_s(x) for x in self.conn.zrangebyscore(self.k_runs(iid), lo, "+inf")]

    def set_run(self, run_id: str, **fields: Any) -> None:
        self.conn.hset(self.k_run(run_id), mapping={k: (json.dumps(v) if isinstance(v, (list, dict)) else str(v))
                                                    for k, v in fields.items() if v is not None})

    def mark_step(self, run_id: str, step: str, outcome: str, error: str | None = None) -> None:
        with self.conn.pipeline() as p:
            p.hset(self.k_run(run_id), f"step:{step}", outcome)
            if error:
                p.hsetnx(self.k_run(run_id), "error", error)
            p.execute()

    def incr(self, run_id: str, name: str, n: int = 1) -> None:
        if n:
            self.conn.hincrby(self.k_run(run_id), name, n)

    def request_cancel(self, run_id: str) -> bool:
        return bool(self.conn.hsetnx(self.k_run(run_id), "cancel", iso(utcnow())))

    def job_statuses(self, job_ids: Iterable[str]) -> dict[str, str | None]:
        """RQ's status of each job (None: gone, e.g. expired)."""
        ids = list(job_ids)
        if not ids:
            return {}
        from rq.job import Job

        with self.conn.pipeline(transaction=False) as p:
            for jid in ids:
                p.hget(Job.key_for(jid), "status")
            return {jid: _s(st) for jid, st in zip(ids, p.execute())}

    def job_errors(self, job_ids: Iterable[str]) -> dict[str, str]:
        """The last line of the exception of each failed job (redacted)."""
        from rq.job import Job

        out = {}
        for job in Job.fetch_many(list(job_ids), connection=self.conn):
            if job is None or job.get_status(refresh=False) not in ("failed", "stopped"):
                continue
            text = ""
            try:
                res = job.latest_result()
                text = (getattr(res, "exc_string", None) or "") if res is not None else ""
            except Exception:  # noqa: BLE001 - results may have expired
                text = ""
            lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
            out[job.id] = redact_text(lines[-1].strip() if lines else f"job {job.get_status(refresh=False)}")[:300]
        return out

    # -- workers -------------------------------------------------------------------------------
    def suspended(self) -> bool:
        from rq.suspension import is_suspended

        return bool(is_suspended(self.conn))

    def suspend(self) -> bool:
        from rq.suspension import WORKERS_SUSPENDED

        return bool(self.conn.set(WORKERS_SUSPENDED, 1, nx=True))

    def unsuspend(self) -> bool:
        from rq.suspension import resume

        return bool(resume(self.conn))
