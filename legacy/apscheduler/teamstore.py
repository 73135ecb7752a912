"""A team's own APScheduler 3 job store: its jobs as ``callable`` jobs (issue #15).

`cutover legacy import --jobstore URL --jobs` takes every job of the store that is not a cutover
ingestion and makes it a callable job (``cutover.core.records.jobs``): the function reference, the
args and kwargs (exactly: tuples, datetimes, Decimals ... are stored tagged), the trigger as a
schedule in the same forms ingestions use (cron, interval with its start_date, date; an
``OrTrigger`` of cron triggers that differ in one field only becomes one cron; an ``AndTrigger``
whose parts all fire alike becomes that part), ``misfire_grace_time``, ``coalesce``,
``max_instances``, ``executor``, jitter (in the schedule) and the paused state (``next_run_time``
NULL) -- the legacy-only settings under ``legacy``, with the store job id and its next_run_time.

A job that cannot move is listed with the reason, never dropped: a lambda or nested function, a
function of the scheduler's ``__main__``, a method bound to an object pickled in the job, an
argument of a class cutover does not read (named), a trigger no schedule reproduces exactly.

The team's scheduler keeps running its jobs until the cutover: :class:`TeamStore` pauses and
resumes them in place, in APScheduler's own format (the pickled state and the ``next_run_time``
column), and puts back the exact ``next_run_time`` a job had when cutover paused it (when that
time is still ahead; else the next fire time from now, as ``resume_job`` computes it: Prefect ran
the job meanwhile, so there is no catch-up run). Run records come from the scheduler itself:
:func:`record_runs` adds listeners for EVENT_JOB_SUBMITTED / EXECUTED / ERROR / MISSED that write
the legacy run table (``cutover.core.records.jobruns``); the team adds one line to its scheduler
start-up::

    from legacy.apscheduler.teamstore import record_runs
    record_runs(scheduler)          # CUTOVER_HOME in the environment, or home="/srv/cutover"

:class:`TeamAPSchedulerAdapter` is the generic APScheduler side (``cutover.protocol.OrchestratorWriter``
over callable jobs), registered in ``cutover.registry.GENERIC_SIDES``.
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Iterable

from cutover.core.errors import InputError
from cutover.core.progress import track
from cutover.core.records.jobs import CALLABLE, Job, Unencodable, encode_value, unique_id, validate_job, values_of
from cutover.core.schedule import triggers as schedules
from legacy.apscheduler.jobstore import FUNC_REF, Opaque, same_firing, utcnow

log = logging.getLogger("cutover.teamstore")
ORCHESTRATOR = "apscheduler"
RUN_PREFIX = "cutover-run~"
_SLUG = re.compile(r"[^a-z0-9_\-]+")
_INGESTION_KEYS = ("source_uri", "source", "format", "table", "ingestion_id")


# -- a job state -> a callable job, or the reason it cannot move ------------------------------


@dataclass
class TeamItem:
    store_id: str
    action: str  # create | update | unchanged | cannot-move
    job: Job | None
    reason: str | None = None
    prefect_schedule: str | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        j = self.job
        return {"store_job_id": self.store_id, "action": self.action, "kind": CALLABLE if j else None,
                "job_id": j.id if j else None, "target": j.describe_target() if j else None,
                "schedule": schedules.describe(j.schedule) if j else None,
                "timezone": j.schedule_timezone if j else None, "prefect_schedule": self.prefect_schedule,
                "paused": j.paused if j else None, "reason": self.reason, "notes": self.notes,
                "legacy": {k: v for k, v in (j.legacy if j else {}).items() if k != "jobstore"}}

    def line(self, *, dry_run: bool = False) -> str:
        if self.action == "cannot-move":
            return f"cannot move: job {self.store_id}: {self.reason}"
        j = self.job
        prefix = "would " if dry_run and self.action != "unchanged" else ""
        sched = self.prefect_schedule or "?"
        paused = ", paused" if j.paused else ""
        return (f"{prefix}{self.action}: {j.id} (callable {j.describe_target()}, "
                f"{schedules.describe(j.schedule)} {j.schedule_timezone} -> Prefect {sched}{paused})")


def is_ingestion_job(state: dict | None, store_id: str, ingestion_ids: Iterable[str]) -> bool:
    """A job `legacy import` treats as an ingestion: cutover's own function, kwargs carrying an
    ingestion definition or id, or the id of an ingestion of the inventory."""
    if state is None:
        return True  # unreadable: the ingestion path reports it
    kwargs = state.get("kwargs") if isinstance(state.get("kwargs"), dict) else {}
    return (state.get("func") == FUNC_REF or any(k in kwargs for k in _INGESTION_KEYS)
            or store_id in set(ingestion_ids))


def _opaque_refs(value, path: str = "") -> list[tuple[str, str]]:
    if isinstance(value, Opaque):
        return [(path or "value", value.ref)]
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in _opaque_refs(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, (list, tuple, set, frozenset)):
        return [x for i, v in enumerate(value) for x in _opaque_refs(v, f"{path}[{i}]")]
    return []


def func_problem(ref: Any, args: tuple) -> str | None:
    """Why a function reference cannot be called by another process, or None."""
    if not isinstance(ref, str) or ":" not in ref:
        return f"its function reference {ref!r} is not 'module:function'"
    module, _, name = ref.partition(":")
    if "<lambda>" in name:
        return f"its function is a lambda ({ref}): give it a name at module level"
    if "<locals>" in name:
        return f"its function is nested in another function ({ref}): move it to module level"
    if module == "__main__":
        return (f"its function {name} is defined in the scheduler's __main__ script, which no other process can "
                "import: move it into a module")
    if "." in name and args and isinstance(args[0], Opaque) and args[0].ref == f"{module}:{name.rpartition('.')[0]}":
        return (f"its function is the method {name} bound to a {args[0].ref} object pickled in the job, which "
                "cannot be rebuilt outside the team's scheduler: call it from a module-level function")
    return None


def _field_texts(trig) -> dict[str, str | None]:
    """Each field's expression, None where it is the default (so a merged trigger keeps them default)."""
    return {f.name: None if f.is_default else str(f) for f in trig.fields}


def combined_spec(trig) -> tuple[dict, str] | tuple[None, str]:
    """(spec, tz) for an OrTrigger/AndTrigger one schedule can express, or (None, reason)."""
    from apscheduler.triggers.combining import AndTrigger, OrTrigger
    from apscheduler.triggers.cron import CronTrigger

    parts = list(trig.triggers)
    name = type(trig).__name__
    if not parts:
        return None, f"{name} without triggers never fires"
    if getattr(trig, "jitter", None):
        return None, f"{name} has its own jitter, which no schedule carries"
    if isinstance(trig, AndTrigger):
        first = parts[0]
        if all(same_firing(first, p, count=200) for p in parts[1:]):
            return schedules.trigger_to_spec(first)
        return None, (f"{name} fires only when all of {', '.join(str(p) for p in parts)} fire at once, which one "
                      "schedule does not express: write the intersection as one cron trigger in the source")
    if isinstance(trig, OrTrigger) and all(isinstance(p, CronTrigger) for p in parts):
        tz = {str(p.timezone) for p in parts}
        common = {(p.start_date, p.end_date, p.jitter) for p in parts}
        texts = [_field_texts(p) for p in parts]
        differ = [k for k in texts[0] if len({t[k] for t in texts}) > 1]
        if len(tz) == 1 and len(common) == 1 and len(differ) <= 1:
            if not differ:
                return schedules.trigger_to_spec(parts[0])
            k = differ[0]
            if any(t[k] is None for t in texts):  # one part leaves the field at its default: no list says that
                return None, (f"{name} {trig} combines triggers whose union one schedule does not express: split it "
                              "into one job per trigger in the source, then import again")
            fields = {f: v for f, v in texts[0].items() if v is not None}
            merged = CronTrigger(**{**fields, k: ",".join(t[k] for t in texts)},
                                 timezone=parts[0].timezone, start_date=parts[0].start_date,
                                 end_date=parts[0].end_date, jitter=parts[0].jitter)
            if same_firing(trig, merged, count=400, start=utcnow()):
                return schedules.trigger_to_spec(merged)
    return None, (f"{name} {trig} combines triggers whose union one schedule does not express: split it into one "
                  "job per trigger in the source, then import again")


def slug_id(store_id: str, taken: set[str]) -> str:
    return unique_id(_SLUG.sub("-", store_id.lower()).strip("-_")[:120], taken)


VERIFY_DAYS = 366  # a whole year: both DST changes of every zone


def _translation(spec: dict | None, tz: str, verify_days: int = VERIFY_DAYS) -> tuple[str | None, list[str]]:
    """(the Prefect schedule, notes), with the verdict of ``cutover.core.schedule.verify`` over
    ``verify_days`` from now in the notes when the two sides do not fire alike (0: not verified)."""
    from cutover.core.schedule.translate import translate
    from cutover.core.schedule.verify import verify

    if spec is None:
        return "manual", []
    approx = False
    try:
        text, notes = translate(spec, tz).describe(), []
    except InputError as exact_error:
        try:
            t = translate(spec, tz, allow_approx=True)
        except InputError as e:
            return None, [e.one_line()]
        text, notes, approx = t.describe() + " (approximate)", [exact_error.one_line(), *t.notes], True
    if verify_days <= 0:
        return text, notes
    r = verify(spec, tz, start=utcnow(), horizon=timedelta(days=verify_days), allow_approx=approx)
    if not r.ok:
        notes.append(f"schedule verification over {verify_days} days: {r.summary()}")
    return text, notes


def convert(store_id: str, next_run_time: float | None, state: dict, *, taken: set[str], source: str, table: str,
            code_location: str | None = None, shadow: str | None = None, existing: Job | None = None,
            verify_days: int = VERIFY_DAYS) -> TeamItem:
    """The callable job of one job state (``existing``: the one imported earlier from the same job)."""
    from apscheduler.triggers.base import BaseTrigger
    from apscheduler.triggers.combining import BaseCombiningTrigger

    def cannot(reason: str) -> TeamItem:
        return TeamItem(store_id, "cannot-move", None, reason)

    args = state.get("args") or ()
    kwargs = state.get("kwargs") or {}
    why = func_problem(state.get("func"), tuple(args) if isinstance(args, (list, tuple)) else ())
    if why:
        return cannot(why)
    bad = _opaque_refs(list(args), "args") + _opaque_refs(dict(kwargs) if isinstance(kwargs, dict) else {}, "kwargs")
    if bad:
        return cannot("argument(s) " + ", ".join(f"{p} (a {r} object)" for p, r in bad) +
                      " hold objects of classes cutover does not read: pass plain values (strings, numbers, dates)")
    trig = state.get("trigger")
    if isinstance(trig, BaseCombiningTrigger):
        spec, tz = combined_spec(trig)
        if spec is None:
            return cannot(tz)
    elif isinstance(trig, Opaque) or not isinstance(trig, BaseTrigger):
        return cannot(f"its trigger ({getattr(trig, 'ref', type(trig).__name__)}) is not an APScheduler cron, interval, "
                      "date or combining trigger")
    else:
        try:
            spec, tz = schedules.trigger_to_spec(trig)
        except InputError as e:
            return cannot(e.one_line())
    try:
        enc_args, enc_kwargs = encode_value(list(args), path="args"), encode_value(dict(kwargs), path="kwargs")
    except Unencodable as e:
        return cannot(f"{e}: pass plain values")
    jid = existing.id if existing is not None else slug_id(store_id, taken)
    nrt = next_run_time
    legacy = {"orchestrator": ORCHESTRATOR, "jobstore": source, "table": table, "job_id": store_id,
              "name": state.get("name"), "executor": state.get("executor"),
              "misfire_grace_time": state.get("misfire_grace_time"), "coalesce": state.get("coalesce"),
              "max_instances": state.get("max_instances"), "next_run_time": nrt}
    if spec.get("jitter"):
        legacy["jitter"] = spec["jitter"]
    raw = {"id": jid, "kind": CALLABLE, "name": state.get("name") or jid, "target": state["func"], "args": enc_args,
           "kwargs": enc_kwargs, "code_location": code_location or (existing.code_location if existing else None),
           "schedule": {**spec, "timezone": tz}, "timezone": tz, "paused": nrt is None, "legacy": legacy,
           "shadow": shadow or (existing.shadow if existing else None)}
    try:
        job = validate_job(raw, where=f"job {store_id}")
    except InputError as e:
        return cannot(e.one_line())
    try:
        rebuilt = schedules.build_trigger(job.schedule, job.timezone)
    except InputError as e:
        return cannot(e.one_line())
    if not isinstance(trig, BaseCombiningTrigger) and not same_firing(trig, rebuilt):
        return cannot(f"its trigger {trig} cannot be reproduced exactly as a schedule")
    if isinstance(trig, BaseCombiningTrigger) and not _same_times(trig, rebuilt):
        return cannot(f"its trigger {trig} cannot be reproduced exactly as a schedule")
    ps, notes = _translation(job.schedule, job.timezone, verify_days)
    if existing is None:
        action = "create"
    else:
        keep = {k: v for k, v in existing.legacy.items() if k.startswith("paused_")}
        job = replace(job, legacy={**job.legacy, **keep})
        action = "unchanged" if values_of(existing) == values_of(job) and existing.paused == job.paused else "update"
    return TeamItem(store_id, action, job, None, ps, notes)


def _same_times(a, b, n: int = 300) -> bool:
    a, b = copy.copy(a), copy.copy(b)
    return schedules.next_fire_times(a, utcnow(), n) == schedules.next_fire_times(b, utcnow(), n)


def plan_team_jobs(rows: list[tuple[str, float | None, bytes]], ws, *, source: str, table: str,
                   code_location: str | None = None, shadow: str | None = None, read_inventory: bool = True,
                   verify_days: int = VERIFY_DAYS) -> tuple[list[TeamItem], list[tuple[str, float | None, bytes]]]:
    """(callable items, rows left to the ingestion import) for the rows of a team job store."""
    from legacy.apscheduler.jobstore import load_job_state

    ingestion_ids = [i.id for i in ws.ingestions.list()] if read_inventory else []
    jobs = ws.jobs.list() if read_inventory else []
    by_store = {(j.legacy.get("jobstore"), j.legacy.get("table"), j.legacy.get("job_id")): j for j in jobs
                if j.legacy.get("orchestrator") == ORCHESTRATOR}
    taken = set(ingestion_ids) | {j.id for j in jobs}
    items, rest = [], []
    for store_id, nrt, blob in track(rows, "importing APScheduler team jobs"):
        try:
            state = load_job_state(blob)
        except Exception:  # noqa: BLE001 - the ingestion path reports unreadable states
            rest.append((store_id, nrt, blob))
            continue
        if is_ingestion_job(state, store_id, ingestion_ids):
            rest.append((store_id, nrt, blob))
            continue
        items.append(convert(store_id, nrt, state, taken=taken, source=source, table=table,
                             code_location=code_location, shadow=shadow, verify_days=verify_days,
                             existing=by_store.get((source, table, store_id))))
    return items, rest


def apply_team_jobs(ws, items: list[TeamItem]) -> None:
    todo = [i.job for i in items if i.action in ("create", "update")]
    if todo:
        ws.jobs.upsert(todo, replace_existing=True, taken={i.id for i in ws.ingestions.list()})
