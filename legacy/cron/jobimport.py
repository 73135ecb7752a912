"""`cutover cron import --jobs`: every other job line of the crontab becomes a ``command`` job, its
line wrapped in place by ``cutover cron exec`` (reversibly: `cutover cron import --undo`).

The lines are read as cron reads them (``legacy.cron.generic``); see there for the rules (env lines
per position, macros, ``%``, ``#``, @reboot).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

from cutover.core.errors import InputError
from cutover.core.progress import track
from cutover.core.records.jobs import COMMAND, Job, validate_job
from cutover.core.schedule.translate import translate
from cutover.core.schedule.triggers import check_timezone, describe
from legacy.cron.crontab import CrontabFile, parse_crontab
from legacy.cron.generic import CRON_ONLY, DEFAULT_SHELL, CronLine, exec_prefix, job_id_for, read_lines, unwrap_text, \
    wrap_line

ORCHESTRATOR = "cron"


@dataclass
class JobItem:
    """One job line and the command job it becomes."""

    line: int
    job: Job
    action: str  # create | update | unchanged
    line_action: str  # wrap | wrapped (already wrapped by an earlier import)
    text: str  # the line as it is now
    wrapped: str  # the line as cutover writes it
    prefect_schedule: str | None = None
    translate_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "job_id": self.job.id, "kind": self.job.kind, "target": self.job.describe_target(),
                "schedule": describe(self.job.schedule), "timezone": self.job.schedule_timezone,
                "prefect_schedule": self.prefect_schedule, "translate_error": self.translate_error,
                "stdin": self.job.stdin is not None, "action": self.action, "line_action": self.line_action,
                "shadow": self.job.shadow}


@dataclass
class JobPlan:
    crontab: str
    items: list[JobItem] = field(default_factory=list)
    lines: list[dict[str, Any]] = field(default_factory=list)  # every other line, with what it is
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"jobs": [i.as_dict() for i in self.items], "lines": self.lines, "problems": self.problems}


def _prefect(spec: dict, tz: str, verify_days: int = 366) -> tuple[str | None, str | None]:
    """(the Prefect schedule, None) when it fires as cron over ``verify_days`` from now (the
    verification of ``cutover.core.schedule.verify``; 0: not verified), else (it or None, why not)."""
    from datetime import datetime, timedelta, timezone

    from cutover.core.schedule.verify import verify

    try:
        text = translate(spec, tz).describe()
    except InputError as e:
        return None, e.one_line()
    if verify_days <= 0:
        return text, None
    r = verify(spec, tz, start=datetime.now(timezone.utc), horizon=timedelta(days=verify_days))
    return text, None if r.ok else f"schedule verification over {verify_days} days: {r.summary()}"


def plan_jobs(ws, crontab: str | Path, *, default_tz: str, skip: Iterable[int] = (), read_inventory: bool = True,
              shadow: str | None = None, python: str | None = None, enabled: bool = True,
              verify_days: int = 366) -> JobPlan:
    """What importing the command lines would do (reads only). ``skip``: line numbers the ingestion
    import takes (marked/mapped lines and the managed block); ``enabled`` False: list the lines only."""
    cf = CrontabFile(crontab)
    text = cf.read_text()
    managed = {ln.n for ln in parse_crontab(text, where=str(cf.path)) if ln.in_block}
    skip = set(skip) | managed
    existing = {j.id: j for j in ws.jobs.list()} if read_inventory else {}
    taken = set(existing) | ({i.id for i in ws.ingestions.list()} if read_inventory else set())
    by_text = {(j.legacy.get("crontab"), j.legacy.get("text")): j for j in existing.values()
               if j.legacy.get("orchestrator") == ORCHESTRATOR}
    prefix = exec_prefix(python or sys.executable, str(ws.settings.home))
    plan = JobPlan(str(cf.path))
    for ln in track(read_lines(text), "importing crontab jobs"):
        if ln.n in skip:
            continue
        if ln.kind in ("blank", "comment"):
            continue
        if ln.kind == "env":
            plan.lines.append({"line": ln.n, "kind": "env", "text": ln.text,
                               "note": "applies to the job lines after it"})
            continue
        if ln.kind in ("reboot", "invalid"):
            plan.lines.append({"line": ln.n, "kind": ln.kind, "text": ln.text,
                               "reason": f"not schedulable: {ln.reason}" if ln.kind == "reboot" else ln.reason})
            continue
        if ln.kind == "wrapped":
            job = existing.get(ln.job_id or "")
            if job is None:
                if read_inventory:
                    plan.problems.append(f"line {ln.n} runs `cutover cron exec --job {ln.job_id}`, a job the inventory "
                                         f"does not have: restore the line from the job's backup "
                                         f"({cf.path.name}.bak.*) and import again")
                continue
            ps, err = _prefect(job.schedule, job.timezone, verify_days) if job.schedule else ("manual", None)
            plan.items.append(JobItem(ln.n, job, "unchanged", "wrapped", ln.text, ln.text, ps, err))
            continue
        if not enabled:
            plan.lines.append({"line": ln.n, "kind": "job", "text": ln.text,
                               "reason": "not imported: pass --jobs to import it as a command job"})
            continue
        cur = by_text.get((str(cf.path), ln.text))
        jid = cur.id if cur is not None else job_id_for(ln, taken)
        try:
            job = _job_of(ln, jid, str(cf.path), default_tz, shadow=shadow if shadow else (cur.shadow if cur else None))
        except InputError as e:
            plan.lines.append({"line": ln.n, "kind": "invalid", "text": ln.text, "reason": e.one_line()})
            continue
        wrapped = wrap_line(ln, jid, prefix)
        job = replace(job, legacy={**job.legacy, "wrapped": wrapped})
        action = "create" if cur is None else ("unchanged" if _same(cur, job) else "update")
        ps, err = _prefect(job.schedule, job.timezone, verify_days)
        plan.items.append(JobItem(ln.n, job, action, "wrap", ln.text, wrapped, ps, err))
    return plan


def _same(a: Job, b: Job) -> bool:
    from cutover.core.records.jobs import values_of

    return values_of(a) == values_of(b)


def _job_of(ln: CronLine, jid: str, crontab: str, default_tz: str, *, shadow: str | None) -> Job:
    tz = ln.env.get("CRON_TZ") or default_tz
    check_timezone(tz)
    env = {k: v for k, v in ln.env.items() if k not in CRON_ONLY}
    legacy = {"orchestrator": ORCHESTRATOR, "crontab": crontab, "line": ln.n, "text": ln.text,
              "schedule_text": ln.sched_text, "shell_program": ln.env.get("SHELL") or DEFAULT_SHELL}
    if ln.env.get("MAILTO") is not None:
        legacy["mailto"] = ln.env["MAILTO"]
    if ln.env.get("CRON_TZ"):
        legacy["cron_tz"] = ln.env["CRON_TZ"]
    raw = {"id": jid, "kind": COMMAND, "shell": ln.shell_part, "stdin": ln.stdin, "env": env,
           "cwd": ln.env.get("HOME"), "schedule": {"crontab": ln.expr}, "timezone": tz, "legacy": legacy,
           "shadow": shadow}
    if not ln.shell_part.strip():
        raise InputError(f"line {ln.n} has an empty command", fix="fix the line")
    return validate_job(raw, where=f"line {ln.n}")


def apply_jobs(ws, plan: JobPlan) -> None:
    """Write the jobs (one transaction), then wrap their lines (one crontab write, backup first).
    Idempotent: a wrapped line is left alone; run again after a crash it completes the work."""
    if plan.problems:
        raise InputError(plan.problems[0], fix="fix it and import again; nothing was written")
    todo = [i.job for i in plan.items if i.action != "unchanged"]
    if todo:
        ws.jobs.upsert(todo, replace_existing=True, taken={i.id for i in ws.ingestions.list()})
    wraps = {i.line: (i.text, i.wrapped) for i in plan.items if i.line_action == "wrap"}
    if not wraps:
        return

    def change(text: str, _lines):
        lines = text.split("\n")
        for n, (before, after) in wraps.items():
            if n > len(lines) or lines[n - 1] not in (before, after):
                raise InputError(f"{plan.crontab} line {n} changed since the import was planned",
                                 fix="run the import again")
            lines[n - 1] = after
        return "\n".join(lines), None

    CrontabFile(plan.crontab).edit(change)


@dataclass
class Undo:
    crontab: str
    jobs: list[str]
    restored: bool

    def as_dict(self) -> dict[str, Any]:
        return {"crontab": self.crontab, "jobs": self.jobs, "restored": self.restored}


def undo_jobs(ws, crontab: str | Path, *, job_ids: Iterable[str] = (), dry_run: bool = False) -> Undo:
    """Put the original bytes of every wrapped line back (``job_ids``: only theirs) and take the
    imported command jobs out of the inventory (their run records stay as history)."""
    cf = CrontabFile(crontab)
    path = str(cf.path)
    want = set(job_ids)
    jobs = [j for j in ws.jobs.list() if j.legacy.get("orchestrator") == ORCHESTRATOR
            and j.legacy.get("crontab") == path and (not want or j.id in want)]
    unknown = sorted(want - {j.id for j in jobs})
    if unknown:
        raise InputError(f"no command job imported from {path} named {', '.join(unknown)}",
                         fix="`cutover ingestion list` shows the jobs")
    originals = {j.id: (j.legacy["wrapped"], j.legacy["text"]) for j in jobs if j.legacy.get("wrapped")}
    new = unwrap_text(cf.read_text(), originals)  # refuses hand-edited lines before anything changes
    if dry_run:
        return Undo(path, [j.id for j in jobs], new != cf.read_text())
    written, _ = cf.edit(lambda text, _lines: (unwrap_text(text, originals), None))
    for j in jobs:
        ws.jobs.remove(j.id)
    return Undo(path, [j.id for j in jobs], written)
