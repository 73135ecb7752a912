"""Deployment builder: one Prefect deployment per ingestion and mode, upserted idempotently.

The deployment runs ``flows/ingest.py:run_ingestion`` on a worker of a process, docker or
kubernetes work pool (``flows/pools.py``: created from the collection's base job template).
Where and how it runs comes from the ingestion's ``deploy:`` over the ``[deploy]`` settings
(``cutover.core.deployspec``): job variables (image, env, cpu/memory, namespace, labels) and
pull steps (``git_clone`` with a credentials block reference, or ``set_working_directory``,
default this checkout) are built by ``flows/delivery.py``. The workspace reaches the flow run
through ``job_variables.env`` (``CUTOVER_HOME`` and the non-secret ``CUTOVER_*`` overrides).
Credentials of the ingestion go to a Prefect Secret block; the deployment carries only its
name (parameter ``credentials_block``).

Shape of a deployment (name ``<ingestion>-<mode>`` of flow ``cutover-ingest``):

- work pool ``deploy.work_pool`` (default ``settings.prefect_work_pool``) of type
  ``deploy.pool_type``, work queue ``ingestion.work_queue`` (``default`` | ``high-memory`` | ``priority``);
- tags ``cutover``, ``ingestion:<id>``, ``mode:<mode>``;
- parameters ``{ingestion_id, mode, trigger: "scheduled"}`` (+ ``credentials_block``: a block name);
- schedule: the legacy schedule translated exactly with its timezone
  (``cutover.core.schedule.translate``), one schedule with slug ``cutover``; none
  for manual ingestions.

Upsert: :func:`plan` reads the existing deployment and compares schedule,
pool/queue, tags, parameters, entrypoint, pull steps and job variables ->
``create`` | ``update`` | ``unchanged``; :func:`apply` writes only what differs.
The ``paused`` flag is never part of an update, so a paused deployment stays
paused (checked after the write), and inactive schedules stay inactive.

New deployments are created *paused in live mode* (the cutover handoff resumes
them once the legacy job is paused: both sides must never be live-scheduled)
and active in shadow mode, unless ``paused_on_create`` says otherwise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from cutover.core.deployspec import resolve as resolve_spec
from cutover.core.errors import InputError
from cutover.core.schedule.translate import translate
from cutover.core.shadowfork import ensure_fork
from cutover.core.workflow import steps_for, workflow_from_steps
from flows import delivery
from flows.pools import ensure_pool

log = logging.getLogger("cutover.prefect")

FLOW_NAME = "cutover-ingest"
ENTRYPOINT = "flows/ingest.py:run_ingestion"
DAG_ENTRYPOINT = "flows/dag.py:run_workflow"  # ingestions whose legacy side is an RQ workflow (legacy/rq)
REPO_ROOT = delivery.REPO_ROOT
SCHEDULE_SLUG = "cutover"
TAG = "cutover"
MODES = ("live", "shadow")
# settings sections whose CUTOVER_* overrides the flow run needs (prefect/scheduler ones it does not)


def deployment_name(ingestion_id: str, mode: str) -> str:
    return f"{ingestion_id}-{mode}"


def full_name(ingestion_id: str, mode: str) -> str:
    return f"{FLOW_NAME}/{deployment_name(ingestion_id, mode)}"


def tags_for(ingestion_id: str, mode: str) -> list[str]:
    return [TAG, f"ingestion:{ingestion_id}", f"mode:{mode}"]


def ingestion_of(tags: list[str]) -> str | None:
    for t in tags:
        if t.startswith("ingestion:"):
            return t.split(":", 1)[1]
    return None


def mode_of(tags: list[str]) -> str | None:
    for t in tags:
        if t.startswith("mode:"):
            return t.split(":", 1)[1]
    return None


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise InputError(f"mode {mode!r} is not live or shadow", fix="pass --mode live or --mode shadow")
    return mode


# -- the desired deployment ----------------------------------------------------------------

@dataclass
class Desired:
    ingestion_id: str
    mode: str
    name: str
    work_pool: str
    work_queue: str
    tags: list[str]
    parameters: dict[str, Any]
    entrypoint: str
    pull_steps: list[dict[str, Any]]
    job_variables: dict[str, Any]
    schedule: Any | None  # prefect.client.schemas.schedules.*Schedule, None = manual
    schedule_text: str | None
    parameter_schema: dict[str, Any]
    paused_on_create: bool
    description: str
    warnings: list[str] = field(default_factory=list)
    flow_name: str = FLOW_NAME  # generic jobs run flows/jobs.py's flows (flows/jobdeploy.py)
    pool_type: str = "process"
    credentials_block: str | None = None  # the Secret block holding the ingestion's credentials
    ingestion: Any = field(default=None, repr=False, compare=False)  # the definition it was built from


def _parameter_schema(entrypoint: str = ENTRYPOINT) -> dict[str, Any]:
    from prefect.utilities.callables import parameter_schema

    if entrypoint == DAG_ENTRYPOINT:
        from flows.dag import run_workflow as fn
    else:
        from flows.ingest import run_ingestion as fn
    return parameter_schema(fn).model_dump(exclude_unset=True)


def workflow_steps(ws, ing) -> list[dict[str, Any]] | None:
    """The RQ workflow DAG of an ingestion whose legacy side is RQ (rq.json), else None."""
    return steps_for(ws.settings, ing.id)


def translate_schedule(ing, *, allow_approx: bool = False):
    """(prefect schedule or None, human text)."""
    if not ing.schedule:
        return None, None
    try:
        pass
    except ImportError as e:  # pragma: no cover - during development only
        raise InputError(f"cannot translate the schedule of {ing.id}: cutover.core.schedule.translate is missing ({e})",
                         fix="install a complete cutover") from None
    tr = translate(ing.schedule, ing.schedule_timezone, allow_approx=allow_approx)
    if getattr(tr, "kind", None) is None:
        return None, None
    sched = tr.to_prefect_schedule()
    return sched, describe_schedule(sched)


def describe_schedule(sched) -> str | None:
    """Human form of a Prefect schedule: a client schedule object or its JSON dict."""
    if sched is None:
        return None
    if isinstance(sched, dict):
        get = sched.get
    else:
        def get(key, default=None):
            return getattr(sched, key, default)
    tz = get("timezone")
    suffix = f" ({tz})" if tz else ""
    if get("cron"):
        return f"cron {get('cron')}{'' if get('day_or', True) else ' (day AND weekday)'}{suffix}"
    if get("interval") is not None:
        iv = get("interval")
        secs = iv.total_seconds() if hasattr(iv, "total_seconds") else float(iv)
        anchor = get("anchor_date")
        anchor = anchor.isoformat() if hasattr(anchor, "isoformat") else str(anchor)
        return f"every {timedelta(seconds=secs)} from {anchor}{suffix}"
    if get("rrule"):
        return f"rrule {' '.join(str(get('rrule')).split())}{suffix}"
    return "unknown schedule"


def desired(ws, ing, mode: str, *, paused_on_create: bool | None = None, allow_approx: bool = False,
            environ: dict[str, str] | None = None) -> Desired:
    check_mode(mode)
    sched, text = translate_schedule(ing, allow_approx=allow_approx)
    spec = resolve_spec(ws.settings, ing)
    job_variables, warnings = delivery.job_variables(ws, ing.id, spec, environ)
    params: dict[str, Any] = {"ingestion_id": ing.id, "mode": mode, "trigger": "scheduled"}
    entrypoint, what = ENTRYPOINT, f"ingestion {ing.id}"
    steps = workflow_steps(ws, ing)
    secret = delivery.credentials_block(ing)
    if steps is not None:  # the legacy side is an RQ workflow: Prefect runs the same DAG (flows/dag.py)
        params["steps"] = steps
        entrypoint = DAG_ENTRYPOINT
        what = f"RQ workflow {ing.id} ({workflow_from_steps(ing.id, steps).describe()})"
        secret = None  # the RQ workflow's jobs read their own configuration, not the ingestion's storage options
    elif secret:
        params["credentials_block"] = secret  # a name: the flow loads the Secret block (flows/ingest.py)
    return Desired(
        ingestion_id=ing.id,
        mode=mode,
        name=deployment_name(ing.id, mode),
        work_pool=spec.work_pool,
        work_queue=ing.work_queue,
        tags=tags_for(ing.id, mode),
        parameters=params,
        entrypoint=entrypoint,
        pull_steps=delivery.pull_steps(spec),
        job_variables=job_variables,
        schedule=sched,
        schedule_text=text,
        parameter_schema=_parameter_schema(entrypoint),
        paused_on_create=(mode == "live") if paused_on_create is None else paused_on_create,
        description=f"cutover: {what} ({ing.format} {ing.pattern} -> {ing.table}), {mode} mode",
        warnings=warnings,
        pool_type=spec.pool_type,
        credentials_block=secret,
        ingestion=ing,
    )


# -- compare -------------------------------------------------------------------------------

def _sched_key(s) -> dict | None:
    if s is None:
        return None
    d = s.model_dump(mode="json")
    return d


def differences(existing, want: Desired) -> list[str]:
    """Field names where the existing deployment differs from the desired one ([] = unchanged)."""
    diffs = []
    have_scheds = [s for s in existing.schedules]
    if want.schedule is None:
        if have_scheds:
            diffs.append("schedule")
    else:
        if (len(have_scheds) != 1 or _sched_key(have_scheds[0].schedule) != _sched_key(want.schedule)
                or have_scheds[0].slug != SCHEDULE_SLUG or (have_scheds[0].parameters or {})):
            diffs.append("schedule")
    if existing.work_pool_name != want.work_pool:
        diffs.append("work_pool")
    if existing.work_queue_name != want.work_queue:
        diffs.append("work_queue")
    if sorted(existing.tags or []) != sorted(want.tags):
        diffs.append("tags")
    if (existing.parameters or {}) != want.parameters:
        diffs.append("parameters")
    if existing.entrypoint != want.entrypoint:
        diffs.append("entrypoint")
    if (existing.pull_steps or []) != want.pull_steps:
        diffs.append("pull_steps")
    if (existing.job_variables or {}) != want.job_variables:
        diffs.append("job_variables")
    if (existing.parameter_openapi_schema or {}) != want.parameter_schema:
        diffs.append("parameter_schema")
    if existing.enforce_parameter_schema is not True:
        diffs.append("enforce_parameter_schema")
    return diffs


@dataclass
class PlanItem:
    ingestion_id: str
    mode: str
    action: str  # create | update | unchanged
    changes: list[str]
    desired: Desired
    deployment_id: str | None = None
    flow_id: str | None = None
    paused: bool | None = None
    secret: str | None = None  # create | update | unchanged of the credentials' Secret block (None: none)

    @property
    def full_name(self) -> str:
        """``<flow>/<deployment>``: cutover-ingest/ID-MODE, or a job's flow (cutover-callable ...)."""
        return f"{self.desired.flow_name}/{self.desired.name}"

    def as_dict(self) -> dict[str, Any]:
        return {"ingestion_id": self.ingestion_id, "mode": self.mode, "action": self.action,
                "changes": self.changes, "deployment": self.full_name,
                "deployment_id": self.deployment_id, "flow_id": self.flow_id, "paused": self.paused,
                "work_pool": self.desired.work_pool, "pool_type": self.desired.pool_type,
                "work_queue": self.desired.work_queue, "schedule": self.desired.schedule_text,
                "credentials_block": self.desired.credentials_block, "secret": self.secret,
                "warnings": self.desired.warnings}


def read_existing(client, ingestion_id: str, mode: str, *, flow_name: str = FLOW_NAME):
    from prefect.exceptions import ObjectNotFound

    try:
        return client.read_deployment_by_name(f"{flow_name}/{deployment_name(ingestion_id, mode)}")
    except ObjectNotFound:
        return None


def plan_one(client, want: Desired) -> PlanItem:
    """Read calls only."""
    existing = read_existing(client, want.ingestion_id, want.mode, flow_name=want.flow_name) \
        if client is not None else None
    secret = _secret_action(client, want)
    if existing is None:
        return PlanItem(want.ingestion_id, want.mode, "create", [], want, paused=want.paused_on_create, secret=secret)
    diffs = differences(existing, want)
    return PlanItem(want.ingestion_id, want.mode, "update" if diffs else "unchanged", diffs, want,
                    deployment_id=str(existing.id), flow_id=str(existing.flow_id), paused=existing.paused,
                    secret=secret)


def _secret_action(client, want: Desired) -> str | None:
    if want.credentials_block is None:
        return None
    if client is None:
        return "create"
    return delivery.secret_action(client, want.ingestion)


def prepare(client, ws, items: list[PlanItem]) -> None:
    """Before any deployment write: the work pools (from their collections' templates) and queues, and the
    credentials' Secret blocks. Sequential writes, each only where something is missing or differs."""
    pools = {}
    for it in items:
        pools.setdefault(it.desired.work_pool, it.desired.pool_type)
        other = pools[it.desired.work_pool]
        if other != it.desired.pool_type:
            raise InputError(f"work pool {it.desired.work_pool!r} is asked as {other} and as {it.desired.pool_type}",
                             fix="give each work pool one pool_type (deploy.pool_type / [deploy] pool_type)")
    for name, pool_type in pools.items():
        ensure_pool(client, name, pool_type)
    for it in items:
        if it.secret in ("create", "update"):
            delivery.ensure_secret(client, it.desired.ingestion)
        blocks = delivery.referenced_blocks(it.desired.pull_steps)
        for slug in delivery.check_blocks_exist(client, blocks) if blocks else []:
            log.warning("deployment %s: block %s (pull step) does not exist yet on the server: create it before "
                        "the first run", it.desired.name, slug)


def plan(client, ws, ingestions, mode: str, **kw) -> list[PlanItem]:
    return [plan_one(client, desired(ws, ing, mode, **kw)) for ing in ingestions]


# -- apply ---------------------------------------------------------------------------------

def _schedule_create(want: Desired):
    from prefect.client.schemas.actions import DeploymentScheduleCreate

    return DeploymentScheduleCreate(schedule=want.schedule, active=True, slug=SCHEDULE_SLUG)


def apply(client, item: PlanItem, *, flow_id=None) -> PlanItem:
    """Make the deployment match ``item.desired`` (sequential writes only). Returns the item with ids.

    ``flow_id``: the id of flow ``cutover-ingest`` when the caller knows it (saves a write per create).
    """
    from prefect.client.schemas.actions import DeploymentUpdate

    want = item.desired
    if item.action == "unchanged":
        return item
    if item.action == "create":
        flow_id = flow_id or client.create_flow_from_name(want.flow_name)
        dep_id = client.create_deployment(
            flow_id=flow_id, name=want.name, work_pool_name=want.work_pool, work_queue_name=want.work_queue,
            tags=want.tags, parameters=want.parameters, entrypoint=want.entrypoint, pull_steps=want.pull_steps,
            job_variables=want.job_variables, schedules=[_schedule_create(want)] if want.schedule is not None else [],
            parameter_openapi_schema=want.parameter_schema, enforce_parameter_schema=True,
            paused=want.paused_on_create, description=want.description)
        item.deployment_id, item.flow_id, item.paused = str(dep_id), str(flow_id), want.paused_on_create
        return item

    existing = client.read_deployment(item.deployment_id)
    paused_before = existing.paused
    fields: dict[str, Any] = {}
    diffs = set(differences(existing, want))
    if diffs & {"work_pool", "work_queue"}:
        fields.update(work_pool_name=want.work_pool, work_queue_name=want.work_queue)
    if "tags" in diffs:
        fields["tags"] = want.tags
    if "parameters" in diffs:
        fields["parameters"] = want.parameters
    if "entrypoint" in diffs:
        fields["entrypoint"] = want.entrypoint
    if "pull_steps" in diffs:
        fields["pull_steps"] = want.pull_steps
    if "job_variables" in diffs:
        fields["job_variables"] = want.job_variables
    if diffs & {"parameter_schema", "enforce_parameter_schema"}:
        fields.update(parameter_openapi_schema=want.parameter_schema, enforce_parameter_schema=True)
    if "schedule" in diffs:
        _apply_schedule(client, existing, want, fields)
    if fields:
        fields.setdefault("description", want.description)
        client.update_deployment(existing.id, DeploymentUpdate(**fields))
    after = client.read_deployment(existing.id)
    if paused_before and not after.paused:  # never silently un-pause (defence in depth)
        log.warning("deployment %s was un-paused by the update; pausing it again", want.name)
        client.pause_deployment(existing.id)
    item.paused = paused_before
    item.flow_id = str(after.flow_id)
    return item


def _apply_schedule(client, existing, want: Desired, fields: dict[str, Any]) -> None:
    """Change the schedule without touching ``active`` of what stays (a paused schedule stays paused)."""
    from prefect.client.schemas.actions import DeploymentScheduleUpdate

    have = list(existing.schedules)
    ours = [s for s in have if s.slug == SCHEDULE_SLUG]
    others = [s for s in have if s.slug != SCHEDULE_SLUG]
    for s in others:  # schedules cutover did not create (or legacy ones without slug): the legacy schedule wins
        client.delete_deployment_schedule(existing.id, s.id)
    if want.schedule is None:
        for s in ours:
            client.delete_deployment_schedule(existing.id, s.id)
        return
    if ours:
        fields["schedules"] = [DeploymentScheduleUpdate(schedule=want.schedule, slug=SCHEDULE_SLUG, parameters={},
                                                        active=ours[0].active)]
    else:
        from prefect.client.schemas.actions import DeploymentScheduleCreate

        active = all(s.active for s in others) if others else True
        client.create_deployment_schedules(existing.id, [DeploymentScheduleCreate(
            schedule=want.schedule, active=active, slug=SCHEDULE_SLUG)])


def deploy(client, ws, ingestions, mode: str, *, dry_run: bool = False, **kw) -> list[PlanItem]:
    """Plan, then (unless dry-run) apply and record ids on the ingestions. Sequential: SQLite servers 503 on
    concurrent writes."""
    if mode == "shadow":
        missing = [i for i in ingestions if not _table_exists(ws, i.table, dry_run=dry_run)]
        if missing:
            raise InputError(f"cannot deploy in shadow mode: table(s) {', '.join(sorted({i.table for i in missing}))} "
                             f"do not exist yet, so there is nothing to fork",
                             fix=f"run the legacy side first (cutover legacy run {' '.join(i.id for i in missing)})")
    items = plan(client, ws, ingestions, mode, **kw)  # every desired state computed (and validated) first
    if dry_run:
        return items
    if mode == "shadow":
        for ing in ingestions:
            ensure_fork(ws, ing)
    if any(it.action != "unchanged" or it.secret in ("create", "update") for it in items):
        prepare(client, ws, items)
    flow_id = None
    for item in items:
        if item.action == "create" and flow_id is None:
            flow_id = client.create_flow_from_name(FLOW_NAME)
        apply(client, item, flow_id=flow_id)
        record_ids(ws, item)
    return items


def _table_exists(ws, table: str, *, dry_run: bool) -> bool:
    """Whether the Iceberg table exists; a dry run never creates the embedded catalog DB to find out."""
    uri = ws.settings.catalog_properties.get("uri", "")
    if dry_run and uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
        return False
    return ws.catalog.table_exists(table)


def record_ids(ws, item: PlanItem) -> None:
    """Store deployment and flow ids on the ingestion (only when they differ: re-applying writes nothing)."""
    if not item.deployment_id:
        return
    ing = ws.ingestions.find(item.ingestion_id)
    if ing is None:  # deployed from a definition that is not (yet) stored: nothing to record
        return
    if (ing.prefect_deployment_id, ing.prefect_flow_id) != (item.deployment_id, item.flow_id):
        ws.ingestions.set_prefect_ids(item.ingestion_id, item.deployment_id, item.flow_id)
