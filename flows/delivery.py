"""How a deployment reaches its worker: job variables per pool type, pull steps, Secret blocks.

Job variables (from :class:`cutover.core.deployspec.DeploySpec`, i.e. the ingestion's ``deploy:``
over the ``[deploy]`` settings), named as the pool type's base job template names them
(prefect-docker / prefect-kubernetes ``get_default_base_job_template()``):

============  =======================  ============================  ===================================
spec          process                  docker                        kubernetes
============  =======================  ============================  ===================================
env           ``env``                  ``env``                       ``env``
labels        ``labels``               ``labels``                    ``labels`` (Job and pod)
image         (refused)                ``image``                     ``image``
cpu           (refused)                ``container_create_kwargs``   ``cpu_request``
                                       ``.nano_cpus``
memory        (refused)                ``mem_limit`` (bytes)         ``memory_request`` + ``memory_limit``
namespace     (refused)                (refused)                     ``namespace``
============  =======================  ============================  ===================================

``env`` always carries what the flow run needs to open the workspace (``CUTOVER_HOME`` and the
non-secret ``CUTOVER_*`` overrides: :func:`cutover.core.config.job_env`); ``[deploy] home``
replaces ``CUTOVER_HOME`` for workers on another host.

Pull steps (code delivery): ``git_clone`` of ``git_repository`` (``branch``; credentials as a
block *reference* -- ``access_token: "{{ prefect.blocks.secret.NAME }}"`` for a Secret block,
``credentials: "{{ prefect.blocks.TYPE.NAME }}"`` for a GitHub/GitLab/BitBucket credentials
block -- resolved by the worker when it pulls, never stored resolved), else
``set_working_directory`` to ``directory`` (default: this checkout).

Secrets: an ingestion's ``credentials`` (fsspec storage options) are written to the Prefect
Secret block :func:`cutover.core.deployspec.secret_block_name` and the deployment gets only the
block's *name* as parameter ``credentials_block``; ``flows/ingest.py`` loads it with
``Secret.load(name)``. No credential value is ever a parameter or a job variable. The block
holds the mapping as a JSON *string*: a Prefect 3.8 server returns a dict-valued Secret in
clear on every read of the block document (``include_secrets=false`` masks only string values).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cutover.core.config import job_env
from cutover.core.deployspec import DeploySpec, cpu_cores, memory_bytes, secret_block_name
from cutover.core.errors import InputError

REPO_ROOT = Path(__file__).resolve().parent.parent
GIT_CLONE = "prefect.deployments.steps.git_clone"
SET_WORKDIR = "prefect.deployments.steps.set_working_directory"
SECRET_TYPE = "secret"


def _refuse(ingestion_id: str, spec: DeploySpec, key: str) -> None:
    raise InputError(f"ingestion {ingestion_id}: deploy.{key} has no meaning on work pool {spec.work_pool!r} "
                     f"(type {spec.pool_type})",
                     fix=f"remove deploy.{key}, or deploy to a pool of type "
                         f"{'kubernetes' if key == 'namespace' else 'docker or kubernetes'} (deploy.pool_type)")


def job_variables(ws, ingestion_id: str, spec: DeploySpec, environ: dict[str, str] | None = None
                  ) -> tuple[dict[str, Any], list[str]]:
    """(job variables for the pool type, warnings)."""
    env, warnings = job_env(ws.settings, environ)
    if spec.home:
        env["CUTOVER_HOME"] = spec.home
    env.update(spec.env)
    out: dict[str, Any] = {"env": env}
    if spec.labels:
        out["labels"] = dict(spec.labels)
    if spec.pool_type == "process":
        for key in ("image", "cpu", "memory", "namespace"):
            if getattr(spec, key):
                _refuse(ingestion_id, spec, key)
        return out, warnings
    if not spec.image:
        raise InputError(f"ingestion {ingestion_id}: work pool {spec.work_pool!r} is of type {spec.pool_type} "
                         f"and needs an image",
                         fix="set deploy.image in the definition or [deploy] image in cutover.toml "
                             "(an image with cutover and its dependencies installed)")
    out["image"] = spec.image
    if spec.pool_type == "docker":
        if spec.namespace:
            _refuse(ingestion_id, spec, "namespace")
        if spec.memory:
            out["mem_limit"] = f"{memory_bytes(spec.memory)}b"
        if spec.cpu:
            out["container_create_kwargs"] = {"nano_cpus": int(round(cpu_cores(spec.cpu) * 1e9))}
        return out, warnings
    # kubernetes
    if spec.namespace:
        out["namespace"] = spec.namespace
    if spec.cpu:
        out["cpu_request"] = spec.cpu
    if spec.memory:
        out["memory_request"] = spec.memory
        out["memory_limit"] = spec.memory
    return out, warnings


def block_reference(slug: str) -> str:
    """``secret/git-token`` -> ``{{ prefect.blocks.secret.git-token }}`` (resolved by the worker)."""
    block_type, name = slug.split("/", 1)
    return "{{ prefect.blocks.%s.%s }}" % (block_type, name)


def pull_steps(spec: DeploySpec) -> list[dict[str, Any]]:
    if spec.git_repository:
        step: dict[str, Any] = {"repository": spec.git_repository}
        if spec.git_branch:
            step["branch"] = spec.git_branch
        if spec.git_credentials:
            key = "access_token" if spec.git_credentials.split("/", 1)[0] == SECRET_TYPE else "credentials"
            step[key] = block_reference(spec.git_credentials)
        return [{GIT_CLONE: step}]
    return [{SET_WORKDIR: {"directory": spec.directory or str(REPO_ROOT)}}]


def referenced_blocks(steps: list[dict[str, Any]]) -> list[str]:
    """The ``TYPE/NAME`` of every block referenced by the pull steps."""
    out = []
    for step in steps:
        for args in step.values():
            for v in (args or {}).values():
                if isinstance(v, str) and v.startswith("{{ prefect.blocks."):
                    out.append(v[len("{{ prefect.blocks."):-len(" }}")].replace(".", "/", 1))
    return out


# -- Secret blocks ------------------------------------------------------------------------------

def credentials_block(ing) -> str | None:
    """The name of the Secret block that holds the ingestion's credentials (None: it has none)."""
    return secret_block_name(ing.id) if ing.credentials else None


def _read_secret(client, name: str):
    from prefect.exceptions import ObjectNotFound

    try:
        return client.read_block_document_by_name(name, block_type_slug=SECRET_TYPE, include_secrets=True)
    except ObjectNotFound:
        return None


def secret_action(client, ing) -> str | None:
    """create | update | unchanged for the ingestion's Secret block (None: no credentials). Reads only."""
    name = credentials_block(ing)
    if name is None:
        return None
    doc = _read_secret(client, name) if client is not None else None
    if doc is None:
        return "create"
    try:
        stored = json.loads((doc.data or {}).get("value"))
    except (TypeError, ValueError):
        return "update"
    return "unchanged" if stored == dict(ing.credentials) else "update"


def secret_value(credentials: dict) -> str:
    """What the Secret block stores: the storage options as a JSON string (masked on reads)."""
    return json.dumps(dict(credentials), sort_keys=True)


def parse_secret_value(value) -> dict:
    """The storage options back from :func:`secret_value` (a mapping saved by hand is taken as is)."""
    if isinstance(value, dict):
        return dict(value)
    out = json.loads(value)
    if not isinstance(out, dict):
        raise ValueError("not a mapping")
    return out


def ensure_secret(client, ing) -> str | None:
    """Write the ingestion's credentials to its Secret block when they differ. Returns the action."""
    action = secret_action(client, ing)
    if action in (None, "unchanged"):
        return action
    from prefect.blocks.system import Secret
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # Block.save talks to the API of the settings: point them at this client's server
    with temporary_settings(updates={PREFECT_API_URL: str(client.api_url).rstrip("/")}):
        Secret(value=secret_value(ing.credentials)).save(credentials_block(ing), overwrite=True)
    return action


def check_blocks_exist(client, slugs: list[str]) -> list[str]:
    """The referenced blocks (``TYPE/NAME``) missing on the server."""
    from prefect.exceptions import ObjectNotFound

    missing = []
    for slug in slugs:
        block_type, name = slug.split("/", 1)
        try:
            client.read_block_document_by_name(name, block_type_slug=block_type, include_secrets=False)
        except ObjectNotFound:
            missing.append(slug)
    return missing
