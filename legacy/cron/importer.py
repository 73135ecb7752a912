"""`cutover cron import`: crontab lines (and the wrapper's pipeline.json) into the inventory."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field, replace
from datetime import timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from cutover.core.errors import InputError
from cutover.core.progress import track
from cutover.core.records.ingestions import validate, values_of
from cutover.core.schedule.triggers import check_timezone, describe
from legacy.cron.adapter import CronAdapter
from legacy.cron.config import CronConfig, infer_from_wrapper
from legacy.cron.crontab import CrontabFile, env_of, local_timezone
from legacy.cron.jobimport import JobPlan, apply_jobs, plan_jobs

if TYPE_CHECKING:  # pragma: no cover
    from cutover.core.records.ingestions import Ingestion

UTC = timezone.utc


# -- import ----------------------------------------------------------------------------------


@dataclass
class ImportItem:
    line: int
    ingestion_id: str
    expr: str
    command: str
    action: str  # create | update | unchanged (the ingestion in the inventory)
    line_action: str  # adopt (moved into the managed block) | managed (already there)
    ingestion: "Ingestion"
    changes: list[str] = field(default_factory=list)
    by_mapping: bool = False
    text: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "ingestion_id": self.ingestion_id, "schedule": f"crontab {self.expr}",
                "timezone": self.ingestion.timezone, "command": self.command, "action": self.action,
                "line_action": self.line_action, "changes": self.changes, "by_mapping": self.by_mapping}


@dataclass
class ImportPlan:
    crontab: str
    timezone: str
    items: list[ImportItem]
    config: CronConfig
    warnings: list[str] = field(default_factory=list)
    ignored: list[dict[str, Any]] = field(default_factory=list)  # job lines that run no ingestion
    jobs: JobPlan | None = None  # the team's own command lines (legacy.cron.jobimport)

    def as_dict(self) -> dict[str, Any]:
        return {"crontab": self.crontab, "timezone": self.timezone, "items": [i.as_dict() for i in self.items],
                "config": self.config.as_dict(), "warnings": self.warnings, "ignored": self.ignored,
                **(self.jobs.as_dict() if self.jobs is not None else {})}


def _definitions_from_wrapper(command: str) -> dict[str, dict]:
    try:
        first = shlex.split(command, comments=True)[0]
    except (ValueError, IndexError):
        return {}
    cfg = Path(first).with_name("pipeline.json")
    try:
        data = json.loads(cfg.read_text()) if cfg.exists() else {}
    except ValueError:
        return {}
    return {d["id"]: d for d in data.get("ingestions") or [] if isinstance(d, dict) and d.get("id")}


def plan_import(ws, crontab: str | Path, *, mapping: dict[str, str] | None = None,
                definitions: Iterable["Ingestion"] = (), timezone: str | None = None, replace_existing: bool = False,
                run_log: str | None = None, wrapper: str | None = None, output_dir: str | None = None,
                read_inventory: bool = True, jobs: bool = False, shadow: str | None = None,
                verify_days: int = 366) -> ImportPlan:
    """What `cutover cron import` would do (reads only).

    Jobs: every job line with a marker, and unmarked job lines outside the managed block whose
    command contains a ``mapping`` key (``{"run_step.py bronze": "medallion-bronze"}``).
    Each becomes an ingestion with schedule ``{"crontab": <the 5 fields>}`` in the crontab's
    timezone: an ingestion already in the inventory keeps its definition (only schedule and
    timezone follow the crontab); a new one needs its definition -- from ``definitions`` or
    from the generated wrapper's pipeline.json. ``jobs``: every other job line becomes a command
    job (``legacy.cron.jobimport``); either way every line is listed with what it is."""
    cf = CrontabFile(crontab)
    lines = cf.lines()
    env = env_of(lines)
    tz = env.get("CRON_TZ") or timezone or local_timezone()
    check_timezone(tz)
    mapping = dict(mapping or {})
    defs = {d.id: d for d in definitions}
    items: list[ImportItem] = []
    ignored: list[dict[str, Any]] = []
    used_maps: dict[str, int] = {}
    seen: dict[str, int] = {}
    warnings: list[str] = []
    for ln in track(lines, "importing crontab lines"):
        if ln.kind not in ("job", "paused"):
            continue
        iid, by_map = ln.ingestion_id, False
        if iid is None and not ln.in_block:
            hits = [(k, v) for k, v in mapping.items() if k in (ln.command or "")]
            if len(hits) > 1:
                raise InputError(f"{cf.path} line {ln.n} matches several --map entries ({', '.join(k for k, _ in hits)})",
                                 fix="make the --map texts specific to one line")
            if hits:
                key, iid = hits[0]
                by_map = True
                if key in used_maps:
                    raise InputError(f"--map {key!r} matches lines {used_maps[key]} and {ln.n} of {cf.path}",
                                     fix="make the --map text specific to one line")
                used_maps[key] = ln.n
        if iid is None:
            if ln.kind == "job":
                ignored.append({"line": ln.n, "schedule": ln.expr, "command": ln.command,
                                "why": "no '# cutover: ingestion=<id>' marker and no --map entry"})
            continue
        if iid in seen:
            raise InputError(f"{cf.path}: ingestion {iid} runs from lines {seen[iid]} and {ln.n}",
                             fix="one line per ingestion: delete or re-mark one of them")
        seen[iid] = ln.n
        cur = ws.ingestions.find(iid) if read_inventory else None
        schedule = {"crontab": ln.expr}
        if iid in defs:
            base = defs[iid]
        elif cur is not None:
            base = cur
        else:
            raw = _definitions_from_wrapper(ln.command).get(iid)
            if raw is None:
                raise InputError(f"{cf.path} line {ln.n} runs ingestion {iid}, which is not in the inventory and has "
                                 f"no definition", fix="pass --definitions FILE (YAML/JSON as `cutover ingestion add "
                                                       "--from-file` takes) or add it first")
            base = validate(raw, where=f"{ln.command.split()[0]} pipeline.json")
        want = replace(base, schedule=schedule, timezone=tz)
        if cur is None:
            action, changes = "create", []
        else:
            a, b = values_of(cur), values_of(want)
            changes = sorted(k for k in b if a.get(k) != b.get(k))
            action = "unchanged" if not changes else "update"
            other = [c for c in changes if c not in ("schedule", "timezone")]
            if other and not replace_existing:
                raise InputError(f"ingestion {iid} already exists with another definition ({', '.join(other)})",
                                 fix="pass --replace to update it")
            if cur.schedule is not None and "crontab" not in cur.schedule:
                warnings.append(f"{iid}: its schedule was '{_describe(cur.schedule)}'; from now on cron runs it "
                                f"('crontab {ln.expr}'): remove any APScheduler job of it (`cutover legacy sync` "
                                f"reports it)")
        items.append(ImportItem(ln.n, iid, ln.expr, ln.command, action, "managed" if ln.in_block else "adopt",
                                want, changes, by_map, ln.text))
    inferred: dict[str, str] = {}
    for it in items:
        inferred = infer_from_wrapper(it.command)
        if inferred:
            break
    cfg = CronConfig(crontab=str(cf.path), run_log=run_log or inferred.get("run_log"),
                     wrapper=wrapper or inferred.get("wrapper"), timezone=tz,
                     output_dir=output_dir or inferred.get("output_dir"))
    job_plan = plan_jobs(ws, cf.path, default_tz=tz, skip={it.line for it in items}, read_inventory=read_inventory,
                         shadow=shadow, enabled=jobs, verify_days=verify_days)
    taken_lines = {i.line for i in job_plan.items}
    ignored = [ig for ig in ignored if ig["line"] not in taken_lines]
    if cfg.run_log is None and items:
        warnings.append("no run log known: pass --run-log FILE (the JSON lines the wrapper appends), "
                        "else run records cannot be read from the cron side")
    unused = sorted(set(mapping) - set(used_maps))
    if unused:
        raise InputError(f"--map {', '.join(repr(u) for u in unused)} matches no unmarked line outside the managed "
                         f"block of {cf.path}", fix="check the text (it is matched against the command)")
    return ImportPlan(str(cf.path), tz, items, cfg, warnings, ignored, job_plan)


def _describe(spec) -> str:
    return describe(spec)


def apply_import(ws, plan: ImportPlan) -> ImportPlan:
    """Write the plan: ingestions (one transaction), then adopt the lines (one crontab write, backup
    first), then save the cron config. Idempotent: importing again changes nothing."""
    if plan.jobs is not None:
        apply_jobs(ws, plan.jobs)  # in place, before adoption moves the ingestion lines
    todo = [it.ingestion for it in plan.items if it.action != "unchanged"]
    if todo:
        ws.ingestions.upsert(todo, replace_existing=True)
    adapter = CronAdapter(ws, plan.config)
    mapping = {it.text: it.ingestion_id for it in plan.items if it.by_mapping and it.line_action == "adopt"}
    if any(it.line_action == "adopt" for it in plan.items):
        adapter.adopt(mapping)
    plan.config.save(ws.settings)
    return plan
