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

The scheduler process (``run_foreground``) uses a job store whose writes are
compare-and-swap on the state it read: a pause, resume or trigger change made
by another process while the scheduler was handling that job is never
overwritten, and ``run_scheduled`` re-checks the pause before it starts, so a
job paused in that instant does not run.
"""

from __future__ import annotations

import logging
import pickle
import signal
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterable

from sqlalchemy import Column, Float, LargeBinary, MetaData, String, Table, delete, inspect, insert, select, update

from cutover.core.config import load_settings
from cutover.core.db import ensure_schema, get_engine, make_engine, sqlite_path, write_tx
from cutover.core.errors import InputError
from cutover.core.records.ingestions import FIELDS, validate, with_schedule
from cutover.core.redact import redact_text, redact_url
from cutover.core.schedule import triggers as schedules
from cutover.core.schedule.triggers import build_trigger, next_fire_times
from cutover.core.state.fence import legacy_fence
from cutover.core.workflow import managed_ids
from cutover.core.workspace import Workspace
from cutover.protocol import CREATED, UNCHANGED, UPDATED, JobInfo

if TYPE_CHECKING:  # pragma: no cover
    from cutover.core.config import Settings
    from cutover.core.records.ingestions import Ingestion

log = logging.getLogger("cutover.scheduler")

FUNC_REF = "legacy.apscheduler.scheduler:run_scheduled"
REMOVED = "removed"
ONE_OFF_PREFIX = "manual-"
ORCHESTRATOR = "apscheduler"
UTC = timezone.utc

# Set by run_foreground so that jobs run with the settings the scheduler was started with.
_active_settings: "Settings | None" = None


def utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(dt: datetime | None) -> float | None:
    from apscheduler.util import datetime_to_utc_timestamp

    return datetime_to_utc_timestamp(dt)


# -- reading pickled job states safely ------------------------------------------------------

_SAFE_MODULES = ("apscheduler.triggers", "datetime", "zoneinfo", "pytz", "dateutil.tz", "tzlocal", "decimal",
                 "uuid", "collections", "fractions", "pathlib")
_SAFE_BUILTINS = {"set", "frozenset", "bytearray", "complex", "range", "slice", "object", "list", "dict", "tuple",
                  "str", "int", "float", "bool", "bytes"}


class Opaque:
    """Stands in for an object of a class we will not (or cannot) import while reading a job state."""

    ref = "?"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state

    def __repr__(self) -> str:
        return f"<unreadable {self.ref}>"


_opaque_classes: dict[str, type] = {}


def _opaque(module: str, name: str) -> type:
    ref = f"{module}:{name}"
    cls = _opaque_classes.get(ref)
    if cls is None:
        cls = _opaque_classes[ref] = type(f"Opaque_{name.replace('.', '_')}", (Opaque,), {"ref": ref})
    return cls


def _is_safe_module(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in _SAFE_MODULES)


def _safe_getattr(obj, name: str):
    """``getattr`` as pickles use it (``ZoneInfo._unpickle``), on the allowed classes only."""
    if isinstance(obj, type) and not issubclass(obj, Opaque) and _is_safe_module(obj.__module__) \
            and not name.startswith("__"):
        return getattr(obj, name)
    return _opaque(getattr(obj, "__module__", "?"), f"{getattr(obj, '__name__', type(obj).__name__)}.{name}")


class _StateUnpickler(pickle.Unpickler):
    """Unpickles job states importing only trigger, date/time and plain container classes.

    Anything else (a team's own classes in job args, a module that no longer
    exists) becomes an :class:`Opaque` placeholder: reading a job store never
    runs its code and never fails on a missing module.
    """

    def find_class(self, module: str, name: str):
        if module == "builtins" and name == "getattr":
            return _safe_getattr
        safe = (
            (module == "builtins" and name in _SAFE_BUILTINS)
            or (module == "copyreg" and name in ("_reconstructor", "__newobj__", "__newobj_ex__"))
            or (module == "_codecs" and name == "encode")
            or _is_safe_module(module)
        )
        if safe:
            try:
                return super().find_class(module, name)
            except (ImportError, AttributeError):
                pass
        return _opaque(module, name)


def load_job_state(blob: bytes) -> dict:
    """A job's state dict from its ``job_state`` column, without importing its code."""
    import io

    state = _StateUnpickler(io.BytesIO(blob)).load()
    if not isinstance(state, dict):
        raise ValueError(f"job state is a {type(state).__name__}, not a dict")
    return state


def dump_job_state(state: dict) -> bytes:
    return pickle.dumps(state, pickle.HIGHEST_PROTOCOL)


# -- the job store table ---------------------------------------------------------------------

_tables: dict[str, Table] = {}


def jobs_table(name: str) -> Table:
    """APScheduler 3's SQLAlchemyJobStore table layout."""
    t = _tables.get(name)
    if t is None:
        t = _tables[name] = Table(
            name, MetaData(),
            Column("id", String(191), primary_key=True),
            Column("next_run_time", Float(25), index=True),
            Column("job_state", LargeBinary, nullable=False),
        )
    return t


@dataclass
class _Row:
    id: str
    next_run_time: float | None
    blob: bytes
    state: dict | None  # None: unreadable
    error: str | None = None

    @property
    def paused(self) -> bool:
        return self.next_run_time is None

    @property
    def ours(self) -> bool:
        return self.state is not None and self.state.get("func") == FUNC_REF

    @property
    def kwargs(self) -> dict:
        kw = (self.state or {}).get("kwargs")
        return kw if isinstance(kw, dict) else {}

    @property
    def is_schedule_job(self) -> bool:
        """One of our per-ingestion jobs (not a one-off manual run)."""
        return self.ours and self.kwargs.get("ingestion_id") == self.id

    @property
    def is_one_off(self) -> bool:
        return self.ours and self.id.startswith(ONE_OFF_PREFIX)


def _row(r) -> _Row:
    try:
        state, err = load_job_state(r.job_state), None
    except Exception as e:  # noqa: BLE001 - a corrupt row is reported, never deleted
        state, err = None, f"{type(e).__name__}: {e}"
    return _Row(r.id, r.next_run_time, r.job_state, state, err)


# -- triggers -----------------------------------------------------------------------------


def trigger_fingerprint(trigger, *, ignore_interval_start: bool = False) -> tuple:
    """What makes two triggers fire alike (APScheduler triggers define no equality)."""
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.date import DateTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    def iso(dt):
        return dt.isoformat() if dt is not None else None

    tz = str(getattr(trigger, "timezone", ""))
    if isinstance(trigger, CronTrigger):
        return ("cron", tz, tuple((f.name, str(f)) for f in trigger.fields), iso(trigger.start_date),
                iso(trigger.end_date), trigger.jitter)
    if isinstance(trigger, IntervalTrigger):
        return ("interval", tz, trigger.interval.total_seconds(),
                None if ignore_interval_start else iso(trigger.start_date), iso(trigger.end_date), trigger.jitter)
    if isinstance(trigger, DateTrigger):
        return ("date", iso(trigger.run_date))
    return ("other", type(trigger).__name__, pickle.dumps(trigger))


def describe_trigger(trigger) -> str:
    """``cron[hour='2', minute='0'] Europe/Berlin``: APScheduler's own form plus the zone."""
    tz = getattr(trigger, "timezone", None)
    return f"{trigger} {tz}" if tz is not None else str(trigger)


def _without_jitter(trigger):
    import copy

    t = copy.copy(trigger)
    if getattr(t, "jitter", None):
        t.jitter = None
    return t


def same_firing(a, b, *, count: int = 50, start: datetime | None = None) -> bool:
    """True when two triggers fire at the same instants (next ``count`` times) with the same jitter."""
    if a is None or b is None:
        return a is None and b is None
    if (getattr(a, "jitter", None) or None) != (getattr(b, "jitter", None) or None):
        return False
    if getattr(a, "end_date", None) != getattr(b, "end_date", None):
        return False
    start = start or utcnow()
    return (next_fire_times(_without_jitter(a), start, count) == next_fire_times(_without_jitter(b), start, count))


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
        path = sqlite_path(self.url)
        if path is not None and not path.exists():
            return False
        with self.engine.connect() as conn:
            return inspect(conn).has_table(self.table.name)

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

    def _select(self, conn, job_id: str | None = None, *, lock: bool = False) -> list[_Row]:
        q = select(self.table.c.id, self.table.c.next_run_time, self.table.c.job_state).order_by(self.table.c.id)
        if job_id is not None:
            q = q.where(self.table.c.id == job_id)
        if lock and self.engine.dialect.name != "sqlite":
            q = q.with_for_update()
        return [_row(r) for r in conn.execute(q)]

    def _one(self, conn, job_id: str, *, lock: bool = False) -> _Row | None:
        rows = self._select(conn, job_id, lock=lock)
        return rows[0] if rows else None

    def _rows(self) -> list[_Row]:
        if not self.exists():
            return []
        with self.engine.connect() as conn:
            return self._select(conn)

    def _write(self, conn, state: dict, *, new: bool) -> None:
        values = {"next_run_time": _ts(state["next_run_time"]), "job_state": dump_job_state(state)}
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

    def _plan(self, row: _Row | None, ing: "Ingestion", now: datetime, *,
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


# -- the scheduler process ------------------------------------------------------------------


def _make_store(engine, tablename: str):
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
                res = conn.execute(stmt.values(next_run_time=_ts(job.next_run_time), job_state=blob))
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

    store = _make_store(engine or make_engine(settings.jobstore_url), settings.jobstore_table)
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
    global _active_settings
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

    def on_event(ev):
        if ev.job_id == "cutover-poll":
            return
        if ev.code == EVENT_JOB_EXECUTED:
            stats["executed"] += 1
            say(f"ran {ev.job_id}: run {ev.retval}" if ev.retval else f"ran {ev.job_id}: skipped (paused or gone)")
        elif ev.code == EVENT_JOB_ERROR:
            stats["errors"] += 1
            say(f"job {ev.job_id} failed: {redact_text(str(ev.exception)).splitlines()[0] if str(ev.exception) else type(ev.exception).__name__}")
        elif ev.code == EVENT_JOB_MISSED:
            stats["missed"] += 1
            say(f"job {ev.job_id} missed its run time {ev.scheduled_run_time.isoformat()} (beyond misfire_grace_time)")
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
    prev_settings, _active_settings = _active_settings, settings
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
        _active_settings = prev_settings
        if in_main:
            for s, h in previous.items():
                signal.signal(s, h)
    say(f"scheduler stopped: {stats['executed']} run(s), {stats['errors']} error(s), {stats['missed']} missed")
    return stats


# -- import from an existing team job store ---------------------------------------------------


@dataclass(frozen=True)
class ImportItem:
    job_id: str
    action: str  # create | update | unchanged | problem
    ingestion_id: str | None
    detail: str
    ingestion: "Ingestion | None" = None  # the definition to write (create/update); None: keep ours
    paused: bool = False  # paused in the source
    pause_ours: bool = False  # our side is to be paused

    def line(self, *, dry_run: bool = False) -> str:
        if self.action == "problem":
            return f"problem: {self.detail}"
        prefix = "would " if dry_run and self.action != "unchanged" else ""
        return f"{prefix}{self.action}: {self.detail}"


def read_source_jobs(url: str, table: str = "apscheduler_jobs") -> list[tuple[str, float | None, bytes]]:
    """(id, next_run_time, job_state) of every row of a job store, read-only.

    SQLite files are opened with ``mode=ro``; PostgreSQL sessions are read-only.
    Nothing is resolved, restored or deleted.
    """
    from sqlalchemy import create_engine
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, ProgrammingError

    shown = redact_url(url)
    path = sqlite_path(url)
    try:
        if path is not None:
            if not path.exists():
                raise InputError(f"job store {shown} does not exist", fix="give the URL of the team's APScheduler DB")
            from urllib.parse import quote

            engine = create_engine(f"sqlite:///file:{quote(str(path.absolute()))}?mode=ro&uri=true")
        else:
            engine = create_engine(url)
    except (ArgumentError, NoSuchModuleError) as e:
        raise InputError(f"job store URL {shown} is not usable ({redact_text(str(e))})",
                         fix="use sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB") from None
    t = jobs_table(table)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn = conn.execution_options(postgresql_readonly=True)
            if not inspect(conn).has_table(table):
                raise InputError(f"job store {shown} has no table {table!r}",
                                 fix="pass --table with the name of the APScheduler jobs table")
            rows = conn.execute(select(t.c.id, t.c.next_run_time, t.c.job_state).order_by(t.c.id)).all()
            conn.rollback()
    except (OperationalError, ProgrammingError) as e:
        raise InputError(f"cannot read job store {shown} ({redact_text(str(getattr(e, 'orig', e))).splitlines()[0]})",
                         fix="check the URL and that the DB is reachable") from None
    finally:
        engine.dispose()
    return [(r.id, r.next_run_time, bytes(r.job_state)) for r in rows]


_DEF_KEYS = ("source_uri", "source", "format", "table")


def _definition_from_kwargs(job_id: str, state: dict) -> dict | None:
    kwargs = state.get("kwargs") if isinstance(state.get("kwargs"), dict) else {}
    if not any(k in kwargs for k in _DEF_KEYS):
        return None
    raw = {k: v for k, v in kwargs.items() if k in FIELDS and k not in ("schedule", "id")}
    raw["id"] = str(kwargs.get("ingestion_id") or kwargs.get("id") or job_id)
    if "name" not in raw:
        func_name = str(state.get("func") or "").rpartition(":")[2].rpartition(".")[2]
        name = state.get("name")
        if isinstance(name, str) and name and name != func_name:
            raw["name"] = name
    return raw


def plan_import(rows: list[tuple[str, float | None, bytes]], existing: dict[str, "Ingestion"], *,
                replace: bool, ours_paused: dict[str, bool] | None = None) -> list[ImportItem]:
    """What `legacy import` does with each source job (pure: nothing read or written here).

    ``existing``: our inventory by id; ``ours_paused``: whether our side already
    has each ingestion paused (batch flag or APScheduler job).
    """
    from apscheduler.triggers.base import BaseTrigger
    from apscheduler.triggers.combining import BaseCombiningTrigger

    ours_paused = ours_paused or {}
    out: list[ImportItem] = []
    seen: dict[str, str] = {}
    for job_id, next_run_time, blob in rows:
        def problem(msg: str) -> ImportItem:
            return ImportItem(job_id, "problem", None, f"job {job_id}: {msg}")

        try:
            state = load_job_state(blob)
        except Exception as e:  # noqa: BLE001
            out.append(problem(f"its pickled state cannot be read ({type(e).__name__}: {redact_text(str(e))})"))
            continue
        trig = state.get("trigger")
        if isinstance(trig, BaseCombiningTrigger):
            out.append(problem(f"{type(trig).__name__} {trig} combines triggers, which one schedule cannot express: "
                               "split it into one job per trigger in the source, then import again"))
            continue
        if isinstance(trig, Opaque) or not isinstance(trig, BaseTrigger):
            out.append(problem(f"its trigger ({getattr(trig, 'ref', type(trig).__name__)}) is not an APScheduler "
                               "cron, interval or date trigger"))
            continue
        try:
            spec, tz = schedules.trigger_to_spec(trig)
        except InputError as e:
            out.append(problem(e.one_line()))
            continue
        paused = next_run_time is None
        raw = _definition_from_kwargs(job_id, state)
        kwargs = state.get("kwargs") if isinstance(state.get("kwargs"), dict) else {}
        iid = str(kwargs.get("ingestion_id") or kwargs.get("id") or job_id)
        cur = existing.get(iid)
        if raw is not None and any(isinstance(v, Opaque) for v in raw.values()):
            bad = sorted(k for k, v in raw.items() if isinstance(v, Opaque))
            out.append(problem(f"kwarg(s) {', '.join(bad)} hold objects of classes cutover does not read "
                               f"({', '.join(sorted({raw[k].ref for k in bad}))}): give them as plain strings"))
            continue
        if cur is None and raw is None:
            out.append(problem(f"no ingestion {iid!r} in the inventory and its kwargs carry no definition "
                               "(source_uri, format, table): add the ingestion first with `cutover ingestion add "
                               f"{iid} ...`, or give the job those kwargs"))
            continue
        if iid in seen:
            out.append(problem(f"maps to ingestion {iid!r} like job {seen[iid]}: give each job its own ingestion_id kwarg"))
            continue
        seen[iid] = job_id
        try:
            if cur is None:
                base_tz = str(raw.get("timezone") or tz)
                full = {**spec, "timezone": tz} if tz != base_tz else spec
                ing = validate({**raw, "schedule": full, "timezone": base_tz}, where=f"job {job_id}")
            else:
                full = {**spec, "timezone": tz} if tz != cur.timezone else spec
                spec_n = schedules.normalize_schedule(full)
                ing = with_schedule(cur, spec_n, cur.timezone)
            new_trig = schedules.build_trigger(ing.schedule, ing.timezone)
        except InputError as e:
            msg = e.one_line()
            out.append(problem(msg[len(f"job {job_id}: "):] if msg.startswith(f"job {job_id}: ") else msg))
            continue
        if not same_firing(trig, new_trig):
            out.append(problem(f"its trigger {trig} cannot be reproduced exactly as a schedule"))
            continue
        shown = f"{schedules.describe(ing.schedule)} {ing.schedule_timezone}"
        if cur is None:
            job_note = f"job {job_id}, " if job_id != iid else ""
            out.append(ImportItem(job_id, "create", iid, f"{iid} ({job_note}{shown}{', paused' if paused else ''})",
                                  ing, paused, pause_ours=paused))
            continue
        cur_trig = schedules.build_trigger(cur.schedule, cur.timezone) if cur.schedule else None
        same = same_firing(cur_trig, trig)
        pause_ours = paused and not ours_paused.get(iid, False)
        kept = " (kept paused on our side)" if not paused and ours_paused.get(iid, False) else ""
        if same and not pause_ours:
            out.append(ImportItem(job_id, "unchanged", iid, f"{iid} ({schedules.describe(cur.schedule)} "
                                  f"{cur.schedule_timezone}){kept}", None, paused))
        elif same:
            out.append(ImportItem(job_id, "update", iid, f"{iid}: pause (paused in the source)", None, paused, True))
        elif not replace:
            out.append(problem(f"ingestion {iid} exists with schedule {schedules.describe(cur.schedule)} "
                               f"{cur.schedule_timezone}, the job fires as {shown}: pass --replace to take the job's schedule"))
        else:
            out.append(ImportItem(job_id, "update", iid, f"{iid}: schedule {schedules.describe(cur.schedule)} "
                                  f"{cur.schedule_timezone} -> {shown}{', pause' if pause_ours else ''}{kept}",
                                  ing, paused, pause_ours))
    return out


def apply_import(ws, items: list[ImportItem]) -> None:
    """Write a validated import: every ingestion in one transaction, then their jobs.

    Jobs paused in the source are written paused before anything else, so a running
    scheduler never sees them active; "unchanged" items are not touched.
    """
    if any(i.action == "problem" for i in items):
        raise InputError("the import has problems", fix="fix them first; nothing was written")
    todo = [i for i in items if i.action in ("create", "update")]
    js = JobSync(ws.settings)
    existing = {i.id: i for i in ws.ingestions.list()}
    final = {i.ingestion_id: (i.ingestion or existing[i.ingestion_id]) for i in todo}
    for item in todo:
        if item.pause_ours and final[item.ingestion_id].schedule is not None:
            js.ensure(final[item.ingestion_id], paused=True)
    writes = [i.ingestion for i in todo if i.ingestion is not None]
    if writes:
        ws.ingestions.upsert(writes, replace_existing=True)
    for item in todo:
        ing = final[item.ingestion_id]
        if item.pause_ours:
            ws.ingestions.set_batch_paused(ing.id, True)
        elif ing.schedule is not None:
            js.ensure(ing)  # never un-pauses
