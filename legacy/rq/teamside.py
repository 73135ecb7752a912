"""The generic RQ side: the callable jobs of a team's RQ schedules (issue #15).

``cutover.protocol.OrchestratorWriter`` over the callable jobs imported from one Redis
(``legacy.rq.teamjobs``), registered as ``cutover.registry.GENERIC_SIDES["rq"]``:

- a job lives where the team's scheduler keeps it: an entry of a sorted set scored by its next time
  (RQ's ``rq:scheduled:<queue>``, rq-scheduler's ``rq:scheduler:scheduled_jobs``); a job cutover
  creates (:meth:`ensure_job`) is written in rq-scheduler's layout (a job hash with the cron string
  or interval in its ``meta``), which a running ``rqscheduler`` maintains;
- pause moves the entry, with its score, to ``cutover:teamhold:<set>`` (so no scheduler sees it);
  resume puts it back with the exact score while that is ahead (else the next time from now);
- a run now enqueues the job's function on its queue as ``cutover-run-<hex12>-<job>``; its run record
  comes from RQ's registries (:func:`legacy.rq.teamjobs.record_registry_runs`).

RQ cron jobs (``rq:cron_scheduler:*``) live in the team's cron config file: they are listed, but
pausing them is the config's business (refused with that reason).
"""

from __future__ import annotations

import pickle
import uuid
import zlib
from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from cutover.core.errors import InputError, NotFound
from cutover.core.records.jobruns import JobRunStore, effective_status
from cutover.core.redact import redact_url
from cutover.core.schedule.triggers import build_trigger
from cutover.protocol import CREATED, UNCHANGED, UPDATED, Health, JobInfo, OrchestratorError
from legacy.rq.teamjobs import ORCHESTRATOR, record_registry_runs

if TYPE_CHECKING:  # pragma: no cover
    from cutover.core.records.jobs import Job

UTC = timezone.utc
HOLD = "cutover:teamhold:"
RUN_PREFIX = "cutover-run-"  # + 12 hex + "-" + the job id (RQ ids: letters, digits, _ and -)


class RQTeamAdapter:
    name = "rq-jobs"

    def __init__(self, ws, redis_url: str, *, prefix: str = "rq", queue: str = "default"):
        import redis

        self.ws = ws
        self.url = redis_url
        self.shown = redact_url(redis_url)
        self.prefix = prefix
        self.queue = queue
        self.conn = redis.Redis.from_url(redis_url)
        self.runs = JobRunStore(ws.autoloader_engine)

    def close(self) -> None:
        self.conn.close()

    def _call(self, fn, *a, **kw):
        from redis.exceptions import RedisError

        try:
            return fn(*a, **kw)
        except RedisError as e:
            raise OrchestratorError(f"Redis {self.shown} unreachable ({type(e).__name__})") from None

    def _mine(self) -> dict[str, "Job"]:
        return {j.id: j for j in self.ws.jobs.list() if j.kind == "callable"
                and j.legacy.get("orchestrator") == ORCHESTRATOR and j.legacy.get("redis") == self.shown}

    def _job(self, jid: str) -> "Job":
        job = self._mine().get(jid)
        if job is None:
            raise NotFound(f"no RQ callable job {jid!r} from {self.shown}", fix="`cutover ingestion list` shows the jobs")
        return job

    def _place(self, job: "Job") -> tuple[str | None, str | None, float | None, bool]:
        """(sorted set, member, score, paused) of the job's entry."""
        key, member = job.legacy.get("key"), job.legacy.get("rq_job_id")
        if not key or not member or job.legacy.get("source") == "rq-cron":
            return key, member, None, False
        score = self._call(self.conn.zscore, key, member)
        if score is not None:
            return key, member, score, False
        held = self._call(self.conn.zscore, HOLD + key, member)
        return key, member, held, held is not None

    def list_jobs(self) -> list[JobInfo]:
        out = []
        for j in self._mine().values():
            key, member, score, paused = self._place(j)
            if score is None:
                continue
            out.append(JobInfo(ingestion_id=j.id, orchestrator="rq", job_id=member, schedule=_describe(j),
                               paused=paused, next_run_time=None if paused else datetime.fromtimestamp(score, UTC)))
        return out

    def read_runs(self, *, since: datetime | None = None, ingestion_id: str | None = None):
        self._call(record_registry_runs, self.conn, self.ws, prefix=self.prefix)
        ids = [ingestion_id] if ingestion_id else list(self._mine())
        return [replace(r.run, status=effective_status(r.run)) for r in self.runs.list(since=since, job_ids=ids)]

    def read_ledger(self, ingestion_id: str, namespace: str, *, since: datetime | None = None) -> list:
        return []

    def health(self) -> Health:
        try:
            self._call(self.conn.ping)
        except OrchestratorError as e:
            return Health(False, str(e))
        return Health(True, f"Redis {self.shown}")

    def _next(self, job: "Job") -> datetime | None:
        trig = build_trigger(job.schedule, job.timezone)
        return trig.get_next_fire_time(None, datetime.now(UTC)) if trig is not None else None

    def ensure_job(self, job: "Job") -> str:
        """Create or update the job in rq-scheduler's layout (a paused job stays held)."""
        if job.kind != "callable":
            raise InputError(f"job {job.id} is a {job.kind} job", fix="the RQ side runs callable jobs")
        cur = self._mine().get(job.id)
        key = f"{self.prefix}:scheduler:scheduled_jobs"
        legacy = {**(cur.legacy if cur else {}), **job.legacy, "orchestrator": ORCHESTRATOR, "redis": self.shown,
                  "key_prefix": self.prefix, "source": (cur.legacy.get("source") if cur else None) or "rq-scheduler",
                  "key": (cur.legacy.get("key") if cur else None) or key,
                  "rq_job_id": (cur.legacy.get("rq_job_id") if cur else None) or f"cutover-{job.id}",
                  "queue": job.legacy.get("queue") or (cur.legacy.get("queue") if cur else None) or self.queue,
                  "func_name": job.target.replace(":", ".")}
        new = replace(job, legacy=legacy)
        meta = _meta(new)
        h = f"{self.prefix}:job:{legacy['rq_job_id']}"
        args, kwargs = new.call_args()
        data = zlib.compress(pickle.dumps((legacy["func_name"], None, tuple(args), kwargs), pickle.HIGHEST_PROTOCOL))
        existing = self._call(self.conn.hgetall, h)
        same = existing and existing.get(b"data") and zlib.decompress(existing[b"data"]) == zlib.decompress(data) \
            and existing.get(b"meta") == pickle.dumps(meta)
        _, member, score, paused = self._place(new)
        nxt = self._next(new)
        if same and score is not None and (paused or nxt is None or abs(score - nxt.timestamp()) < 1):
            result = UNCHANGED
        else:
            self._call(self.conn.hset, h, mapping={"data": data, "origin": legacy["queue"], "meta": pickle.dumps(meta),
                                                   "description": f"{legacy['func_name']}(...)", "status": "scheduled"})
            if nxt is not None:
                self._call(self.conn.zadd, HOLD + legacy["key"] if paused else legacy["key"], {member: nxt.timestamp()})
            result = CREATED if score is None and not existing else UPDATED
        if cur is None or cur.legacy != legacy or cur.schedule != new.schedule:
            self.ws.jobs.upsert([new], replace_existing=True, taken={i.id for i in self.ws.ingestions.list()})
        return result

    def remove_job(self, jid: str) -> bool:
        job = self._job(jid)
        key, member, score, _ = self._place(job)
        if score is None:
            return False
        self._call(self.conn.zrem, key, member)
        self._call(self.conn.zrem, HOLD + key, member)
        return True

    def pause(self, jid: str) -> bool:
        job = self._job(jid)
        if job.legacy.get("source") == "rq-cron":
            raise InputError(f"job {jid} is an RQ cron job", fix="comment it out in the team's RQ cron config")
        key, member, score, paused = self._place(job)
        if score is None or paused:
            return False
        pipe = self.conn.pipeline()  # MULTI/EXEC: never in both sets, never in neither
        pipe.zadd(HOLD + key, {member: score}).zrem(key, member)
        self._call(pipe.execute)
        return True

    def resume(self, jid: str) -> bool:
        job = self._job(jid)
        key, member, score, paused = self._place(job)
        if not paused:
            return False
        now = datetime.now(UTC).timestamp()
        if score <= now:
            nxt = self._next(job)
            score = nxt.timestamp() if nxt is not None else score
        pipe = self.conn.pipeline()
        pipe.zadd(key, {member: score}).zrem(HOLD + key, member)
        self._call(pipe.execute)
        return True

    def trigger(self, jid: str) -> str:
        """Enqueue the job's function now on its queue; returns the RQ job id."""
        from rq import Queue

        job = self._job(jid)
        args, kwargs = job.call_args()
        rid = f"{RUN_PREFIX}{uuid.uuid4().hex[:12]}-{jid}"
        q = Queue(job.legacy.get("queue") or self.queue, connection=self.conn)
        self._call(q.enqueue_call, job.legacy.get("func_name") or job.target.replace(":", "."), args=tuple(args),
                   kwargs=kwargs, job_id=rid)
        return rid

    def cancel_running(self, jid: str) -> int:
        """Queued one-off runs of the job are cancelled (RQ stops a running job only through its worker)."""
        from rq import Queue

        job = self._job(jid)
        q = Queue(job.legacy.get("queue") or self.queue, connection=self.conn)
        n = 0
        for rid in self._call(q.get_job_ids):
            if rid.startswith(RUN_PREFIX) and rid[len(RUN_PREFIX) + 13:] == jid:
                self._call(q.remove, rid)
                n += 1
        return n


def _meta(job: "Job") -> dict:
    spec = job.schedule or {}
    if "crontab" in spec:
        return {"cron_string": spec["crontab"]}
    if spec.get("trigger") == "interval":
        secs = sum(int(spec.get(k, 0)) * m for k, m in (("weeks", 604800), ("days", 86400), ("hours", 3600),
                                                         ("minutes", 60), ("seconds", 1)))
        return {"interval": secs}
    return {"cutover_schedule": spec}


def _describe(job: "Job") -> str:
    from cutover.core.schedule.triggers import describe

    return f"{describe(job.schedule)} ({job.schedule_timezone})"
