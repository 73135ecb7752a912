"""Work pools of type process, docker and kubernetes, and the Kubernetes Job a deployment becomes.

Each pool is created with its worker collection's own base job template --
``ProcessWorker`` (Prefect), ``DockerWorker`` (``prefect-docker``, extra ``cutover[docker]``),
``KubernetesWorker`` (``prefect-kubernetes``, extra ``cutover[kubernetes]``) --
``get_default_base_job_template()``, exactly what ``prefect work-pool create --type T`` stores,
plus the queues ``default``, ``high-memory`` and ``priority`` (an ingestion's size class and
priority pick its queue; workers choose queues with ``prefect worker start --work-queue``).
An existing pool is never changed (a team may have edited its template), but a pool of
another type than the one asked is refused.

:func:`render_kubernetes_job` renders the Job manifest that prefect-kubernetes' worker would
submit for a flow run of a deployment, without a cluster: the same code path as the worker
(``KubernetesWorkerJobConfiguration.from_template_and_values`` with the pool's base job
template and the deployment's job variables, then ``prepare_for_flow_run``), on a preview
flow run that is never created on the server.
"""

from __future__ import annotations

import uuid
from typing import Any

from cutover.core.deployspec import POOL_TYPES
from cutover.core.errors import InputError
from cutover.core.redact import redact_text

WORK_QUEUES = ("default", "high-memory", "priority")  # cutover.core.records.ingestions.WORK_QUEUES
QUEUE_PRIORITY = {"priority": 1, "default": 2, "high-memory": 3}  # as flows/local.py creates them
EXTRAS = {"docker": ("prefect_docker.worker", "DockerWorker", "cutover[docker]  (prefect-docker)"),
          "kubernetes": ("prefect_kubernetes.worker", "KubernetesWorker",
                         "cutover[kubernetes]  (prefect-kubernetes)")}


def worker_class(pool_type: str):
    if pool_type not in POOL_TYPES:
        raise InputError(f"work pool type {pool_type!r} is not one of {', '.join(POOL_TYPES)}", fix="pick one")
    if pool_type == "process":
        from prefect.workers.process import ProcessWorker

        return ProcessWorker
    module, name, extra = EXTRAS[pool_type]
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except ImportError:
        raise InputError(f"a {pool_type} work pool needs the {module.split('.')[0]} collection, "
                         f"which is not installed", fix=f"pip install {extra.split()[0]!r}") from None


def base_job_template(pool_type: str) -> dict[str, Any]:
    """The collection's default base job template for a pool type."""
    return worker_class(pool_type).get_default_base_job_template()


def ensure_pool(client, name: str, pool_type: str, queues: tuple[str, ...] = WORK_QUEUES) -> list[str]:
    """Create the pool (from its type's base job template) and its queues where missing. Returns what was
    created (``pool:NAME``, ``queue:NAME``)."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.client.schemas.filters import WorkQueueFilter
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    created = []
    try:
        pool = client.read_work_pool(name)
    except ObjectNotFound:
        pool = None
    if pool is None:
        try:
            client.create_work_pool(WorkPoolCreate(name=name, type=pool_type,
                                                   base_job_template=base_job_template(pool_type)))
            created.append(f"pool:{name}")
        except ObjectAlreadyExists:  # created meanwhile by another operator: check its type below
            pass
        pool = client.read_work_pool(name)
    if pool.type != pool_type:
        raise InputError(f"work pool {name!r} exists with type {pool.type}, not {pool_type}",
                         fix=f"deploy to another pool (deploy.work_pool) or set deploy.pool_type to {pool.type}")
    have = {q.name for q in client.read_work_queues(work_pool_name=name, work_queue_filter=WorkQueueFilter(),
                                                    limit=200, offset=0)}
    for q in queues:
        if q not in have:
            try:
                client.create_work_queue(name=q, work_pool_name=name, priority=QUEUE_PRIORITY.get(q))
                created.append(f"queue:{q}")
            except ObjectAlreadyExists:
                pass
    return created


# -- the Kubernetes Job of a deployment ---------------------------------------------------------

def _preview_flow_run(deployment, flow):
    from prefect.client.schemas.objects import FlowRun

    return FlowRun(id=uuid.uuid4(), name=f"{deployment.name}-preview", flow_id=flow.id, deployment_id=deployment.id,
                   parameters=dict(deployment.parameters or {}), tags=list(deployment.tags or []),
                   work_queue_name=deployment.work_queue_name, work_pool_name=deployment.work_pool_name)


async def _render(url: str, deployment_id: str) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    cls = worker_class("kubernetes")
    with temporary_settings(updates={PREFECT_API_URL: url}):
        async with get_client() as client:
            deployment = await client.read_deployment(deployment_id)
            pool = await client.read_work_pool(deployment.work_pool_name)
            if pool.type != "kubernetes":
                raise InputError(f"deployment {deployment.name} runs on work pool {pool.name!r} of type {pool.type}",
                                 fix="render a deployment of a kubernetes pool (deploy.pool_type: kubernetes)")
            flow = await client.read_flow(deployment.flow_id)
            config = await cls.job_configuration.from_template_and_values(
                base_job_template=pool.base_job_template, values=dict(deployment.job_variables or {}),
                client=client)
            config.prepare_for_flow_run(flow_run=_preview_flow_run(deployment, flow), deployment=deployment,
                                        flow=flow, work_pool=pool, worker_name="cutover-preview")
            return config.job_manifest


def render_kubernetes_job(url: str, deployment_id: str, *, hide_api_key: bool = True) -> dict[str, Any]:
    """The Job manifest prefect-kubernetes' worker would submit for a run of this deployment.

    The worker adds its own Prefect settings to the container env (``PREFECT_API_URL``, and
    ``PREFECT_API_KEY`` when set, which the worker can move to a Kubernetes Secret); the key is
    replaced by a mask here unless ``hide_api_key`` is False.
    """
    from prefect.utilities.asyncutils import run_coro_as_sync

    manifest = run_coro_as_sync(_render(url.rstrip("/"), str(deployment_id)))
    if hide_api_key:
        for c in manifest["spec"]["template"]["spec"]["containers"]:
            for item in c.get("env") or []:
                if item.get("name") in ("PREFECT_API_KEY", "PREFECT_API_AUTH_STRING") and item.get("value"):
                    item["value"] = "***"
                elif isinstance(item.get("value"), str):
                    item["value"] = redact_text(item["value"])
    return manifest
