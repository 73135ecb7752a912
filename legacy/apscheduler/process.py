"""The legacy scheduler process (``cutover legacy scheduler``): APScheduler's BackgroundScheduler
over a compare-and-swap job store, so a change made by another process is never overwritten.
"""

from __future__ import annotations

import logging
import pickle
import signal
import threading
from typing import TYPE_CHECKING, Any, Callable

from sqlalchemy import delete, select, update

from cutover.core.db import make_engine
from cutover.core.redact import redact_text, redact_url
from cutover.core.workspace import Workspace
from cutover.protocol import UNCHANGED
from legacy.apscheduler import events
from legacy.apscheduler.jobstore import UTC, timestamp
from legacy.apscheduler.scheduler import JobSync, use_settings

if TYPE_CHECKING:  # pragma: no cover
    from cutover.core.config import Settings

log = logging.getLogger("cutover.scheduler")


# -- the scheduler process ------------------------------------------------------------------


def make_store(engine, tablename: str):
    from apscheduler.jobstores.base import JobLookupError
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    class CasJobStore(SQLAlchemyJobStore):
        """SQLAlchemyJobStore whose writes never overwrite another process's change.

        Each write is conditional on the row still holding the state this
        process read; if another process changed it meanwhile (pause, resume,
        new trigger), that change wins. Jobs that cannot be restored are paused
        (next_run_time NULL) instead of deleted.
        """

        def __init__(self, **kw):
            super().__init__(**kw)
            self._seen: dict[str, bytes] = {}
            self._seen_lock = threading.Lock()

        def _reconstitute_job(self, job_state):
            job_state = bytes(job_state)
            job = super()._reconstitute_job(job_state)
            with self._seen_lock:
                self._seen[job.id] = job_state
            return job

        def _get_jobs(self, *conditions):
            from sqlalchemy import and_

            jobs, bad = [], []
            q = select(self.jobs_t.c.id, self.jobs_t.c.job_state).order_by(self.jobs_t.c.next_run_time)
            if conditions:
                q = q.where(and_(*conditions))
            with self.engine.begin() as conn:
                rows = conn.execute(q).all()
            for row in rows:
                try:
                    jobs.append(self._reconstitute_job(row.job_state))
                except BaseException as e:  # noqa: BLE001 - APScheduler would delete it; we pause it
                    self._logger.error('Unable to restore job "%s" (%s) -- pausing it', row.id, redact_text(str(e)))
                    bad.append(row.id)
            if bad:
                with self.engine.begin() as conn:
                    conn.execute(update(self.jobs_t).where(self.jobs_t.c.id.in_(bad)).values(next_run_time=None))
            return jobs

        def update_job(self, job):
            blob = pickle.dumps(job.__getstate__(), self.pickle_protocol)
            with self._seen_lock:
                old = self._seen.get(job.id)
            stmt = update(self.jobs_t).where(self.jobs_t.c.id == job.id)
            if old is not None:
                stmt = stmt.where(self.jobs_t.c.job_state == old)
            with self.engine.begin() as conn:
                res = conn.execute(stmt.values(next_run_time=timestamp(job.next_run_time), job_state=blob))
                if res.rowcount == 0:
                    exists = conn.execute(select(self.jobs_t.c.id).where(self.jobs_t.c.id == job.id)).first()
                    if exists is None:
                        raise JobLookupError(job.id)
                    log.info("job %s was changed by another process meanwhile; keeping that change", job.id)
                    with self._seen_lock:
                        self._seen.pop(job.id, None)
                    return
            with self._seen_lock:
                self._seen[job.id] = blob

        def remove_job(self, job_id):
            with self._seen_lock:
                old = self._seen.pop(job_id, None)
            stmt = delete(self.jobs_t).where(self.jobs_t.c.id == job_id)
            if old is not None:
                stmt = stmt.where(self.jobs_t.c.job_state == old)
            with self.engine.begin() as conn:
                res = conn.execute(stmt)
                if res.rowcount == 0:
                    exists = conn.execute(select(self.jobs_t.c.id).where(self.jobs_t.c.id == job_id)).first()
                    if exists is None:
                        raise JobLookupError(job_id)
                    log.info("job %s was changed by another process meanwhile; not removing it", job_id)

    return CasJobStore(engine=engine, tablename=tablename)


def build_scheduler(settings: "Settings", *, engine=None):
    """A BackgroundScheduler on the job store (not started): pool of ``scheduler_max_workers``
    for ingestions, plus an internal poll job that wakes the scheduler every poll interval
    so changes made by other processes are seen within it."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.jobstores.memory import MemoryJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    store = make_store(engine or make_engine(settings.jobstore_url), settings.jobstore_table)
    sched = BackgroundScheduler(
        jobstores={"default": store, "internal": MemoryJobStore()},
        executors={"default": ThreadPoolExecutor(max_workers=settings.scheduler_max_workers),
                   "internal": ThreadPoolExecutor(max_workers=1)},
        job_defaults={"coalesce": True, "max_instances": 1,
                      "misfire_grace_time": max(1, int(round(settings.misfire_grace_time)))},
        timezone=UTC,
        daemon=True,
    )
    poll = max(0.05, float(settings.scheduler_poll_interval))
    sched.add_job(sched.wakeup, IntervalTrigger(seconds=poll, timezone=UTC), id="cutover-poll", name="poll job store",
                  jobstore="internal", executor="internal", coalesce=True, max_instances=1, misfire_grace_time=None)
    return sched


def run_foreground(settings: "Settings", *, stop_event: threading.Event | None = None,
                   started: threading.Event | None = None, echo: Callable[[str], None] | None = None) -> dict:
    """Run the legacy scheduler until ``stop_event`` is set, SIGTERM or SIGINT.

    Syncs the jobs from the ingestions first (never un-pausing a job). On stop,
    waits for the running jobs to end. Returns counts of what happened.
    """
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED

    say = echo or (lambda text: log.info("%s", text))
    stop_event = stop_event or threading.Event()
    ws = Workspace(settings)
    js = JobSync(settings)
    js.prepare()
    problems: list[str] = []
    actions = js.sync(ws.ingestions.list(), problems=problems)
    for action, iid in actions:
        if action != UNCHANGED:
            say(f"{action}: job {iid}")
    for p in problems:  # one bad row must not keep every other job from running
        say(f"problem: {p}")
    stats = {"executed": 0, "errors": 0, "missed": 0, "skipped_running": 0}

    def _record(kind, ev, error):  # kept for parity: APScheduler itself keeps no history
        try:
            events.record_event(settings, kind, job_id=ev.job_id, scheduled_at=ev.scheduled_run_time, error=error)
        except OSError as e:
            log.warning("could not record the %s event of job %s: %s", kind, ev.job_id, e)

    def on_event(ev):
        if ev.job_id == "cutover-poll":
            return
        if ev.code == EVENT_JOB_EXECUTED:
            stats["executed"] += 1
            say(f"ran {ev.job_id}: run {ev.retval}" if ev.retval else f"ran {ev.job_id}: skipped (paused or gone)")
        elif ev.code == EVENT_JOB_ERROR:
            stats["errors"] += 1
            why = redact_text(str(ev.exception)).splitlines()[0] if str(ev.exception) else type(ev.exception).__name__
            say(f"job {ev.job_id} failed: {why}")
            _record(events.ERROR, ev, f"{type(ev.exception).__name__}: {why}")
        elif ev.code == EVENT_JOB_MISSED:
            stats["missed"] += 1
            say(f"job {ev.job_id} missed its run time {ev.scheduled_run_time.isoformat()} (beyond misfire_grace_time)")
            _record(events.MISSED, ev, None)
        elif ev.code == EVENT_JOB_MAX_INSTANCES:
            stats["skipped_running"] += 1

    sched = build_scheduler(settings)
    sched.add_listener(on_event, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)

    previous: dict[int, Any] = {}

    def on_signal(signum, _frame):
        say(f"received {signal.Signals(signum).name}: stopping after the running jobs end (again to force)")
        for s, h in previous.items():  # a second signal gets the default behaviour
            signal.signal(s, h)
        stop_event.set()

    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        for s in (signal.SIGTERM, signal.SIGINT):
            previous[s] = signal.signal(s, on_signal)
    prev_settings = use_settings(settings)
    try:
        sched.start()
        n = len(js.jobs())
        say(f"scheduler running: {n} job(s) in {redact_url(settings.jobstore_url)} table {settings.jobstore_table}, "
            f"{settings.scheduler_max_workers} worker(s), polling every {settings.scheduler_poll_interval:g}s")
        if started is not None:
            started.set()
        while not stop_event.wait(0.5):
            pass
    finally:
        if sched.running:
            sched.shutdown(wait=True)
        use_settings(prev_settings)
        if in_main:
            for s, h in previous.items():
                signal.signal(s, h)
    say(f"scheduler stopped: {stats['executed']} run(s), {stats['errors']} error(s), {stats['missed']} missed")
    return stats
