"""The RQ orchestrator adapter (``cutover.protocol.OrchestratorWriter``).

- ``ensure_job``: the ingestion's definition in Redis (its workflow DAG from rq.json, queue,
  schedule, workspace env, TTLs) and its kickoff in the ScheduledJobRegistry at the next fire
  time (idempotent; a held ingestion stays held and its kickoff stays in the held set);
- ``pause`` / ``resume``: the hold (``legacy.rq.store``): a persisted flag every enqueue path
  honours (the kickoff, ``trigger``, the discover step) + the kickoffs moved out of / back
  into the ScheduledJobRegistry;
- ``trigger``: enqueue a workflow run now (refused while held, batch-paused or fenced);
- ``cancel_running``: cooperative: the in-flight runs are flagged; their steps stop between
  files and publish closes the run CANCELLED (a file being ingested is finished, never cut);
- ``read_runs``: the run records of runs started by RQ (external id ``rq:...``), plus the
  workflow runs RQ knows of that have no record (still queued, failed or cancelled before
  discover created it); a RUNNING record whose jobs are all over reads as CRASHED;
- ``health``: Redis answers, a live worker listens on every workflow queue, a scheduler runs
  for the queues with scheduled workflows, workers are not suspended.
"""

from __future__ import annotations

import socket
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from cutover.core.config import job_env
from cutover.core.errors import IngestionPaused, NotFound
from cutover.core.osutil import pid_alive as _pid_alive
from cutover.core.records import runs as R
from cutover.core.records.reader import LegacyReader
from cutover.core.redact import redact_text
from cutover.core.state.audit import who
from cutover.core.state.fence import legacy_fence
from cutover.protocol import CREATED, UNCHANGED, UPDATED, Health, JobInfo, OrchestratorError
from legacy.rq.jobs import wait_for
from legacy.rq.model import RQConfig
from legacy.rq.store import ACTIVE_JOB, PENDING, SKIPPED, Definition, Store, connect, parse_iso, redis_error

if TYPE_CHECKING:  # pragma: no cover
    from cutover.core.workspace import Workspace
    from cutover.core.records.ingestions import Ingestion

UTC = timezone.utc


def _utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


class RQAdapter:
    name = "rq"
    removes_jobs = True

    def __init__(self, workspace: "Workspace", config: "RQConfig | None" = None, *, conn=None,
                 trigger_timeout: float = 3600.0):
        self.ws = workspace
        self.config = config or RQConfig.require(workspace.settings)
        self._conn = conn
        self._store: "Store | None" = None
        self.trigger_timeout = trigger_timeout

    # -- plumbing ----------------------------------------------------------------------------
    @property
    def conn(self):
        if self._conn is None:
            self._conn = connect(self.config.url)
        return self._conn

    @property
    def store(self) -> "Store":
        if self._store is None:
            self._store = Store(self.conn, self.config.key_prefix)
        return self._store

    def _call(self, fn, *args, **kwargs):
        import redis

        try:
            return fn(*args, **kwargs)
        except redis.RedisError as e:
            raise redis_error(f"Redis at {self.config.public_url}", e) from None

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001
                pass
            self._conn, self._store = None, None

    def __enter__(self) -> "RQAdapter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- definitions -------------------------------------------------------------------------
    def definition_for(self, ing: "Ingestion") -> "Definition":
        cfg = self.config
        wf = cfg.workflow(ing.id)
        env, _warnings = job_env(self.ws.settings)
        return Definition(
            ingestion_id=ing.id, queue=cfg.queue_of(wf), steps=wf.steps_dicts(), schedule=ing.schedule,
            timezone=ing.timezone, env=env,
            opts={"result_ttl": cfg.result_ttl, "failure_ttl": cfg.failure_ttl, "run_ttl": cfg.run_ttl,
                  "job_timeout": cfg.job_timeout, "misfire_s": int(self.ws.settings.misfire_grace_time)})

    def definition(self, ingestion_id: str) -> "Definition | None":
        return self._call(self.store.read_def, ingestion_id)

    def _require(self, ingestion_id: str) -> "Definition":
        d = self.definition(ingestion_id)
        if d is None:
            raise NotFound(f"ingestion {ingestion_id} has no RQ workflow definition in Redis",
                           fix=f"create it with `cutover rq sync {ingestion_id}`")
        return d

    # -- reader --------------------------------------------------------------------------------
    def list_jobs(self) -> list[JobInfo]:
        return self._call(self._list_jobs)

    def _list_jobs(self) -> list[JobInfo]:
        st = self.store
        out = []
        for iid in st.def_ids():
            d = st.read_def(iid)
            if d is None:
                continue
            held = st.is_held(iid)
            ks = [k for k in st.kickoffs(d) if not k.held]
            desc = d.describe()
            out.append(JobInfo(ingestion_id=iid, orchestrator=self.name, job_id=iid,
                               schedule=f"{desc} via RQ on queue {d.queue}" if desc else None, paused=held,
                               next_run_time=None if held or not ks else ks[0].at))
        return out

    def is_paused(self, ingestion_id: str) -> bool | None:
        """True held, False active, None: no definition."""
        def read():
            if self.store.read_def(ingestion_id) is None:
                return None
            return self.store.is_held(ingestion_id)

        return self._call(read)

    def read_ledger(self, ingestion_id: str, namespace: str, *, since: datetime | None = None):
        return LegacyReader(self.ws).read_ledger(ingestion_id, namespace, since=since)

    def read_runs(self, *, since: datetime | None = None, ingestion_id: str | None = None):
        since_u = _utc(since)
        recs = [r for r in LegacyReader(self.ws).read_runs(since=since_u, ingestion_id=ingestion_id)
                if (r.external_id or "").startswith("rq:")]
        extra = self._call(self._rq_runs, since_u, ingestion_id, {r.id: r for r in recs})
        out = [extra.get(r.id, r) for r in recs] + [r for rid, r in extra.items() if rid not in {x.id for x in recs}]
        out.sort(key=lambda r: r.started_at, reverse=True)
        return out

    def _rq_runs(self, since: datetime | None, ingestion_id: str | None, records: dict) -> dict:
        """{run id: RunRecord} for runs RQ knows of that have no record (or a RUNNING one that RQ
        says is over): synthesized from the run state and the job registries."""
        st = self.store
        ids = [ingestion_id] if ingestion_id else sorted(set(st.def_ids()) | set(self.config.workflows))
        out = {}
        for iid in ids:
            for run_id in st.run_ids(iid, since=since):
                run = st.read_run(run_id)
                if run is None or run.get("status") == SKIPPED:
                    continue
                rec = records.get(run_id)
                if rec is not None and rec.status != R.RUNNING:
                    continue
                jobs = run.get("jobs") or {}
                statuses = st.job_statuses(jobs.values())
                active = any(s in ACTIVE_JOB for s in statuses.values())
                if rec is not None:
                    if active:
                        continue
                    fresh = self.ws.runs.find(run_id)  # read before the statuses: publish may have closed it since
                    if fresh is not None and fresh.status != R.RUNNING:
                        out[run_id] = fresh
                        continue
                    bad = {j: s for j, s in statuses.items() if s in ("failed", "stopped", "canceled", None)}
                    errs = st.job_errors(bad) if bad else {}
                    why = next(iter(errs.values()), "its jobs are gone")
                    out[run_id] = _replace(rec, status=R.CRASHED,
                                           error=f"the RQ workflow ended without closing the run ({why})")
                    continue
                created = parse_iso(run.get("created_at")) or datetime.now(UTC)
                if since is not None and created < since:
                    continue
                status = run.get("status")
                if status == PENDING and active:
                    status, error = R.RUNNING, None
                elif status == "CANCELLED":
                    error = run.get("reason") or "cancelled"
                else:
                    status = R.FAILED
                    errs = st.job_errors([j for j, s in statuses.items() if s in ("failed", "stopped")])
                    error = run.get("error") or next(iter(errs.values()), None) or \
                        "the workflow ended before its run record was created (jobs lost or expired)"
                ended = parse_iso(run.get("ended_at")) if status != R.RUNNING else None
                out[run_id] = R.RunRecord(
                    id=run_id, ingestion_id=iid, orchestrator="legacy", mode="live",
                    trigger=run.get("trigger") or "scheduled", status=status, started_at=created, ended_at=ended,
                    heartbeat_at=ended or created, files_processed=0, files_failed=0, files_skipped=0,
                    records_ingested=0, bytes_read=0,
                    duration_s=(ended - created).total_seconds() if ended else None, error=error,
                    external_id=f"rq:{next(iter(jobs.values()), run_id)}", prefect_deployment_id=None, host=None,
                    pid=None)
        return out

    def workers(self) -> list[dict[str, Any]]:
        """The registered RQ workers on this Redis (``alive`` False: its process is gone on this host)."""
        def read():
            from rq import Worker

            host = socket.gethostname()
            out = []
            for w in Worker.all(connection=self.conn):
                pid = getattr(w, "pid", None)
                alive = not (w.hostname == host and pid and not _pid_alive(pid))
                out.append({"name": w.name, "queues": w.queue_names(), "state": str(w.get_state()),
                            "hostname": w.hostname, "pid": pid, "alive": alive,
                            "last_heartbeat": w.last_heartbeat.isoformat() if w.last_heartbeat else None,
                            "current_job": w.get_current_job_id()})
            return out

        return self._call(read)

    def health(self) -> Health:
        try:
            return self._call(self._health)
        except OrchestratorError as e:
            return Health(False, str(e))

    def _health(self) -> Health:
        from rq.scheduler import RQScheduler

        st = self.store
        self.conn.ping()
        defs = [d for d in (st.read_def(i) for i in st.def_ids()) if d is not None]
        queues = list(dict.fromkeys([*self.config.queues(), *(d.queue for d in defs),
                                     *(s.get("queue") for d in defs for s in d.steps if s.get("queue"))]))
        live = [w for w in self.workers() if w["alive"]]
        listening = {q for w in live for q in w["queues"]}
        problems = []
        missing = [q for q in queues if q not in listening]
        if missing:
            problems.append(f"no live worker listens on queue(s) {', '.join(missing)} "
                            f"(start one: cutover rq worker)")
        sched_queues = sorted({d.queue for d in defs if d.schedule is not None})
        no_sched = [q for q in sched_queues if not self.conn.exists(RQScheduler.get_locking_key(q))]
        if no_sched:
            problems.append(f"no RQ scheduler runs for queue(s) {', '.join(no_sched)}: scheduled workflows will not "
                            f"start (run a worker with --with-scheduler)")
        if st.suspended():
            problems.append("workers are suspended (`cutover resume --snapshot ID` after an incident pause, or "
                            "`rq resume`)")
        held = sum(1 for d in defs if st.is_held(d.ingestion_id))
        detail = (f"rq at {self.config.public_url}: {len(live)} live worker(s) on {', '.join(sorted(listening)) or '-'}; "
                  f"{len(defs)} workflow(s), {held} held")
        if problems:
            return Health(False, f"{detail}; " + "; ".join(problems))
        return Health(True, detail)

    # -- writer ------------------------------------------------------------------------------------
    def ensure_job(self, ingestion: "Ingestion") -> str:
        """Create or update the definition and its kickoff; a held ingestion stays held."""
        want = self.definition_for(ingestion)

        def run() -> str:
            st = self.store
            cur = st.read_def(ingestion.id)
            if cur is not None and cur.fingerprint() == want.fingerprint():
                return UPDATED if st.ensure_kickoff(cur) else UNCHANGED
            if cur is not None and cur.queue != want.queue:
                st.remove_kickoffs(cur)  # they live in the old queue's registry
            st.write_def(want)
            st.ensure_kickoff(want, reset=cur is None or cur.schedule != want.schedule
                              or cur.timezone != want.timezone or cur.queue != want.queue)
            return CREATED if cur is None else UPDATED

        return self._call(run)

    def remove_job(self, ingestion_id: str) -> bool:
        def run() -> bool:
            st = self.store
            d = st.read_def(ingestion_id)
            if d is None:
                return False
            st.remove_kickoffs(d)
            return st.delete_def(ingestion_id)

        return self._call(run)

    def pause(self, ingestion_id: str, *, reason: str | None = None) -> bool:
        self._require(ingestion_id)
        return self._call(self.store.hold, ingestion_id, by=who(), reason=reason)

    def resume(self, ingestion_id: str) -> bool:
        self._require(ingestion_id)
        return self._call(self.store.unhold, ingestion_id)

    def trigger(self, ingestion_id: str, *, wait: bool = False, timeout: float | None = None,
                trigger: str = "manual") -> str:
        """Enqueue a workflow run now; returns its run id (= the run record's id). With ``wait``,
        return when it has ended (its outcome: :meth:`run_state`). Refused while the ingestion is
        held, batch-paused or fenced."""
        d = self._require(ingestion_id)
        ing = self.ws.ingestions.get(ingestion_id)
        if self._call(self.store.is_held, ingestion_id):
            raise IngestionPaused(f"ingestion {ingestion_id} is held (paused) on the RQ side",
                                  fix=f"resume it with `cutover rq resume {ingestion_id}`")
        if ing.batch_paused:
            raise IngestionPaused(f"ingestion {ingestion_id} is paused on the legacy side",
                                  fix=f"resume it with `cutover legacy resume {ingestion_id}`")
        fenced = legacy_fence(self.ws, ingestion_id)
        if fenced:
            raise IngestionPaused(f"ingestion {ingestion_id} is not run: {fenced}",
                                  fix="the incident pause is still in force: see `cutover pause list`")
        run_id = self._call(self.store.enqueue_run, d, trigger=trigger)
        if wait:
            limit = self.trigger_timeout if timeout is None else timeout
            run = self._call(wait_for, self.store, run_id, timeout=limit)
            if run.get("status") in (None, "PENDING", "RUNNING"):
                raise OrchestratorError(f"workflow run {run_id} of {ingestion_id} did not end within {limit:.0f}s "
                                        f"(status {run.get('status')}; are workers running? `cutover rq status`)")
        return run_id

    def run_state(self, run_id: str) -> dict | None:
        return self._call(self.store.read_run, run_id)

    def cancel_running(self, ingestion_id: str) -> int:
        """Flag every in-flight workflow run of the ingestion; returns how many."""
        def run() -> int:
            st = self.store
            n = 0
            for run_id in st.run_ids(ingestion_id):
                r = st.read_run(run_id)
                if r is None or r.get("status") not in ("PENDING", "RUNNING") or r.get("cancel"):
                    continue
                if any(s in ACTIVE_JOB for s in st.job_statuses((r.get("jobs") or {}).values()).values()):
                    n += st.request_cancel(run_id)
            return n

        return self._call(run)

    # -- for `cutover rq runs` -------------------------------------------------------------------
    def run_rows(self, ingestion_id: str | None = None, *, since: datetime | None = None) -> list[dict]:
        """Every workflow run RQ knows of (skipped ones included), with each step's RQ status."""
        def read():
            st = self.store
            ids = [ingestion_id] if ingestion_id else sorted(set(st.def_ids()) | set(self.config.workflows))
            rows = []
            for iid in ids:
                for run_id in st.run_ids(iid, since=_utc(since)):
                    r = st.read_run(run_id)
                    if r is None:
                        continue
                    jobs = r.get("jobs") or {}
                    statuses = st.job_statuses(jobs.values())
                    rows.append({"run_id": run_id, "ingestion_id": iid, "trigger": r.get("trigger"),
                                 "status": r.get("status"), "created_at": r.get("created_at"),
                                 "ended_at": r.get("ended_at"), "reason": r.get("reason"),
                                 "error": redact_text(r["error"]) if r.get("error") else None,
                                 "steps": {n: {"job_id": j, "rq_status": statuses.get(j),
                                               "outcome": r.get(f"step:{n}")} for n, j in jobs.items()}})
            rows.sort(key=lambda x: x["created_at"] or "", reverse=True)
            return rows

        return self._call(read)


def _replace(rec, **kw):
    from dataclasses import replace

    return replace(rec, **kw)
