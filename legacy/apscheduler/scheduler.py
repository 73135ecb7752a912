"""The legacy APScheduler 3 scheduler: one job per scheduled ingestion.

Jobs live in an APScheduler ``SQLAlchemyJobStore`` table (``apscheduler_jobs`` in
the autoloader DB by default, created by its alembic tree). Each job calls
``legacy.apscheduler.scheduler:run_scheduled`` (a textual reference, so the pickled job
never pickles code) with ``{"ingestion_id": id}``.

Everything that edits the store from the outside (``JobSync``: the CLI, the
adapters, `legacy import`) works on the table directly, row by row, inside a
write transaction (SQLite ``BEGIN IMMEDIATE``, PostgreSQL ``SELECT .. FOR
UPDATE``), exactly in APScheduler's own format: a pickled job state dict and
the ``next_run_time`` column, NULL meaning paused. Nothing here ever resolves a
func reference or calls ``get_all_jobs()`` (which deletes the jobs it cannot
restore).

Modules: ``jobstore`` (the table, its rows, pickled job states, triggers compared), this module
(``JobSync`` and the job function), ``process`` (the scheduler process), ``importer`` (`legacy import`).

The scheduler process (``legacy.apscheduler.process.run_foreground``) uses a job store whose writes are
compare-and-swap on the state it read: a pause, resume or trigger change made
by another process while the scheduler was handling that job is never
overwritten, and ``run_scheduled`` re-checks the pause before it starts, so a
job paused in that instant does not run.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Iterable

from sqlalchemy import delete, insert, select, update

from cutover.core.config import load_settings
from cutover.core.db import ensure_schema, get_engine, sqlite_path, write_tx
from cutover.core.errors import InputError
from cutover.core.redact import redact_text
from cutover.core.schedule.triggers import build_trigger
from cutover.core.state.fence import legacy_fence
from cutover.core.workflow import managed_ids
from cutover.core.workspace import Workspace
from cutover.protocol import CREATED, UNCHANGED, UPDATED, JobInfo
from legacy.apscheduler.jobstore import (FUNC_REF, ONE_OFF_PREFIX, ORCHESTRATOR, REMOVED, UTC, JobRow, describe_trigger,
                                         dump_job_state, job_row, jobs_table, table_exists, timestamp,
                                         trigger_fingerprint, utcnow)

if TYPE_CHECKING:  # pragma: no cover
    from cutover.core.config import Settings
    from cutover.core.records.ingestions import Ingestion

log = logging.getLogger("cutover.scheduler")

# Set by the scheduler process (``use_settings``) so that jobs run with the settings it was started with.
_active_settings: "Settings | None" = None


def use_settings(settings: "Settings | None") -> "Settings | None":
    """Jobs run in this process use ``settings`` (``None``: the environment's); returns the previous ones."""
    global _active_settings
    prev, _active_settings = _active_settings, settings
    return prev


# -- JobSync ------------------------------------------------------------------------------


class JobSync:
    """One APScheduler job per scheduled ingestion, kept in the SQLAlchemyJobStore table."""

    def __init__(self, settings: "Settings", *, engine=None):
        self.settings = settings
        self.url = settings.jobstore_url
        self.table = jobs_table(settings.jobstore_table)
        self._engine = engine
        self._prepared = False

    # -- plumbing ------------------------------------------------------------------------
    @property
    def engine(self):
        if self._engine is None:
            self._engine = get_engine(self.url)
        return self._engine

    def exists(self) -> bool:
        """Whether the job store table exists (never creates the DB or the table)."""
        return table_exists(self.engine, self.url, self.table)

    def prepare(self) -> None:
        """Make sure the schema is there (alembic for our DBs; the bare table for another store)."""
        if self._prepared:
            return
        ensure_schema(self.settings)
        if not self.exists():
            path = sqlite_path(self.url)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            self.table.create(self.engine, checkfirst=True)
        self._prepared = True

    def _tx(self):
        return write_tx(self.engine)

    def _select(self, conn, job_id: str | None = None, *, lock: bool = False) -> list[JobRow]:
        q = select(self.table.c.id, self.table.c.next_run_time, self.table.c.job_state).order_by(self.table.c.id)
        if job_id is not None:
            q = q.where(self.table.c.id == job_id)
        if lock and self.engine.dialect.name != "sqlite":
            q = q.with_for_update()
        return [job_row(r) for r in conn.execute(q)]

    def _one(self, conn, job_id: str, *, lock: bool = False) -> JobRow | None:
        rows = self._select(conn, job_id, lock=lock)
        return rows[0] if rows else None

    def _rows(self) -> list[JobRow]:
        if not self.exists():
            return []
        with self.engine.connect() as conn:
            return self._select(conn)

    def _write(self, conn, state: dict, *, new: bool) -> None:
        values = {"next_run_time": timestamp(state["next_run_time"]), "job_state": dump_job_state(state)}
        if new:
            conn.execute(insert(self.table).values(id=state["id"], **values))
        else:
            conn.execute(update(self.table).where(self.table.c.id == state["id"]).values(**values))

    # -- what a job should look like ----------------------------------------------------
    def _attrs(self, ing: "Ingestion") -> dict:
        return {
            "func": FUNC_REF,
            "args": (),
            "kwargs": {"ingestion_id": ing.id},
            "executor": "default",
            "name": f"ingest {ing.id}",
            "misfire_grace_time": max(1, int(round(self.settings.misfire_grace_time))),
            "coalesce": True,
            "max_instances": 1,
        }

    def _trigger(self, ing: "Ingestion"):
        trig = build_trigger(ing.schedule, ing.timezone)
        if trig is None:
            raise InputError(f"ingestion {ing.id} has no schedule, so it has no APScheduler job",
                             fix="give it a schedule, or run it with `cutover legacy run`")
        return trig

    def _plan(self, row: JobRow | None, ing: "Ingestion", now: datetime, *,
              paused: bool = False) -> tuple[str, dict | None]:
        """(created|updated|unchanged, the state to write or None)."""
        trig = self._trigger(ing)
        attrs = self._attrs(ing)
        if row is None:
            return CREATED, {"version": 1, "id": ing.id, **attrs, "trigger": trig,
                             "next_run_time": None if paused else trig.get_next_fire_time(None, now)}
        if row.state is None:
            raise InputError(f"APScheduler job {ing.id} cannot be read ({redact_text(str(row.error))})",
                             fix=f"delete row {ing.id!r} from table {self.table.name}, then run `cutover legacy sync`")
        if row.state.get("func") != FUNC_REF:
            raise InputError(f"APScheduler job {ing.id} belongs to another application (it calls {row.state.get('func')})",
                             fix="point [scheduler] jobstore_table at a table of cutover's own")
        cur = row.state
        ignore_start = bool(ing.schedule and ing.schedule.get("trigger") == "interval"
                            and not ing.schedule.get("start_date"))
        try:
            same_trigger = (trigger_fingerprint(cur.get("trigger"), ignore_interval_start=ignore_start)
                            == trigger_fingerprint(trig, ignore_interval_start=ignore_start))
        except Exception:  # noqa: BLE001 - an unreadable trigger is replaced
            same_trigger = False
        same_attrs = all(cur.get(k) == v for k, v in attrs.items() if k != "args") and tuple(cur.get("args") or ()) == ()
        if same_trigger and same_attrs and (row.paused or not paused):
            return UNCHANGED, None
        state = {**cur, **attrs, "version": 1, "id": ing.id}
        if not same_trigger:
            state["trigger"] = trig
            # a paused job stays paused: never un-pause behind the operator's back
            state["next_run_time"] = None if row.paused else trig.get_next_fire_time(None, now)
        if row.paused or paused:
            state["next_run_time"] = None
        return UPDATED, state

    # -- the operations ------------------------------------------------------------------
    def ensure(self, ing: "Ingestion", *, paused: bool = False) -> str:
        """Create or update the job of a scheduled ingestion; idempotent; never un-pauses.

        ``paused``: create it paused (or pause it in the same transaction).
        """
        self.prepare()
        with self._tx() as conn:
            row = self._one(conn, ing.id, lock=True)
            action, state = self._plan(row, ing, utcnow(), paused=paused)
            if state is not None:
                self._write(conn, state, new=row is None)
        if action != UNCHANGED:
            log.info("%s APScheduler job %s (%s)", action, ing.id, describe_trigger(state["trigger"]))
        return action

    def remove(self, iid: str) -> bool:
        """Remove the job of an ingestion (and its pending one-off runs); no error if absent."""
        if not self.exists():
            return False
        with self._tx() as conn:
            rows = self._select(conn, lock=True)
            doomed = [r.id for r in rows if r.id == iid or (r.is_one_off and r.kwargs.get("ingestion_id") == iid)]
            if doomed:
                conn.execute(delete(self.table).where(self.table.c.id.in_(doomed)))
        return iid in doomed

    def pause(self, iid: str) -> bool:
        """Persistently pause (``next_run_time`` NULL); True if it changed anything, False if absent or paused."""
        if not self.exists():
            return False
        with self._tx() as conn:
            row = self._one(conn, iid, lock=True)
            if row is None or row.paused:
                return False
            if row.state is None:  # cannot rewrite the state; the column alone pauses it for APScheduler
                conn.execute(update(self.table).where(self.table.c.id == iid).values(next_run_time=None))
                return True
            self._write(conn, {**row.state, "next_run_time": None}, new=False)
        log.info("paused APScheduler job %s", iid)
        return True

    def resume(self, iid: str) -> bool:
        """Resume at the next correct fire time from now; True if it changed anything.

        A job whose trigger will never fire again is removed, as APScheduler's
        ``resume_job`` does.
        """
        if not self.exists():
            return False
        with self._tx() as conn:
            row = self._one(conn, iid, lock=True)
            if row is None or not row.paused:
                return False
            if row.state is None:
                raise InputError(f"APScheduler job {iid} cannot be read ({row.error})", fix="re-create it with `cutover legacy sync`")
            nxt = row.state["trigger"].get_next_fire_time(None, utcnow())
            if nxt is None:
                conn.execute(delete(self.table).where(self.table.c.id == iid))
                log.info("APScheduler job %s will never fire again: removed", iid)
                return True
            self._write(conn, {**row.state, "next_run_time": nxt}, new=False)
        log.info("resumed APScheduler job %s, next run %s", iid, nxt.isoformat())
        return True

    def run_once(self, iid: str) -> str:
        """Queue a one-off run of an ingestion now (a date-trigger job the scheduler runs and drops).

        The ingestion's own job and its phase stay untouched. Returns the one-off job id,
        which becomes the run record's ``external_id``.
        """
        from apscheduler.triggers.date import DateTrigger

        self.prepare()
        job_id = f"{ONE_OFF_PREFIX}{uuid.uuid4().hex}"
        now = utcnow()
        state = {"version": 1, "id": job_id, "func": FUNC_REF, "args": (),
                 "kwargs": {"ingestion_id": iid, "trigger": "manual", "job_id": job_id},
                 "executor": "default", "name": f"run {iid} now",
                 "misfire_grace_time": max(1, int(round(self.settings.misfire_grace_time))),
                 "coalesce": True, "max_instances": 1,
                 "trigger": DateTrigger(run_date=now, timezone=UTC), "next_run_time": now}
        with self._tx() as conn:
            self._write(conn, state, new=True)
        return job_id

    def is_paused(self, iid: str) -> bool | None:
        """True/False for a job of that ingestion; None when it has none."""
        if not self.exists():
            return None
        with self.engine.connect() as conn:
            row = conn.execute(select(self.table.c.next_run_time).where(self.table.c.id == iid)).first()
        return None if row is None else row.next_run_time is None

    def jobs(self) -> list[JobInfo]:
        """Our per-ingestion jobs (one-off runs and other applications' jobs left out)."""
        out = []
        for r in self._rows():
            if not r.is_schedule_job:
                continue
            trig = r.state.get("trigger")
            nrt = r.state.get("next_run_time") if not r.paused else None
            out.append(JobInfo(ingestion_id=r.id, orchestrator=ORCHESTRATOR, job_id=r.id,
                               schedule=describe_trigger(trig), paused=r.paused, next_run_time=nrt))
        return out

    def pending_one_offs(self, iid: str | None = None) -> list[str]:
        return [r.id for r in self._rows() if r.is_one_off and (iid is None or r.kwargs.get("ingestion_id") == iid)]

    def foreign_jobs(self) -> list[str]:
        """Ids of rows in the table that are not cutover's (or cannot be read)."""
        return [r.id for r in self._rows() if not r.ours]

    def sync(self, ingestions: Iterable["Ingestion"], dry_run: bool = False, *,
             problems: list[str] | None = None) -> list[tuple[str, str]]:
        """Make the store hold exactly one job per scheduled ingestion.

        Returns [(created|updated|unchanged|removed, id)]. ``dry_run`` computes the
        same list and changes nothing, not even the table's existence. With a
        ``problems`` list, a job that cannot be written (another application's
        job under that id, an unreadable row) is reported there instead of
        stopping the sync.
        """
        # crontab ingestions are fired by cron (legacy/cron/side.py), RQ workflows by RQ (legacy/rq): never by APScheduler
        rq_ids = managed_ids(self.settings)
        scheduled = sorted((i for i in ingestions if i.schedule is not None and "crontab" not in i.schedule
                            and i.id not in rq_ids), key=lambda i: i.id)
        wanted = {i.id for i in scheduled}
        existing = {r.id: r for r in self._rows()}
        out: list[tuple[str, str]] = []
        now = utcnow()
        for ing in scheduled:
            try:
                if dry_run:
                    action, _ = self._plan(existing.get(ing.id), ing, now)
                else:
                    action = self.ensure(ing)
            except InputError as e:
                if problems is None:
                    raise
                problems.append(e.one_line())
                continue
            out.append((action, ing.id))
        for jid, r in sorted(existing.items()):
            if r.is_schedule_job and jid not in wanted:
                if not dry_run:
                    self.remove(jid)
                out.append((REMOVED, jid))
        return out


# -- the job function ---------------------------------------------------------------------


def run_scheduled(ingestion_id: str, trigger: str = "scheduled", job_id: str | None = None):
    """What every APScheduler job runs: one live legacy run of the ingestion.

    Skipped when the ingestion is batch-paused or its APScheduler job is paused
    (a pause that raced with the scheduler picking the job up wins).
    """
    settings = _active_settings or load_settings()
    ws = Workspace(settings)
    ing = ws.ingestions.find(ingestion_id)
    if ing is None:
        log.warning("scheduled run of %s skipped: no such ingestion (remove its job with `cutover legacy sync`)",
                    ingestion_id)
        return None
    if ing.batch_paused:
        log.info("scheduled run of %s skipped: the ingestion is paused on the legacy side", ingestion_id)
        return None
    fenced = legacy_fence(ws, ingestion_id)
    if fenced:
        log.info("scheduled run of %s skipped: %s", ingestion_id, fenced)
        return None
    if JobSync(settings).is_paused(ingestion_id):
        log.info("scheduled run of %s skipped: its APScheduler job is paused", ingestion_id)
        return None
    res = ws.service.run(ing, orchestrator="legacy", mode="live", trigger=trigger,
                         external_id=job_id or ingestion_id)
    log.info("%s run %s of %s: %s, %d file(s), %d record(s)", trigger, res.run_id, ingestion_id, res.status,
             res.files_processed, res.records_ingested)
    return res.run_id
