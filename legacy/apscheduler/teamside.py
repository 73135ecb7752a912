"""The generic APScheduler side: a team's job store, its callable jobs, their runs (issue #15).

See ``legacy.apscheduler.teamstore`` for the import. Here:

- :class:`TeamStore`: the team's job table edited in place, in APScheduler 3's own format (the
  pickled state and the ``next_run_time`` column, NULL = paused), row by row in write transactions;
- :func:`record_runs`: the listeners a team adds to its scheduler so its runs land in cutover's
  legacy run table;
- :class:`TeamAPSchedulerAdapter`: ``cutover.protocol.OrchestratorWriter`` over the callable jobs
  imported from one store (the registry's ``GENERIC_SIDES["apscheduler"]``).

Pause keeps the job's ``next_run_time`` in the job's ``legacy.paused_next_run_time`` (the inventory)
before it writes NULL; resume writes that exact instant back while it is still ahead (else the
next fire time from now, as ``Scheduler.resume_job`` does). A job paused in the source before the
import stays paused: it has no recorded instant, and nothing resumes it but an explicit resume.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import traceback
import uuid
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, delete, insert, select, update

from cutover.core.db import write_tx
from cutover.core.errors import InputError, NotFound
from cutover.core.jobenv import RECORDER
from cutover.core.records.jobruns import FAILED, MISSED, SUCCESS, JobRunStore, effective_status, redact_output
from cutover.core.records.jobs import values_of
from cutover.core.redact import redact_url
from cutover.core.schedule import triggers as schedules
from cutover.protocol import CREATED, UNCHANGED, UPDATED, Health, JobInfo, OrchestratorError
from legacy.apscheduler.jobstore import (UTC, describe_trigger, dump_job_state, job_row, jobs_table,
                                         table_exists, timestamp, trigger_fingerprint, utcnow)
from legacy.apscheduler.teamstore import ORCHESTRATOR, RUN_PREFIX

if TYPE_CHECKING:  # pragma: no cover
    from cutover.core.records.jobs import Job

log = logging.getLogger("cutover.teamstore")


class TeamStore:
    """A team's APScheduler 3 SQLAlchemyJobStore table, edited in place."""

    def __init__(self, url: str, table: str = "apscheduler_jobs"):
        self.url = url
        self.table = jobs_table(table)
        self._engine = None

    @property
    def engine(self):
        if self._engine is None:
            self._engine = create_engine(self.url)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def exists(self) -> bool:
        return table_exists(self.engine, self.url, self.table)

    def rows(self) -> list:
        if not self.exists():
            return []
        with self.engine.connect() as conn:
            return [job_row(r) for r in conn.execute(
                select(self.table.c.id, self.table.c.next_run_time, self.table.c.job_state).order_by(self.table.c.id))]

    def row(self, store_id: str, conn=None):
        q = select(self.table.c.id, self.table.c.next_run_time, self.table.c.job_state).where(self.table.c.id == store_id)
        if conn is None:
            if not self.exists():
                return None
            with self.engine.connect() as c:
                r = c.execute(q).first()
        else:
            if self.engine.dialect.name != "sqlite":
                q = q.with_for_update()
            r = conn.execute(q).first()
        return job_row(r) if r is not None else None

    def _write(self, conn, state: dict, *, new: bool) -> None:
        values = {"next_run_time": timestamp(state["next_run_time"]), "job_state": dump_job_state(state)}
        if new:
            conn.execute(insert(self.table).values(id=state["id"], **values))
        else:
            conn.execute(update(self.table).where(self.table.c.id == state["id"]).values(**values))

    def set_next_run_time(self, store_id: str, nrt: datetime | None) -> bool:
        """Write ``nrt`` (None: paused) into the row and its state; True if anything changed."""
        with write_tx(self.engine) as conn:
            row = self.row(store_id, conn)
            if row is None:
                raise NotFound(f"job {store_id} is not in the job store {redact_url(self.url)}",
                               fix="import the store again (`cutover legacy import --jobs`)")
            before = row.next_run_time
            after = nrt.timestamp() if nrt is not None else None
            if before == after:
                return False
            if row.state is None:  # unreadable state: the column alone pauses it for APScheduler
                if nrt is not None:
                    raise InputError(f"job {store_id} cannot be read ({row.error})", fix="re-create it in the source")
                conn.execute(update(self.table).where(self.table.c.id == store_id).values(next_run_time=None))
                return True
            self._write(conn, {**row.state, "next_run_time": nrt}, new=False)
            return True

    def upsert_state(self, state: dict) -> str:
        """Create or update a job from a full state; created|updated|unchanged. A paused job stays paused."""
        with write_tx(self.engine) as conn:
            row = self.row(state["id"], conn)
            if row is None:
                self._write(conn, state, new=True)
                return CREATED
            cur = row.state or {}
            same = all(cur.get(k) == state.get(k) for k in ("func", "args", "kwargs", "name", "misfire_grace_time",
                                                            "coalesce", "max_instances", "executor"))
            same = same and cur.get("trigger") is not None and \
                trigger_fingerprint(cur["trigger"]) == trigger_fingerprint(state["trigger"])
            if same:
                return UNCHANGED
            new = dict(state)
            if row.paused:
                new["next_run_time"] = None
            self._write(conn, new, new=False)
            return UPDATED

    def delete(self, store_id: str) -> bool:
        with write_tx(self.engine) as conn:
            return bool(conn.execute(delete(self.table).where(self.table.c.id == store_id)).rowcount)


def job_state(job: "Job", *, store_id: str | None = None, trigger=None, next_run_time=...) -> dict:
    """The APScheduler 3 job state of a callable job (what ``Job.__getstate__`` writes)."""
    args, kwargs = job.call_args()
    trig = trigger if trigger is not None else schedules.build_trigger(job.schedule, job.timezone)
    lg = job.legacy
    nrt = trig.get_next_fire_time(None, utcnow()) if next_run_time is ... else next_run_time
    return {"version": 1, "id": store_id or lg.get("job_id") or job.id, "func": job.target, "trigger": trig,
            "executor": lg.get("executor") or "default", "args": tuple(args), "kwargs": dict(kwargs),
            "name": lg.get("name") or job.name, "misfire_grace_time": lg.get("misfire_grace_time", 1),
            "coalesce": lg.get("coalesce", True), "max_instances": lg.get("max_instances", 1),
            "next_run_time": None if job.paused and next_run_time is ... else nrt}


# -- run records from the team's scheduler -----------------------------------------------------


def _run_id(store_id: str, when: datetime | None) -> str:
    key = f"{store_id}|{when.astimezone(UTC).isoformat() if when else ''}"
    return hashlib.sha1(key.encode()).hexdigest()[:32]


class RunRecorder:
    """APScheduler listeners writing the legacy run table (see :func:`record_runs`)."""

    def __init__(self, ws):
        self.ws = ws
        self.store = JobRunStore(ws.autoloader_engine)
        self._map: dict[str, str] = {}
        self._lock = threading.Lock()

    def job_id(self, store_id: str) -> str | None:
        """The cutover job id of a store job (a one-off run ``cutover-run~<job>~<hex>``: its job)."""
        if store_id.startswith(RUN_PREFIX):
            return store_id[len(RUN_PREFIX):].rpartition("~")[0] or None
        with self._lock:
            if store_id not in self._map:
                self._map = {j.legacy.get("job_id"): j.id for j in self.ws.jobs.list()
                             if j.legacy.get("orchestrator") == ORCHESTRATOR}
            return self._map.get(store_id)

    def __call__(self, event) -> None:
        try:
            self._handle(event)
        except Exception:  # noqa: BLE001 - never break the team's scheduler
            log.exception("cutover could not record an APScheduler event for job %s", getattr(event, "job_id", "?"))

    def _handle(self, event) -> None:
        from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED, EVENT_JOB_SUBMITTED

        jid = self.job_id(event.job_id)
        if jid is None:
            return
        manual = event.job_id.startswith(RUN_PREFIX)
        trigger = "manual" if manual else "scheduled"
        if event.code == EVENT_JOB_SUBMITTED:
            from sqlalchemy.exc import IntegrityError

            for when in event.scheduled_run_times:
                rid = _run_id(event.job_id, when)
                if self.store.runs.find(rid) is None:
                    try:
                        self.store.start(jid, trigger=trigger, external_id=event.job_id, run_id=rid, command=None)
                    except IntegrityError:  # a short job's end was dispatched before its submission
                        pass
            return
        when = event.scheduled_run_time
        rid = _run_id(event.job_id, when)
        now = utcnow()
        if event.code == EVENT_JOB_MISSED:
            self.store.record(jid, MISSED, started_at=when, ended_at=when, trigger=trigger, external_id=event.job_id,
                              run_id=rid, error="missed: the scheduler was late by more than misfire_grace_time")
            return
        if event.code == EVENT_JOB_EXECUTED:
            status, error = SUCCESS, None
            out = redact_output(repr(event.retval)[-4096:])
        elif event.code == EVENT_JOB_ERROR:
            status = FAILED
            last = f"{type(event.exception).__name__}: {event.exception}"
            tb = ("Traceback (most recent call last):\n" + event.traceback + last) if event.traceback \
                else "".join(traceback.format_exception(event.exception))
            error = redact_output(last)[:2000]
            out = redact_output(tb)[-4096:]
        else:
            return
        if self.store.runs.find(rid) is None:  # the listener came after the submit
            self.store.record(jid, status, started_at=now, ended_at=now, trigger=trigger, external_id=event.job_id,
                              run_id=rid, error=error, output_tail=out)
        else:
            self.store.finish(rid, status, output_tail=out, error=error)


def record_runs(scheduler, *, home: str | None = None, ws=None) -> RunRecorder:
    """Add cutover's run-recording listeners to a team's APScheduler 3 scheduler (before or after
    ``start()``): every run of an imported job becomes a run record (RUNNING at submission, then
    SUCCESS with the return value's repr, FAILED with the traceback, MISSED), secrets masked."""
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED, EVENT_JOB_SUBMITTED

    if ws is None:
        import os

        from cutover.core.config import load_settings
        from cutover.core.workspace import Workspace

        env = dict(os.environ)
        if home:
            env["CUTOVER_HOME"] = home
        ws = Workspace(load_settings(env))
    rec = RunRecorder(ws)
    scheduler.add_listener(rec, EVENT_JOB_SUBMITTED | EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
    import os

    os.environ[RECORDER] = "apscheduler"  # cutover.sdk in this process waits for the run records
    return rec


# -- the generic APScheduler side ---------------------------------------------------------------


class TeamAPSchedulerAdapter:
    """``OrchestratorWriter`` over the callable jobs of one team job store (ids: cutover job ids)."""

    name = "apscheduler-jobs"

    def __init__(self, ws, url: str, table: str = "apscheduler_jobs"):
        self.ws = ws
        self.url = url
        self.table_name = table
        self.store = TeamStore(url, table)
        self.runs = JobRunStore(ws.autoloader_engine)

    def _mine(self) -> list["Job"]:
        return [j for j in self.ws.jobs.list() if j.legacy.get("orchestrator") == ORCHESTRATOR
                and j.legacy.get("jobstore") == self.url and j.legacy.get("table", "apscheduler_jobs") == self.table_name]

    def _job(self, jid: str) -> "Job":
        for j in self._mine():
            if j.id == jid:
                return j
        raise NotFound(f"no callable job {jid!r} from the job store {redact_url(self.url)}",
                       fix="`cutover ingestion list` shows the jobs")

    def _call(self, fn, *a, **kw):
        from sqlalchemy.exc import OperationalError

        try:
            return fn(*a, **kw)
        except OperationalError as e:
            raise OrchestratorError(f"job store {redact_url(self.url)} unreachable "
                                    f"({redact_output(str(getattr(e, 'orig', e))).splitlines()[0]})") from None

    def list_jobs(self) -> list[JobInfo]:
        rows = {r.id: r for r in self._call(self.store.rows)}
        out = []
        for j in self._mine():
            r = rows.get(j.legacy.get("job_id") or j.id)
            if r is None or r.state is None:
                continue
            out.append(JobInfo(ingestion_id=j.id, orchestrator=ORCHESTRATOR, job_id=r.id,
                               schedule=describe_trigger(r.state.get("trigger")), paused=r.paused,
                               next_run_time=r.state.get("next_run_time") if not r.paused else None))
        return out

    def read_runs(self, *, since: datetime | None = None, ingestion_id: str | None = None):
        ids = [ingestion_id] if ingestion_id else [j.id for j in self._mine()]
        out = []
        for jr in self.runs.list(since=since, job_ids=ids):
            out.append(replace(jr.run, status=effective_status(jr.run)))
        return out

    def read_ledger(self, ingestion_id: str, namespace: str, *, since: datetime | None = None) -> list:
        return []  # a callable job writes no cutover ledger (unless it uses cutover.sdk: read through the ledger)

    def health(self) -> Health:
        try:
            n = len(self._call(self.store.rows))
        except OrchestratorError as e:
            return Health(False, str(e))
        return Health(True, f"job store {redact_url(self.url)}: {n} job(s)")

    def ensure_job(self, job: "Job") -> str:
        """Create or update the store job of a callable job; a paused job stays paused."""
        if job.kind != "callable":
            raise InputError(f"job {job.id} is a {job.kind} job", fix="the APScheduler side runs callable jobs")
        cur = self.ws.jobs.find(job.id)
        keep = {k: v for k, v in (cur.legacy if cur else {}).items() if k.startswith("paused_")}
        job = replace(job, legacy={**job.legacy, "orchestrator": ORCHESTRATOR, "jobstore": self.url,
                                   "table": self.table_name, "job_id": job.legacy.get("job_id") or job.id, **keep})
        if cur is None or values_of(cur) != values_of(job):
            self.ws.jobs.upsert([job], replace_existing=True, taken={i.id for i in self.ws.ingestions.list()})
        state = job_state(job)
        if job.paused:
            state["next_run_time"] = None
        return self._call(self.store.upsert_state, state)

    def remove_job(self, jid: str) -> bool:
        job = self._job(jid)
        return self._call(self.store.delete, job.legacy.get("job_id") or jid)

    def pause(self, jid: str) -> bool:
        job = self._job(jid)
        sid = job.legacy.get("job_id") or jid
        row = self._call(self.store.row, sid)
        if row is None or row.paused:
            return False
        self._set_legacy(job, paused_next_run_time=row.next_run_time)  # recorded first: a crash keeps it
        return self._call(self.store.set_next_run_time, sid, None)

    def resume(self, jid: str) -> bool:
        job = self._job(jid)
        sid = job.legacy.get("job_id") or jid
        row = self._call(self.store.row, sid)
        if row is None or not row.paused:
            return False
        if row.state is None:
            raise InputError(f"job {sid} cannot be read ({row.error})", fix="re-create it in the source")
        recorded = job.legacy.get("paused_next_run_time")
        now = utcnow()
        if recorded is not None and recorded > now.timestamp():
            nrt = datetime.fromtimestamp(recorded, UTC).astimezone(row.state["trigger"].timezone) \
                if hasattr(row.state["trigger"], "timezone") else datetime.fromtimestamp(recorded, UTC)
        else:
            nrt = row.state["trigger"].get_next_fire_time(None, now)
        if nrt is None:  # a date trigger in the past: nothing to resume to
            return False
        changed = self._call(self.store.set_next_run_time, sid, nrt)
        self._set_legacy(job, paused_next_run_time=None)
        return changed

    def _set_legacy(self, job: "Job", **values: Any) -> None:
        legacy = {k: v for k, v in {**job.legacy, **values}.items() if not (k in values and v is None)}
        self.ws.jobs.upsert([replace(job, legacy=legacy)], replace_existing=True)

    def trigger(self, jid: str) -> str:
        """A one-off run now: a date-trigger job ``cutover-run~<job>~<hex>`` the team's scheduler runs
        (and drops); its run record carries that id as external id."""
        from apscheduler.triggers.date import DateTrigger

        job = self._job(jid)
        one_off = f"{RUN_PREFIX}{jid}~{uuid.uuid4().hex[:12]}"
        now = utcnow()
        state = job_state(job, store_id=one_off, trigger=DateTrigger(run_date=now, timezone=UTC), next_run_time=now)
        state["name"] = f"run {jid} now (cutover)"
        state["misfire_grace_time"] = 3600
        self._call(self.store.upsert_state, state)
        return one_off

    def cancel_running(self, jid: str) -> int:
        """APScheduler cannot stop a running job; pending one-off runs of the job are removed."""
        self._job(jid)
        n = 0
        for r in self._call(self.store.rows):
            if r.id.startswith(f"{RUN_PREFIX}{jid}~"):
                n += int(self._call(self.store.delete, r.id))
        return n
