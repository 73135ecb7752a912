"""Export the deployments cutover manages as a ``prefect.yaml`` that ``prefect deploy --all`` accepts unchanged.

Where the deployments come from (``source``):

- ``server`` (default): the deployments as they ARE on the Prefect server -- every
  deployment tagged ``cutover`` (both modes), read through the API, with their real
  paused flag and each schedule's ``active`` flag. This is the hand-over form: what you
  would commit to a repository to manage the same deployments with Prefect's own tooling.
- ``inventory``: built from the inventory with ``flows.deploy.desired()`` (what
  ``cutover prefect deploy`` would create), for the modes asked; ``paused`` is the
  creation default (live paused, shadow active). Nothing is read from Prefect.

Both take a team's jobs too (flows ``cutover-callable`` / ``cutover-command``,
``flows/jobdeploy.py``); an ``observe`` job has no shadow deployment.

Each deployment carries everything ``prefect deploy`` needs and nothing it would fill in
differently: ``name``, ``description``, ``entrypoint`` (``flows/ingest.py:run_ingestion``,
relative to the repository root, which is where ``prefect deploy`` must run), ``tags``,
``parameters``, ``enforce_parameter_schema``, ``paused``, ``schedules`` (cron with
``day_or`` and ``timezone``; interval in seconds with ``anchor_date`` and ``timezone``;
rrule with ``timezone``; each with ``slug: cutover`` and ``active``), ``work_pool``
(``name``, ``work_queue_name``, ``job_variables``: env, image, resources, namespace, labels
as ``flows/delivery.py`` builds them for the pool's type) and ``pull`` (``git_clone`` with
its credentials as a block reference ``{{ prefect.blocks.secret.NAME }}``, or
``set_working_directory``). ``build``/``push`` are null: the code comes from git or from a
directory on the worker (in the image). ``definitions.work_pools`` lists the pools with
their type and queues, ``definitions.blocks`` the blocks the deployments need (prefect ignores
``definitions``; it is the documented place for YAML anchors): create the pools first with
``cutover prefect deploy`` or ``prefect work-pool create NAME --type TYPE``.

Secrets: the ingestions' credentials are in Secret blocks that ``cutover prefect deploy``
writes; a deployment names its block in the parameter ``credentials_block`` (a name, not a
reference). Block references appear only in pull steps, the one place ``prefect deploy``
keeps them unresolved (it resolves ``{{ prefect.blocks.… }}`` in parameters and job
variables at deploy time, which would store the value in clear on the server).

Applied with ``prefect --no-prompt deploy --all --prefect-file FILE`` (from the repository
root), the result is the same deployments: cutover's own plan for them then says ``unchanged``
(tests/test_prefect_export.py and tests/test_prefect_pools.py prove it against a real server).

Why ``prefect deploy --all`` used to stop after the first deployment: after creating each
deployment it lists the pool's online workers with ``{"limit": null, "offset": null}``
(``read_workers_for_work_pool`` defaults). Prefect 3.8.8's server declares those body fields
as plain ``int`` with a default and relied on FastAPI treating an explicit null as missing;
FastAPI 0.151.0 changed that (null is now validated), so the server answers 422, the command
raises, and ``--all`` has no per-deployment error handling. Fixed by pinning
``fastapi<0.151`` (pyproject.toml) for the server; a team server on Prefect 3.8 needs the same.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cutover.core.redact import redact_text
from flows.delivery import referenced_blocks
from flows.deploy import ENTRYPOINT, FLOW_NAME, REPO_ROOT, SCHEDULE_SLUG, TAG, desired
from flows.jobdeploy import CALLABLE_FLOW, COMMAND_FLOW, desired_job, is_job, runs_in
from flows.pools import WORK_QUEUES

HEADER = """\
# prefect.yaml exported by `cutover prefect export` ({source}) on {at}
# Apply with (from the repository root {root}):
#   prefect deploy --all --prefect-file {name}
#   (prefect --no-prompt deploy --all ... in scripts)
# The work pool(s) and blocks must exist first (definitions.work_pools / definitions.blocks):
# `cutover prefect deploy` creates them, or prefect work-pool create <name> --type <type>.
"""

PULL = [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO_ROOT)}}]
FLOWS = (FLOW_NAME, CALLABLE_FLOW, COMMAND_FLOW)  # the flows of cutover's deployments


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def schedule_item(sched: dict[str, Any], *, active: bool = True, slug: str | None = SCHEDULE_SLUG,
                  parameters: dict | None = None) -> dict[str, Any]:
    """One ``schedules:`` entry from a schedule's JSON form (server or client object dumped in JSON mode)."""
    out: dict[str, Any] = {}
    if sched.get("cron") is not None:
        out["cron"] = sched["cron"]
        out["day_or"] = bool(sched.get("day_or", True))
    elif sched.get("interval") is not None:
        iv = sched["interval"]
        secs = iv.total_seconds() if hasattr(iv, "total_seconds") else float(iv)
        out["interval"] = int(secs) if float(secs).is_integer() else secs
        if sched.get("anchor_date") is not None:
            out["anchor_date"] = _iso(sched["anchor_date"])
    elif sched.get("rrule") is not None:
        out["rrule"] = sched["rrule"]
    else:
        raise ValueError(f"unknown schedule {sched!r}")
    if sched.get("timezone"):
        out["timezone"] = sched["timezone"]
    out["active"] = bool(active)
    if slug:
        out["slug"] = slug
    if parameters:
        out["parameters"] = dict(parameters)
    return out


def _deployment(name: str, *, description: str | None, entrypoint: str, tags: list[str], parameters: dict,
                enforce: bool, paused: bool, schedules: list[dict], pool: str, queue: str | None,
                job_variables: dict, pull: list[dict]) -> dict[str, Any]:
    d: dict[str, Any] = {"name": name}
    if description:
        d["description"] = description
    d.update({
        "entrypoint": entrypoint,
        "tags": list(tags),
        "parameters": dict(parameters),
        "enforce_parameter_schema": bool(enforce),
        "paused": bool(paused),
        "schedules": schedules,
        "work_pool": {"name": pool, "work_queue_name": queue, "job_variables": dict(job_variables or {})},
        "pull": pull,
    })
    return d


def from_server(client, pool_types: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The cutover deployments on the server (tag ``cutover``), as prefect.yaml entries
    (``pool_types`` is filled with each work pool's type)."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags
    from prefect.client.schemas.sorting import DeploymentSort

    flt = DeploymentFilter(tags=DeploymentFilterTags(all_=[TAG])).model_dump(mode="json")
    out, offset = [], 0
    flows: dict[str, str] = {}
    while True:
        page = client.request("POST", "/deployments/filter", json={
            "deployments": flt, "limit": 200, "offset": offset, "sort": DeploymentSort.NAME_ASC.value}).json()
        for d in page:
            fid = str(d["flow_id"])
            if fid not in flows:
                flows[fid] = client.request("GET", "/flows/{id}", path_params={"id": fid}).json()["name"]
            if flows[fid] not in FLOWS:
                continue
            pool = d.get("work_pool_name")
            if pool_types is not None and pool and pool not in pool_types:
                pool_types[pool] = client.request("GET", "/work_pools/{name}", path_params={"name": pool}).json()["type"]
            scheds = [schedule_item(s["schedule"], active=s.get("active", True), slug=s.get("slug"),
                                    parameters=s.get("parameters")) for s in d.get("schedules") or []]
            out.append(_deployment(
                d["name"], description=d.get("description"), entrypoint=d.get("entrypoint") or ENTRYPOINT,
                tags=d.get("tags") or [], parameters=d.get("parameters") or {},
                enforce=d.get("enforce_parameter_schema", True), paused=d.get("paused", False), schedules=scheds,
                pool=d.get("work_pool_name"), queue=d.get("work_queue_name"),
                job_variables=d.get("job_variables") or {}, pull=d.get("pull_steps") or PULL))
        if len(page) < 200:
            break
        offset += 200
    return out


def from_inventory(ws, ingestions, modes: list[str], *, allow_approx: bool = False,
                   pool_types: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """prefect.yaml entries built with ``flows.deploy.desired()`` / ``flows.jobdeploy.desired_job()``
    (what `cutover prefect deploy` creates); ``ingestions``: ingestions and jobs."""
    out = []
    for ing in ingestions:
        for mode in modes:
            if is_job(ing) and not runs_in(ing, mode):
                continue  # an observe job: Prefect does not run it in shadow
            want = (desired_job if is_job(ing) else desired)(ws, ing, mode, allow_approx=allow_approx)
            if pool_types is not None:
                pool_types.setdefault(want.work_pool, want.pool_type)
            scheds = [] if want.schedule is None else [schedule_item(want.schedule.model_dump(mode="json"))]
            out.append(_deployment(
                want.name, description=want.description, entrypoint=want.entrypoint, tags=want.tags,
                parameters=want.parameters, enforce=True, paused=want.paused_on_create, schedules=scheds,
                pool=want.work_pool, queue=want.work_queue, job_variables=want.job_variables, pull=want.pull_steps))
    return out


def work_pools(deployments: list[dict[str, Any]], pool_types: dict[str, str] | None = None) -> list[dict[str, Any]]:
    pools: dict[str, set[str]] = {}
    for d in deployments:
        wp = d["work_pool"]
        pools.setdefault(wp["name"], set(WORK_QUEUES)).add(wp.get("work_queue_name") or "default")
    return [{"name": name, "type": (pool_types or {}).get(name, "process"), "work_queues": sorted(qs)}
            for name, qs in sorted(pools.items())]


def blocks(deployments: list[dict[str, Any]]) -> list[str]:
    """``TYPE/NAME`` of every block the deployments need: pull-step references and credentials Secret blocks."""
    out = set()
    for d in deployments:
        out.update(referenced_blocks(d.get("pull") or []))
        if d["parameters"].get("credentials_block"):
            out.add(f"secret/{d['parameters']['credentials_block']}")
    return sorted(out)


def document(deployments: list[dict[str, Any]], pool_types: dict[str, str] | None = None) -> dict[str, Any]:
    import prefect

    return {
        "name": "cutover",
        "prefect-version": prefect.__version__,
        "build": None,
        "push": None,
        "pull": None,  # every deployment carries its own pull steps
        "definitions": {"work_pools": work_pools(deployments, pool_types), "blocks": blocks(deployments)},
        "deployments": sorted(deployments, key=lambda d: d["name"]),
    }


def render(doc: dict[str, Any], *, source: str, filename: str = "prefect.yaml") -> str:
    import yaml

    class _Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data):  # plain YAML: no &id001 anchors for shared lists
            return True

    def _str(dumper, value: str):
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, _str)
    head = HEADER.format(source=source, at=datetime.now().astimezone().isoformat(timespec="seconds"),
                         root=REPO_ROOT, name=filename)
    body = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=4096, allow_unicode=True)
    out = head + body
    if redact_text(out) != out:  # job variables never carry secrets (flows.deploy.job_env), but be sure
        raise ValueError("the export would contain a credential; refusing to write it")
    return out


def export(ws, *, source: str = "server", client=None, ingestions=None, modes: list[str] | None = None,
           filename: str = "prefect.yaml") -> tuple[str, dict[str, Any]]:
    """(YAML text, the document) of the deployments cutover manages."""
    pool_types: dict[str, str] = {}
    if source == "server":
        if client is None:
            raise ValueError("source 'server' needs a Prefect client")
        deps = from_server(client, pool_types)
        if modes:
            deps = [d for d in deps if any(t == f"mode:{m}" for t in d["tags"] for m in modes)]
    elif source == "inventory":
        deps = from_inventory(ws, ingestions if ingestions is not None else ws.items.list(),
                              modes or ["live", "shadow"], pool_types=pool_types)
    else:
        raise ValueError(f"unknown source {source!r}")
    doc = document(deps, pool_types)
    return render(doc, source=source, filename=filename), doc
