"""ingestion add|list|show|export|remove, runs, ledger, table counts|snapshots: the inventory and
what was ingested (read-only except ingestion add/remove)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

from cutover.commands.result import Result
from cutover.core.config import parse_duration
from cutover.core.errors import InputError, NotFound
from cutover.core.output import to_json
from cutover.core.records.ingestions import Ingestion, check_source, validate
from cutover.core.records.jobs import Job, load_inventory_file
from cutover.core.schedule.triggers import parse_schedule_text
from cutover.core.validate import check_limit
from cutover.core.workspace import Workspace
from cutover.registry.sides import LegacySide


def since_time(text: str | None, *, what: str = "--since") -> datetime | None:
    """The start of a window given as a duration back from now ('24h', '7d'); None for no window."""
    if not text:
        return None
    return datetime.now(timezone.utc) - timedelta(seconds=parse_duration(text, what=what))


# -- ingestion add | list | show | export | remove -------------------------------------------


@dataclass
class IngestionChanges(Result):
    """What ``ingestion add`` did (or would do): [(create|update|unchanged, ingestion)]."""

    actions: list[tuple[str, Ingestion]]
    dry_run: bool
    jobs: list[tuple[str, Job]] = field(default_factory=list)  # generic jobs of the same file

    def counts(self) -> dict[str, int]:
        every = [*self.actions, *self.jobs]
        return {a: sum(1 for x, _ in every if x == a) for a in ("create", "update", "unchanged")}

    def as_dict(self) -> dict:
        return {"dry_run": self.dry_run,
                "actions": [{"action": a, "kind": "ingestion", **i.public_dict()} for a, i in self.actions]
                + [{"action": a, **j.public_dict()} for a, j in self.jobs],
                **self.counts()}


def ingestion_add(ws: Workspace, ingestion_id: str | None = None, *, from_file: Path | None = None,
                  source: str | None = None, pattern: str = "*", fmt: str | None = None, table: str | None = None,
                  schedule: str | None = None, tz: str = "UTC", size_class: str = "small", priority: str = "normal",
                  key_columns: str | None = None, owner: str | None = None, name: str | None = None,
                  replace: bool = False, dry_run: bool = False) -> IngestionChanges:
    """Add ingestions, from the fields or a YAML/JSON file (all or nothing). The file may hold generic
    jobs too (items with ``kind: callable`` or ``kind: command``, cutover.core.records.jobs)."""
    jobs: list[Job] = []
    if from_file:
        if ingestion_id or source or table:
            raise InputError("--from-file cannot be combined with an id or --source/--table", fix="use one or the other")
        items, jobs = load_inventory_file(from_file)
    else:
        if not ingestion_id:
            raise InputError("no ingestion id given", fix="cutover ingestion add ID --source DIR --format csv --table ns.t")
        given = {
            "id": ingestion_id, "name": name, "source_uri": source, "pattern": pattern, "format": fmt, "table": table,
            "schedule": parse_schedule_text(schedule) if schedule else None, "timezone": tz,
            "size_class": size_class, "priority": priority, "key_columns": key_columns, "owner": owner,
        }
        items = [validate({k: v for k, v in given.items() if v is not None})]  # an option not given: missing
    for ing in items:
        check_source(ing)
    if dry_run:
        if not ws.settings.is_embedded_autoloader or ws.settings.home.joinpath("autoloader.db").exists():
            _check_ids(ws, items, jobs)
            return IngestionChanges(ws.ingestions.plan_upsert(items), True, ws.jobs.plan_upsert(jobs))
        # fresh embedded workspace: do not create the DB just to answer a dry run
        return IngestionChanges([("create", i) for i in items], True, [("create", j) for j in jobs])
    _check_ids(ws, items, jobs)
    if jobs and not replace:  # refuse before anything is written (all or nothing)
        clash = [j.id for a, j in ws.jobs.plan_upsert(jobs) if a == "update"]
        if clash:
            raise InputError(f"job(s) {', '.join(clash)} already exist with another definition",
                             fix="pass --replace to update them")
    done = ws.ingestions.upsert(items, replace_existing=replace)
    return IngestionChanges(done, False, ws.jobs.upsert(jobs, replace_existing=replace) if jobs else [])


def _check_ids(ws: Workspace, items: list[Ingestion], jobs: list[Job]) -> None:
    """Ingestions and jobs share ids: a job may not take an ingestion's id, nor the reverse."""
    if not jobs and not items:
        return
    job_ids = {j.id for j in ws.jobs.list()} if items else set()
    ing_ids = {i.id for i in ws.ingestions.list()} if jobs else set()
    clash = sorted({i.id for i in items} & job_ids | {j.id for j in jobs} & ing_ids)
    if clash:
        raise InputError(f"id(s) {', '.join(clash)} already name something else in the inventory",
                         fix="give each ingestion and job its own id (they share ids)")


@dataclass
class Ingestions(Result):
    items: list[Ingestion]
    jobs: list[Job] = field(default_factory=list)  # the generic jobs (callables, commands)

    def as_dict(self) -> list[dict]:
        return [{"kind": "ingestion", **i.public_dict()} for i in self.items] + [j.public_dict() for j in self.jobs]


def ingestion_list(ws: Workspace) -> Ingestions:
    """Every ingestion and generic job (credentials and env values never shown)."""
    return Ingestions(ws.ingestions.list(), ws.jobs.list())


def ingestion_show(ws: Workspace, ingestion_id: str) -> dict[str, Any]:
    """One ingestion (or generic job) in full (credentials masked)."""
    job = ws.jobs.find(ingestion_id) if ws.ingestions.find(ingestion_id) is None else None
    if job is not None:
        return job.public_dict()
    return ws.ingestions.get(ingestion_id).public_dict()


def ingestion_export(ws: Workspace, fmt: str = "yaml") -> str:
    """Every definition in the --from-file form (credentials masked), as YAML or JSON text; generic
    jobs in the same list with their ``kind``."""
    doc = {"ingestions": [i.definition() for i in ws.ingestions.list()] + [j.definition() for j in ws.jobs.list()]}
    if fmt == "json":
        return to_json(doc)
    return yaml.safe_dump(doc, sort_keys=False).rstrip()


def definition_schema(what: str = "definitions", fmt: str = "json") -> Any:
    """The JSON Schema of a definition file (``what="definitions"``) or of a saved plan (``"plan"``),
    from the typed models; ``fmt="markdown"``: the field tables of docs/definitions.md."""
    # pydantic loads here: only this command and the ones reading a file need it
    from cutover.core.schema.definitions import DefinitionFile, fields_markdown
    from cutover.core.schema.planfile import PlanFile

    if what not in ("definitions", "plan"):
        raise InputError(f"no schema of {what!r}", fix="use definitions or plan")
    if fmt == "markdown":
        if what == "plan":
            raise InputError("--markdown shows the definition fields only", fix="drop --plan, or --markdown")
        return fields_markdown()
    return (DefinitionFile if what == "definitions" else PlanFile).model_json_schema()


@dataclass
class Removed(Result):
    ids: list[str]
    dry_run: bool


def ingestion_remove(ws: Workspace, ingestion_ids, *, dry_run: bool = False, echo=None) -> Removed:
    """Remove ingestions and their legacy (APScheduler) jobs; runs and ledger rows stay as history.
    Every id must exist, or nothing happens. ``echo`` hears of each removal as it is done."""
    jobs = [ws.jobs.get(i) for i in ingestion_ids if ws.ingestions.find(i) is None]  # generic jobs: the inventory row
    items = [ws.ingestions.get(i) for i in ingestion_ids if i not in {j.id for j in jobs}]
    if dry_run:
        return Removed([i.id for i in items] + [j.id for j in jobs], True)
    for job in jobs:  # its legacy scheduler keeps it (`cutover cron import --undo` unwraps a crontab line)
        ws.jobs.remove(job.id)
        if echo is not None:
            echo(job.id)
    legacy = LegacySide(ws)
    for ing in items:
        legacy.aps.remove_job(ing.id)
        ws.ingestions.remove(ing.id)
        if echo is not None:
            echo(ing.id)
    return Removed([i.id for i in items] + [j.id for j in jobs], False)


# -- runs | ledger ----------------------------------------------------------------------------


@dataclass
class Runs(Result):
    records: list

    def as_dict(self) -> list[dict]:
        return [r.as_dict() for r in self.records]


def runs(ws: Workspace, *, ingestion_id: str | None = None, since: str | None = None, orchestrator: str | None = None,
         mode: str | None = None, limit: int = 50) -> Runs:
    """Run records, newest first."""
    check_limit(limit)
    window = since_time(since)
    if ingestion_id:
        ws.ingestions.get(ingestion_id)
    return Runs(ws.runs.list(ingestion_id=ingestion_id, since=window, orchestrator=orchestrator, mode=mode,
                             limit=limit))


@dataclass
class Ledger(Result):
    entries: list | None = None  # LedgerEntry; None with summary
    counts: dict[str, int] | None = None  # status -> files, with summary

    def as_dict(self):
        if self.counts is not None:
            return self.counts
        return [e.as_dict() for e in self.entries or []]


def ledger(ws: Workspace, ingestion_id: str, *, namespace: str = "live", status: str | None = None,
           summary: bool = False) -> Ledger:
    """The processed-file ledger of one ingestion and namespace (or its counts per status)."""
    ws.ingestions.get(ingestion_id)
    led = ws.ledger(ingestion_id, namespace)
    if summary:
        return Ledger(counts=led.counts())
    return Ledger(entries=led.entries(status=status))


# -- table counts | snapshots --------------------------------------------------------------------


@dataclass
class TableCounts(Result):
    tables: list[dict] = field(default_factory=list)

    def as_dict(self) -> list[dict]:
        return self.tables


def table_counts(ws: Workspace, ingestion_ids=()) -> TableCounts:
    """Row counts per branch from snapshot metadata (no scan), per ingestion (default: all)."""
    out = TableCounts()
    for ing in ws.ingestions.resolve(ingestion_ids, all_=not ingestion_ids):
        d = ws.catalog.describe(ing.table)
        branches = (d or {}).get("branches", {})
        out.tables.append({
            "ingestion": ing.id, "table": ing.table, "exists": d is not None,
            "main_total_records": branches.get("main", {}).get("total_records"),
            "main_snapshots": branches.get("main", {}).get("snapshots"),
            "shadow_total_records": branches.get("cutover-shadow", {}).get("total_records"),
            "shadow_snapshots": branches.get("cutover-shadow", {}).get("snapshots"),
        })
    return out


@dataclass
class Snapshots(Result):
    snapshots: list  # SnapshotInfo, newest first

    def as_dict(self) -> list[dict]:
        return [s.__dict__ for s in self.snapshots]


def table_snapshots(ws: Workspace, table_name: str, *, branch: str = "main", limit: int = 50) -> Snapshots:
    check_limit(limit)
    """Snapshots of a branch, newest first, with their cutover properties."""
    tbl = ws.catalog.find(table_name)
    if tbl is None:
        raise NotFound(f"no Iceberg table {table_name!r}", fix="see `cutover table counts` for the tables in use")
    if branch not in tbl.metadata.refs:
        raise NotFound(f"table {table_name} has no branch {branch!r}", fix=f"branches: {', '.join(tbl.metadata.refs)}")
    snaps = []
    for i, s in enumerate(ws.catalog.ancestry(tbl, branch)):
        if i >= limit:
            break
        snaps.append(s)
    return Snapshots(snaps)
