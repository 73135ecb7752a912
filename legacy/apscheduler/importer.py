"""`cutover legacy import`: jobs of an existing team APScheduler job store into the inventory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import inspect, select

from cutover.core.db import sqlite_path
from cutover.core.errors import InputError
from cutover.core.progress import track
from cutover.core.records.ingestions import FIELDS, validate, with_schedule
from cutover.core.redact import redact_text, redact_url
from cutover.core.schedule import triggers as schedules
from legacy.apscheduler.jobstore import Opaque, jobs_table, load_job_state, same_firing
from legacy.apscheduler.scheduler import JobSync

if TYPE_CHECKING:  # pragma: no cover
    from cutover.core.records.ingestions import Ingestion


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
                         fix="use sqlite:///PATH or postgresql+psycopg://<user>:<password>@<host>:<port>/<db>") from None
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
    for job_id, next_run_time, blob in track(rows, "importing APScheduler jobs"):
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
