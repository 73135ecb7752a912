"""A team's own RQ schedules as ``callable`` jobs, and their runs from RQ's registries (issue #15).

`cutover rq import-jobs --redis-url URL` reads, without the team's code and without rq-scheduler
installed, every scheduled unit of work in Redis:

- RQ's own scheduler: each queue's ScheduledJobRegistry (``rq:scheduled:<queue>``, a sorted set of
  job ids by time: ``enqueue_at``/``enqueue_in``), with RQ 3's ``Repeat`` on the job hash
  (``repeats_left``, ``repeat_intervals``);
- RQ 3's cron scheduler: the ``rq:cron_scheduler:<name>`` hashes a running ``rq cron`` keeps
  (``cron_jobs``: func_name, args/kwargs as JSON, ``cron`` or ``interval``, queue);
- rq-scheduler (the package), from its data layout: ``rq:scheduler:scheduled_jobs`` (job ids by
  next time) and, in each job's pickled ``meta``, ``cron_string`` / ``interval`` / ``repeat`` /
  ``use_local_timezone``.

A job's function comes from its ``rq:job:<id>`` hash (``data``: the zlib-compressed pickle of
``(func_name, instance, args, kwargs)``), read with ``cutover.core.safepickle`` (no team code runs).

Schedules, exactly where they can be:

- one ``enqueue_at`` -> a date trigger at that instant;
- rq-scheduler ``cron_string`` -> ``{"crontab": ...}`` in UTC (in the scheduler host's zone with
  ``use_local_timezone``); RQ cron ``cron`` -> ``{"crontab": ...}`` in the host's zone (RQ matches
  the fields in local time);
- ``interval`` (rq-scheduler, RQ cron) and RQ ``Repeat`` with one interval -> an interval trigger
  from the next scheduled time (ending after the repeats left). These schedulers count the interval
  from when they enqueued (rq-scheduler, RQ cron) or from when the run ended (``Repeat``): a fixed
  grid on Prefect is the same cadence without the drift -- said in the job's notes;
- what no schedule expresses (``Repeat`` with several intervals, ``Repeat`` with interval 0) is
  listed with the reason, as are bound methods (an ``instance`` in the payload) and arguments of
  classes cutover does not read.

Runs: :func:`record_registry_runs` turns the finished and failed job registries of the queues
(``rq:finished:<queue>``, ``rq:failed:<queue>``) and each job's result stream
(``rq:results:<id>``) into legacy run records of the imported jobs (idempotent: a run is keyed by
job id and end time).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
import zlib
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable

from cutover.core.errors import InputError
from cutover.core.progress import track
from cutover.core.records.jobruns import FAILED, SUCCESS, JobRunStore, redact_output
from cutover.core.records.jobs import CALLABLE, Job, Unencodable, encode_value, validate_job
from cutover.core.redact import redact_url
from cutover.core.safepickle import Opaque, safe_loads
from cutover.core.schedule.triggers import describe

UTC = timezone.utc
ORCHESTRATOR = "rq"
_SLUG = re.compile(r"[^a-z0-9_\-]+")


def _text(v) -> str | None:
    if v is None:
        return None
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def host_timezone() -> str:
    try:
        import tzlocal

        return tzlocal.get_localzone_name() or "UTC"
    except Exception:  # noqa: BLE001
        return "UTC"


@dataclass
class RQEntry:
    """One scheduled unit of work found in Redis."""

    source: str  # rq-scheduled | rq-cron | rq-scheduler
    key: str  # where it was found
    rq_job_id: str | None
    func_name: str | None
    args: Any
    kwargs: Any
    queue: str | None
    when: datetime | None = None  # next time (scheduled registries)
    cron: str | None = None
    interval: int | None = None
    repeat: int | None = None  # runs left after the next one (None: forever)
    intervals: list[int] | None = None  # RQ Repeat
    local_tz: bool = False
    instance: Any = None
    error: str | None = None  # unreadable payload
    extra: dict = field(default_factory=dict)


@dataclass
class RQItem:
    entry: RQEntry
    action: str  # create | update | unchanged | cannot-move
    job: Job | None
    reason: str | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        j, e = self.job, self.entry
        return {"source": e.source, "rq_job_id": e.rq_job_id, "func": e.func_name, "queue": e.queue,
                "action": self.action, "kind": CALLABLE if j else None, "job_id": j.id if j else None,
                "target": j.describe_target() if j else None, "schedule": describe(j.schedule) if j else None,
                "timezone": j.schedule_timezone if j else None, "reason": self.reason, "notes": self.notes}

    def line(self, *, dry_run: bool = False) -> str:
        e = self.entry
        where = f"{e.source} {e.rq_job_id or e.func_name}"
        if self.action == "cannot-move":
            return f"cannot move: {where}: {self.reason}"
        prefix = "would " if dry_run and self.action != "unchanged" else ""
        return (f"{prefix}{self.action}: {self.job.id} (callable {self.job.describe_target()}, "
                f"{describe(self.job.schedule)} {self.job.schedule_timezone}; from {where})")


# -- reading Redis ----------------------------------------------------------------------------------


def _payload(conn, prefix: str, job_id: str) -> tuple[dict, str | None]:
    """(the job hash decoded, error) -- func_name, instance, args, kwargs, meta, origin ..."""
    raw = conn.hgetall(f"{prefix}:job:{job_id}")
    if not raw:
        return {}, f"job {job_id} has no hash {prefix}:job:{job_id} (expired or deleted)"
    h = {_text(k): v for k, v in raw.items()}
    out: dict[str, Any] = {"origin": _text(h.get("origin")), "description": _text(h.get("description")),
                           "timeout": _text(h.get("timeout"))}
    try:
        data = h.get("data") or b""
        try:
            data = zlib.decompress(data)
        except zlib.error:
            pass
        func_name, instance, args, kwargs = safe_loads(data)
        out.update(func_name=_text(func_name), instance=instance, args=args, kwargs=kwargs)
    except Exception as e:  # noqa: BLE001 - JSON serializers, corrupt data: reported
        return out, f"its payload cannot be read ({type(e).__name__}; only RQ's default pickle serializer is read)"
    try:
        out["meta"] = safe_loads(h["meta"]) if h.get("meta") else {}
    except Exception:  # noqa: BLE001
        out["meta"] = {}
    if h.get("repeats_left"):
        out["repeats_left"] = int(_text(h["repeats_left"]))
    if h.get("repeat_intervals"):
        out["repeat_intervals"] = json.loads(_text(h["repeat_intervals"]))
    return out, None


def read_entries(conn, *, prefix: str = "rq", skip_funcs: Iterable[str] = ("legacy.rq.jobs.",)) -> list[RQEntry]:
    """Every scheduled unit of work in Redis (RQ scheduled registries, RQ cron, rq-scheduler).
    Jobs whose function starts with one of ``skip_funcs`` (cutover's own RQ workflows) are left out."""
    out: list[RQEntry] = []

    def from_job(source: str, key: str, job_id: str, score: float) -> None:
        p, err = _payload(conn, prefix, job_id)
        fn = p.get("func_name")
        if fn and any(fn.startswith(s) for s in skip_funcs):
            return
        meta = p.get("meta") if isinstance(p.get("meta"), dict) else {}
        e = RQEntry(source, key, job_id, fn, p.get("args"), p.get("kwargs"), p.get("origin"),
                    when=datetime.fromtimestamp(score, UTC), instance=p.get("instance"), error=err,
                    extra={"description": p.get("description"), "timeout": p.get("timeout")})
        if source == "rq-scheduler":
            e.cron = meta.get("cron_string")
            e.interval = int(meta["interval"]) if meta.get("interval") else None
            e.repeat = int(meta["repeat"]) if meta.get("repeat") is not None else None
            e.local_tz = bool(meta.get("use_local_timezone"))
        else:
            e.repeat = p.get("repeats_left")
            e.intervals = p.get("repeat_intervals")
        out.append(e)

    for key in sorted(_text(k) for k in conn.scan_iter(f"{prefix}:scheduled:*")):
        for job_id, score in conn.zrange(key, 0, -1, withscores=True):
            from_job("rq-scheduled", key, _text(job_id), score)
    sched_key = f"{prefix}:scheduler:scheduled_jobs"
    if conn.exists(sched_key):
        for job_id, score in conn.zrange(sched_key, 0, -1, withscores=True):
            from_job("rq-scheduler", sched_key, _text(job_id), score)
    for key in sorted(_text(k) for k in conn.scan_iter(f"{prefix}:cron_scheduler:*")):
        h = {_text(k): _text(v) for k, v in conn.hgetall(key).items()}
        try:
            cron_jobs = json.loads(h.get("cron_jobs") or "[]")
        except ValueError:
            cron_jobs = []
        for d in cron_jobs:
            fn = d.get("func_name")
            if fn and any(fn.startswith(s) for s in skip_funcs):
                continue
            args, kwargs, err = d.get("args"), d.get("kwargs"), None
            try:
                args = tuple(json.loads(args)) if args else ()
                kwargs = json.loads(kwargs) if kwargs else {}
            except (TypeError, ValueError):
                err = "its args/kwargs were not JSON-serialisable when RQ stored them"
            nxt = d.get("next_enqueue_time")
            out.append(RQEntry("rq-cron", key, None, fn, args, kwargs, d.get("queue_name"),
                               when=_utcparse(nxt) if nxt else None, cron=d.get("cron"),
                               interval=int(d["interval"]) if d.get("interval") else None, error=err,
                               extra={"name": d.get("name"), "host": h.get("hostname"),
                                      "config_file": h.get("config_file"), "timeout": d.get("job_timeout")}))
    return out


def _utcparse(s: str) -> datetime | None:
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


# -- an entry -> a callable job ---------------------------------------------------------------------


def target_of(func_name: str, search: Iterable[str]) -> str:
    """``pkg.mod.func`` -> ``pkg.mod:func``: the longest dotted prefix that is a module file under one
    of ``search`` (no import), else everything before the last dot."""
    parts = func_name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        rel = Path(*parts[:cut])
        for base in search:
            b = Path(base or ".")
            if (b / rel).with_suffix(".py").is_file() or (b / rel / "__init__.py").is_file():
                return f"{'.'.join(parts[:cut])}:{'.'.join(parts[cut:])}"
    return f"{'.'.join(parts[:-1])}:{parts[-1]}" if len(parts) > 1 else func_name


def _schedule(e: RQEntry) -> tuple[dict | None, str, list[str], str | None]:
    """(schedule spec, timezone, notes, reason it cannot move)."""
    notes: list[str] = []
    if e.cron:
        if e.source == "rq-cron" or e.local_tz:
            tz = host_timezone()
            notes.append(f"RQ matches the cron fields in the scheduler host's local time: taken as {tz} "
                         "(this machine's zone; pass the job through a definition file to change it)")
        else:
            tz = "UTC"
        if e.repeat is not None:
            return None, tz, notes, (f"its cron schedule stops after {e.repeat} more run(s), which a cron schedule "
                                     "cannot say")
        return {"crontab": e.cron}, tz, notes, None
    interval = e.interval
    repeat = e.repeat
    if e.intervals is not None:
        ivs = sorted(set(e.intervals))
        if len(ivs) != 1:
            return None, "UTC", notes, (f"its RQ Repeat intervals differ ({e.intervals}): no one schedule "
                                        "fires like that")
        interval = ivs[0]
        if interval == 0 and repeat:
            return None, "UTC", notes, "its RQ Repeat runs again immediately after each run, not on a schedule"
        if repeat:
            notes.append(f"RQ Repeat schedules each repeat {interval}s after the previous run ended; Prefect fires "
                         "on a fixed grid with that interval")
    if interval:
        when = e.when
        if when is None and e.source == "rq-cron":  # never ran: RQ cron runs it at start, then every interval
            when = datetime.now(UTC).replace(microsecond=0)
            notes.append("RQ cron has not run it yet (it runs an interval job when it starts): the grid starts "
                         "at the import")
        if when is None:
            return None, "UTC", notes, "its next run time is not recorded"
        e = replace(e, when=when)
        spec: dict[str, Any] = {"trigger": "interval", "seconds": int(interval),
                                "start_date": e.when.astimezone(UTC).isoformat()}
        if repeat is not None:
            runs = repeat + (1 if e.intervals is not None else 0)  # Repeat: the next run + repeats left
            spec["end_date"] = (e.when + timedelta(seconds=interval * max(0, runs - 1))).astimezone(UTC).isoformat()
        if e.source != "rq-scheduled":
            notes.append(f"{e.source} counts the interval from when it enqueued; Prefect fires on a fixed grid")
        return spec, "UTC", notes, None
    if e.when is None:
        return None, "UTC", notes, "it has no next run time"
    if e.intervals is not None and repeat:
        return None, "UTC", notes, "its RQ Repeat has no interval"
    return {"trigger": "date", "run_date": e.when.astimezone(UTC).isoformat()}, "UTC", notes, None


def _opaque(v, path: str) -> list[str]:
    if isinstance(v, Opaque):
        return [f"{path} (a {v.ref} object)"]
    if isinstance(v, dict):
        return [x for k, y in v.items() for x in _opaque(y, f"{path}.{k}")]
    if isinstance(v, (list, tuple, set, frozenset)):
        return [x for i, y in enumerate(v) for x in _opaque(y, f"{path}[{i}]")]
    return []


def convert(e: RQEntry, *, taken: set[str], redis_url: str, prefix: str, code_location: str | None = None,
            shadow: str | None = None, existing: Job | None = None) -> RQItem:
    def cannot(reason: str) -> RQItem:
        return RQItem(e, "cannot-move", None, reason)

    if e.error:
        return cannot(e.error)
    if not e.func_name:
        return cannot("it names no function")
    if e.instance is not None:
        what = e.instance.ref if isinstance(e.instance, Opaque) else type(e.instance).__name__
        return cannot(f"its function is the method {e.func_name} of a {what} object pickled in the job, which "
                      "cannot be rebuilt elsewhere: call it from a module-level function")
    if "<lambda>" in e.func_name or "<locals>" in e.func_name:
        return cannot(f"its function {e.func_name} is a lambda or nested function")
    bad = _opaque(e.args or (), "args") + _opaque(e.kwargs or {}, "kwargs")
    if bad:
        return cannot("argument(s) " + ", ".join(bad) + " hold objects of classes cutover does not read")
    recorded_when = e.when  # what Redis says (legacy.next_run_time), before any default below
    if e.when is None and existing is not None and (existing.schedule or {}).get("start_date"):
        e = replace(e, when=datetime.fromisoformat(existing.schedule["start_date"]))  # the grid of the first import
    spec, tz, notes, why = _schedule(e)
    if why:
        return cannot(why)
    try:
        args = encode_value(list(e.args or ()), path="args")
        kwargs = encode_value(dict(e.kwargs or {}), path="kwargs")
    except Unencodable as x:
        return cannot(str(x))
    search = [code_location] if code_location and not code_location.startswith("package:") else []
    target = target_of(e.func_name, [*search, *sys.path])
    if existing is not None:
        jid = existing.id
    else:
        base = _SLUG.sub("-", (e.extra.get("name") or e.func_name.rpartition(".")[2]).lower()).strip("-_") or "job"
        jid, k = base, 2
        while jid in taken:
            jid, k = f"{base}-{k}", k + 1
        taken.add(jid)
    timeout = e.extra.get("timeout")
    legacy = {"orchestrator": ORCHESTRATOR, "source": e.source, "redis": redact_url(redis_url), "key_prefix": prefix,
              "key": e.key, "rq_job_id": e.rq_job_id, "func_name": e.func_name, "queue": e.queue,
              "next_run_time": recorded_when.timestamp() if recorded_when else None, "repeat": e.repeat,
              **{k: v for k, v in e.extra.items() if v not in (None, "") and k != "timeout"}}
    raw = {"id": jid, "kind": CALLABLE, "target": target, "args": args, "kwargs": kwargs,
           "code_location": code_location or (existing.code_location if existing else None),
           "schedule": spec, "timezone": tz, "legacy": legacy, "shadow": shadow or (existing.shadow if existing else None)}
    if timeout not in (None, "", "None", "-1"):
        try:
            raw["timeout_s"] = float(timeout)
        except ValueError:
            pass
    try:
        job = validate_job(raw, where=f"{e.source} job {e.rq_job_id or e.func_name}")
    except InputError as x:
        return cannot(x.one_line())
    if existing is None:
        return RQItem(e, "create", job, None, notes)
    from cutover.core.records.jobs import values_of

    same = values_of(existing) == values_of(job)
    return RQItem(e, "unchanged" if same else "update", job, None, notes)


def _identity(e: RQEntry) -> tuple:
    return (e.source, e.rq_job_id) if e.rq_job_id else (e.source, e.key, e.extra.get("name"), e.func_name)


def plan_rq_jobs(conn, ws, *, redis_url: str, prefix: str = "rq", code_location: str | None = None,
                 shadow: str | None = None, read_inventory: bool = True) -> list[RQItem]:
    """What importing the team's RQ schedules would do (reads only)."""
    jobs = ws.jobs.list() if read_inventory else []
    taken = {j.id for j in jobs} | ({i.id for i in ws.ingestions.list()} if read_inventory else set())
    known = {}
    for j in jobs:
        lg = j.legacy
        if lg.get("orchestrator") == ORCHESTRATOR:
            key = (lg.get("source"), lg.get("rq_job_id")) if lg.get("rq_job_id") else \
                (lg.get("source"), lg.get("key"), lg.get("name"), lg.get("func_name"))
            known[key] = j
    return [convert(e, taken=taken, redis_url=redis_url, prefix=prefix, code_location=code_location, shadow=shadow,
                    existing=known.get(_identity(e)))
            for e in track(read_entries(conn, prefix=prefix), "importing RQ jobs")]


def apply_rq_jobs(ws, items: list[RQItem]) -> None:
    todo = [i.job for i in items if i.action in ("create", "update")]
    if todo:
        ws.jobs.upsert(todo, replace_existing=True, taken={i.id for i in ws.ingestions.list()})


# -- runs from RQ's registries ------------------------------------------------------------------------


def _ts(v) -> datetime | None:
    t = _text(v)
    return _utcparse(t) if t else None


def record_registry_runs(conn, ws, *, prefix: str = "rq", dry_run: bool = False) -> list[dict]:
    """Legacy run records of the imported RQ jobs from the finished/failed registries and each job's
    result stream; returns the runs found (new ones written unless ``dry_run``)."""
    jobs = [j for j in ws.jobs.list() if j.legacy.get("orchestrator") == ORCHESTRATOR]
    by_rq_id = {j.legacy["rq_job_id"]: j for j in jobs if j.legacy.get("rq_job_id")}
    by_id = {j.id: j for j in jobs}
    by_func = {(j.legacy.get("func_name"), j.legacy.get("queue")): j for j in jobs if not j.legacy.get("rq_job_id")}
    store = JobRunStore(ws.autoloader_engine)
    found: list[dict] = []
    queues = {j.legacy.get("queue") for j in jobs if j.legacy.get("queue")}
    for q in sorted(queues):
        for status, key in ((SUCCESS, f"{prefix}:finished:{q}"), (FAILED, f"{prefix}:failed:{q}")):
            for raw_id in conn.zrange(key, 0, -1):
                rq_id = _text(raw_id)
                h = {_text(k): v for k, v in conn.hgetall(f"{prefix}:job:{rq_id}").items()}
                job = by_rq_id.get(rq_id)
                one_off = rq_id.startswith("cutover-run-")  # a run now: cutover-run-<hex12>-<job> (legacy.rq.teamside)
                if one_off:
                    job = by_id.get(rq_id[len("cutover-run-") + 13:])
                if job is None and h:
                    p, _ = _payload(conn, prefix, rq_id)
                    job = by_func.get((p.get("func_name"), q))
                if job is None:
                    continue
                for run in _executions(conn, prefix, rq_id, h, status):
                    rid = hashlib.sha1(f"rq|{rq_id}|{run['ended_at'].isoformat()}".encode()).hexdigest()[:32]
                    found.append({"job_id": job.id, "run_id": rid, **{k: (v.isoformat() if isinstance(v, datetime)
                                                                          else v) for k, v in run.items()}})
                    if not dry_run:
                        store.record(job.id, run["status"], started_at=run["started_at"], ended_at=run["ended_at"],
                                     external_id=rq_id, error=run.get("error"), run_id=rid,
                                     trigger="manual" if one_off else "scheduled",
                                     output_tail=run.get("output"))
    return found


def _executions(conn, prefix: str, rq_id: str, h: dict, status: str) -> list[dict]:
    """Each run of an RQ job id: its result stream (one entry per execution, RQ >= 1.12), else the
    job hash's last run."""
    out = []
    try:
        entries = conn.xrange(f"{prefix}:results:{rq_id}")
    except Exception:  # noqa: BLE001 - no streams (old Redis)
        entries = []
    started = _ts(h.get("started_at"))
    for sid, fields in entries:
        f = {_text(k): _text(v) for k, v in fields.items()}
        ms = int(_text(sid).split("-")[0])
        end = datetime.fromtimestamp(float(f["execution_ended_at"]), UTC) if f.get("execution_ended_at") \
            else datetime.fromtimestamp(ms / 1000, UTC)
        start = datetime.fromtimestamp(float(f["execution_started_at"]), UTC) if f.get("execution_started_at") \
            else (started if started and started <= end else end)
        st = SUCCESS if f.get("type") == "1" else FAILED
        exc = None
        if f.get("exc_string"):
            try:
                exc = zlib.decompress(base64.b64decode(f["exc_string"])).decode("utf-8", "replace")
            except (ValueError, zlib.error):
                exc = None
        err = redact_output(exc)[-2000:] if exc else None
        out.append({"status": st, "started_at": start, "ended_at": end,
                    "error": err.strip().splitlines()[-1] if err else None, "output": err})
    if out:
        return out
    end = _ts(h.get("ended_at"))
    if end is None:
        return []
    exc = h.get("exc_info")
    if exc:
        try:
            exc = zlib.decompress(exc)
        except zlib.error:
            pass
    err = redact_output(_text(exc) or "")[-2000:] or None
    return [{"status": status, "started_at": started or end, "ended_at": end,
             "error": err.strip().splitlines()[-1] if err else None, "output": err}]


def redis_display(url: str) -> str:
    return redact_url(url) or ""


__all__ = ["RQEntry", "RQItem", "apply_rq_jobs", "plan_rq_jobs", "read_entries", "record_registry_runs", "target_of"]
