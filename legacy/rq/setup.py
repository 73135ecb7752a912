"""`cutover rq import` and `cutover rq sync`: bring an RQ setup into cutover, keep Redis in step with it.

import: a YAML/JSON file with the RQ setup (the keys of rq.json, see ``legacy.rq.model``) whose
``workflows`` name the ingestions RQ runs -> the ingestions into the inventory (those not there
yet need their definition: ``--definitions``), rq.json written (merged over an existing one:
the file's settings and workflows win), APScheduler jobs of those ingestions removed (RQ runs
them now: two schedulers must never both fire one ingestion), then sync.

sync: every workflow's definition and kickoff in Redis made to match rq.json and the inventory
(``RQAdapter.ensure_job``: a held workflow stays held); definitions in Redis (under this
key_prefix) of ingestions no longer in rq.json are removed with their kickoffs.

Both are planned first (reads only): ``--dry-run`` shows the plan and writes nothing anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable

from cutover.core.errors import InputError
from cutover.core.records.ingestions import load_yaml_or_json, values_of
from cutover.core.schedule.triggers import describe
from cutover.protocol import CREATED, UNCHANGED, UPDATED
from legacy.rq.model import RQConfig


def load_file(path: Path) -> dict[str, Any]:
    data = load_yaml_or_json(path, what="a YAML or JSON RQ setup (see docs/rq.md)")
    if not isinstance(data, dict):
        raise InputError(f"{path} must hold a mapping (redis_url, queue, workflows ...)", fix="see docs/rq.md")
    return data


@dataclass
class ImportItem:
    ingestion_id: str
    action: str  # create | update | unchanged (the ingestion in the inventory)
    dag: str
    queue: str
    schedule: str
    apscheduler_job: bool  # an APScheduler job of it exists: removed (RQ runs it)
    changes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ImportPlan:
    config: Any  # RQConfig
    items: list[ImportItem]
    ingestions: list[Any]  # Ingestion objects to write (create/update)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"config": self.config.as_dict(public=True), "items": [i.as_dict() for i in self.items],
                "warnings": self.warnings}


def plan_import(ws, path: Path, *, redis_url: str | None = None, definitions: Iterable[Any] = (),
                replace_existing: bool = False, read_inventory: bool = True,
                apscheduler_jobs: Iterable[str] = ()) -> ImportPlan:
    """``apscheduler_jobs``: the ingestions that have an APScheduler job (read by the caller,
    ``cutover.registry.sides.plan_rq_import``: this side does not read the APScheduler job store)."""
    data = load_file(path)
    cur = RQConfig.load(ws.settings)
    merged = cur.as_dict() if cur is not None else {}
    for k, v in data.items():
        if k != "workflows":
            merged[k] = v
    merged["workflows"] = {**(merged.get("workflows") or {}), **(data.get("workflows") or {})}
    if redis_url:
        merged["redis_url"] = redis_url
    cfg = RQConfig.from_dict(merged, where=str(path))
    if not data.get("workflows"):
        raise InputError(f"{path} names no workflow", fix="add workflows: {<ingestion id>: {partitions: 2}}")
    defs = {d.id: d for d in definitions}
    aps_jobs = set(apscheduler_jobs)
    items, todo, warnings = [], [], []
    for iid in sorted(data["workflows"]):
        have = ws.ingestions.find(iid) if read_inventory else None
        if iid in defs:
            want = defs[iid]
        elif have is not None:
            want = have
        else:
            raise InputError(f"workflow {iid} of {path} runs an ingestion that is not in the inventory",
                             fix="pass --definitions FILE (YAML/JSON as `cutover ingestion add --from-file` takes) "
                                 "or add it first")
        if have is None:
            action, changes = "create", []
        else:
            a, b = values_of(have), values_of(want)
            changes = sorted(k for k in b if a.get(k) != b.get(k))
            action = "update" if changes else "unchanged"
            if changes and not replace_existing:
                raise InputError(f"ingestion {iid} already exists with another definition ({', '.join(changes)})",
                                 fix="pass --replace to update it")
        if want.schedule is not None and "crontab" in want.schedule:
            raise InputError(f"ingestion {iid} has a crontab schedule: cron runs it (cutover cron), not RQ",
                             fix="give it a cron/frequency/trigger schedule, or leave it to the crontab side")
        if action != "unchanged":
            todo.append(want)
        wf = cfg.workflow(iid)
        items.append(ImportItem(iid, action, wf.describe(), cfg.queue_of(wf), describe(want.schedule),
                                iid in aps_jobs, changes))
        if iid in aps_jobs:
            warnings.append(f"{iid}: its APScheduler job is removed: RQ runs it from now on")
    return ImportPlan(cfg, items, todo, warnings)


def apply_import(ws, plan: ImportPlan, *, remove_apscheduler_job: Callable[[str], Any] | None = None) -> None:
    """Write the plan: ingestions (one transaction), rq.json, APScheduler jobs of RQ ingestions removed
    (by ``remove_apscheduler_job``, given by ``cutover.registry.sides.apply_rq_import``).
    (The sync into Redis is the caller's next step.)"""
    if plan.ingestions:
        ws.ingestions.upsert(plan.ingestions, replace_existing=True)
    plan.config.save(ws.settings)
    gone = [it.ingestion_id for it in plan.items if it.apscheduler_job]
    if gone and remove_apscheduler_job is not None:
        for iid in gone:
            remove_apscheduler_job(iid)


@dataclass
class SyncItem:
    ingestion_id: str
    action: str  # create | update | unchanged | remove
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def plan_sync(adapter, ids: Iterable[str] | None = None) -> list[SyncItem]:
    """What sync would do (reads only)."""
    ws, cfg = adapter.ws, adapter.config
    wanted = sorted(cfg.workflows) if ids is None else list(dict.fromkeys(ids))
    unknown = [i for i in wanted if i not in cfg.workflows]
    if unknown:
        raise InputError(f"{', '.join(unknown)}: no RQ workflow in {cfg.path(ws.settings)}",
                         fix=f"workflows are {', '.join(sorted(cfg.workflows)) or '(none)'}; add them with `cutover rq import`")
    out = []
    for iid in wanted:
        ing = ws.ingestions.get(iid)
        want = adapter.definition_for(ing)
        cur = adapter.definition(iid)
        if cur is None:
            out.append(SyncItem(iid, "create", f"{want.describe() or 'manual'}; {cfg.workflow(iid).describe()}"))
        elif cur.fingerprint() != want.fingerprint():
            what = [k for k in ("queue", "steps", "schedule", "timezone", "env", "opts")
                    if getattr(cur, k) != getattr(want, k)]
            out.append(SyncItem(iid, "update", ", ".join(what)))
        else:
            out.append(SyncItem(iid, "unchanged"))
    if ids is None:
        for iid in adapter._call(adapter.store.def_ids):
            if iid not in cfg.workflows:
                out.append(SyncItem(iid, "remove", "not in rq.json any more"))
    return out


def apply_sync(adapter, items: list[SyncItem]) -> list[SyncItem]:
    done = []
    for it in items:
        if it.action == "remove":
            adapter.remove_job(it.ingestion_id)
            done.append(it)
        else:  # unchanged too: ensure_job puts back a kickoff that went missing
            action = adapter.ensure_job(adapter.ws.ingestions.get(it.ingestion_id))
            done.append(replace(it, action={CREATED: "create", UPDATED: "update", UNCHANGED: "unchanged"}[action]))
    return done
