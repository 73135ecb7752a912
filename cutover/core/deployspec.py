"""Where and how an ingestion's Prefect deployment runs: pool, image, env, resources, code delivery.

Pure data (no Prefect import): ``flows/delivery.py`` turns a :class:`DeploySpec` into the
job variables of the pool's type and the pull steps.

An ingestion definition may carry ``deploy:`` with any of :data:`KEYS`; every key missing
there comes from the ``[deploy]`` settings section (``CUTOVER_DEPLOY_<KEY>``), except
``env`` and ``labels``, which are per ingestion only::

    deploy:
      work_pool: cutover-k8s       # default [prefect] work_pool
      pool_type: kubernetes        # process | docker | kubernetes (default [deploy] pool_type)
      image: registry.example.com/data/cutover:1.4
      env: {TZ: Europe/Berlin}
      cpu: "500m"                  # Kubernetes quantity: 2, 0.5, 500m
      memory: 2Gi                  # Kubernetes quantity: 512Mi, 2Gi, 1G
      namespace: data-ingest       # kubernetes only
      labels: {team: finance}
      git_repository: https://git.example.com/data/cutover.git   # code delivery: git_clone ...
      git_branch: main
      git_credentials: secret/git-token    # a Prefect block: secret/NAME or <block-type>/NAME
      directory: /opt/cutover      # ... or set_working_directory (default: this checkout)

Credentials never go here: env values that look like secrets are refused (the
``credentials`` field of the ingestion becomes a Prefect Secret block instead).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from cutover.core.errors import InputError
from cutover.core.redact import redact_text

POOL_TYPES = ("process", "docker", "kubernetes")
KEYS = ("work_pool", "pool_type", "image", "env", "cpu", "memory", "namespace", "labels",
        "git_repository", "git_branch", "git_credentials", "directory")
# [deploy] settings keys (scalar defaults); high_memory: the memory of ingestions on the high-memory queue
SETTINGS_KEYS = ("pool_type", "image", "cpu", "memory", "high_memory", "namespace",
                 "git_repository", "git_branch", "git_credentials", "directory", "home")

_CPU = re.compile(r"^(\d+(\.\d+)?)(m)?$")
_MEM = re.compile(r"^(\d+(\.\d+)?)(Ki|Mi|Gi|Ti|K|M|G|T|k)?$")
_MEM_UNITS = {None: 1, "k": 1000, "K": 1000, "M": 1000 ** 2, "G": 1000 ** 3, "T": 1000 ** 4,
              "Ki": 1024, "Mi": 1024 ** 2, "Gi": 1024 ** 3, "Ti": 1024 ** 4}
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$")
_LABEL_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_POOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-. ]{0,127}$")
_BLOCK = re.compile(r"^[a-z0-9][a-z0-9-]*/[a-z0-9][a-z0-9-]*$")
_SECRETISH_ENV = ("PASSWORD", "SECRET", "TOKEN", "CREDENTIAL", "API_KEY", "ACCESS_KEY")


def cpu_cores(q: str) -> float:
    """``"500m"`` -> 0.5, ``"2"`` -> 2.0 (a Kubernetes CPU quantity)."""
    m = _CPU.match(str(q).strip())
    if not m:
        raise ValueError(q)
    return float(m.group(1)) / (1000 if m.group(3) else 1)


def memory_bytes(q: str) -> int:
    """``"512Mi"`` -> 536870912 (a Kubernetes memory quantity)."""
    m = _MEM.match(str(q).strip())
    if not m:
        raise ValueError(q)
    return int(float(m.group(1)) * _MEM_UNITS[m.group(3)])


def _check_quantity(value: Any, kind: str, where: str) -> str:
    text = str(value).strip()
    try:
        n = cpu_cores(text) if kind == "cpu" else memory_bytes(text)
    except ValueError:
        example = "500m, 1 or 2.5" if kind == "cpu" else "512Mi, 2Gi or 1G"
        raise InputError(f"{where}: {kind} {value!r} is not a Kubernetes quantity",
                         fix=f"write it like {example}") from None
    if n <= 0:
        raise InputError(f"{where}: {kind} must be positive, got {value!r}", fix="give a positive quantity")
    return text


def _check_map(value: Any, what: str, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"{where}: deploy.{what} must be a mapping", fix=f"write deploy.{what} as key: value pairs")
    return {str(k): "" if v is None else str(v) for k, v in value.items()}


def _check_labels(labels: dict[str, str], where: str) -> None:
    for k, v in labels.items():
        prefix, _, name = k.rpartition("/")
        if not _LABEL_NAME.match(name) or (prefix and not _LABEL_PREFIX.match(prefix)):
            raise InputError(f"{where}: deploy.labels key {k!r} is not a Kubernetes label name",
                             fix="use [prefix/]name with letters, digits, '-', '_', '.' (max 63)")
        if not _LABEL_VALUE.match(v):
            raise InputError(f"{where}: deploy.labels value {v!r} of {k} is not a Kubernetes label value",
                             fix="use letters, digits, '-', '_', '.' (max 63), starting and ending alphanumeric")


def _check_env(env: dict[str, str], where: str) -> None:
    for k, v in env.items():
        if not _ENV_NAME.match(k):
            raise InputError(f"{where}: deploy.env name {k!r} is not an environment variable name",
                             fix="use letters, digits and '_', not starting with a digit")
        if any(w in k.upper() for w in _SECRETISH_ENV) or redact_text(v) != v:
            raise InputError(f"{where}: deploy.env {k} looks like a credential, and job variables are stored "
                             f"in clear on the Prefect server",
                             fix="put it in the ingestion's `credentials` (it becomes a Prefect Secret block) "
                                 "or in the worker's environment")


def check_git_credentials(value: str, where: str) -> str:
    value = str(value).strip()
    if not _BLOCK.match(value):
        raise InputError(f"{where}: git_credentials {value!r} is not a block reference",
                         fix="name a Prefect block as TYPE/NAME, e.g. secret/git-token or github-credentials/ci")
    return value


def check_value(key: str, value: Any, where: str) -> Any:
    """One deploy key, validated and normalised (shared by definitions and settings)."""
    if key in ("env", "labels"):
        out = _check_map(value, key, where)
        (_check_env if key == "env" else _check_labels)(out, where)
        return out
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip()
    if key == "pool_type":
        if text not in POOL_TYPES:
            raise InputError(f"{where}: pool_type {text!r} is not one of {', '.join(POOL_TYPES)}", fix="pick one")
    elif key in ("cpu",):
        text = _check_quantity(text, "cpu", where)
    elif key in ("memory", "high_memory"):
        text = _check_quantity(text, "memory", where)
    elif key == "namespace":
        if not _DNS_LABEL.match(text):
            raise InputError(f"{where}: namespace {text!r} is not a Kubernetes namespace name",
                             fix="use lower-case letters, digits and '-' (max 63)")
    elif key == "work_pool":
        if not _POOL.match(text):
            raise InputError(f"{where}: work_pool {text!r} is not a valid name", fix="use letters, digits, '-', '_'")
    elif key == "git_credentials":
        text = check_git_credentials(text, where)
    elif key == "git_repository":
        if redact_text(text) != text or "@" in text.split("://", 1)[-1].split("/", 1)[0]:
            raise InputError(f"{where}: git_repository carries credentials in the URL",
                             fix="give the URL without user/password and name a block in git_credentials")
    return text


def check_deploy(raw: Any, where: str) -> dict[str, Any]:
    """The ``deploy`` field of an ingestion definition, validated: only the keys given. Its shape (a
    mapping of :data:`KEYS`, their types) was checked by the typed model (cutover.core.schema.definitions.DeployDef)."""
    if raw is None:
        return {}
    out = {}
    for k in KEYS:
        if k in raw:
            v = check_value(k, raw[k], where)
            if v not in (None, {}):
                out[k] = v
    return out


def secret_block_name(ingestion_id: str) -> str:
    """The Prefect Secret block holding an ingestion's credentials (block names: [a-z0-9-])."""
    slug = re.sub(r"[^a-z0-9-]+", "-", ingestion_id.lower()).strip("-")
    if slug != ingestion_id:  # keep names unique when the id had to change (a_b vs a-b)
        slug = f"{slug}-{hashlib.sha1(ingestion_id.encode()).hexdigest()[:6]}"
    return f"cutover-{slug}-credentials"


@dataclass(frozen=True)
class DeploySpec:
    """The resolved deploy settings of one ingestion (definition over settings defaults)."""
    work_pool: str
    pool_type: str = "process"
    image: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    cpu: str | None = None
    memory: str | None = None
    namespace: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    git_repository: str | None = None
    git_branch: str | None = None
    git_credentials: str | None = None
    directory: str | None = None
    home: str | None = None  # CUTOVER_HOME on the worker (default: this workspace's home)


def resolve(settings, ing) -> DeploySpec:
    """The DeploySpec of an ingestion: its ``deploy`` keys, else the ``[deploy]`` settings, else defaults."""
    mine = dict(getattr(ing, "deploy", None) or {})
    defaults = dict(getattr(settings, "deploy", None) or {})

    def pick(key):
        v = mine.get(key)
        return v if v not in (None, "") else (defaults.get(key) or None)

    memory = mine.get("memory")
    if not memory:
        memory = (defaults.get("high_memory") if ing.work_queue == "high-memory" else None) or defaults.get("memory")
    return DeploySpec(
        work_pool=pick("work_pool") or settings.prefect_work_pool,
        pool_type=pick("pool_type") or "process",
        image=pick("image"),
        env=dict(mine.get("env") or {}),
        cpu=pick("cpu"),
        memory=memory or None,
        namespace=pick("namespace"),
        labels=dict(mine.get("labels") or {}),
        git_repository=pick("git_repository"),
        git_branch=pick("git_branch"),
        git_credentials=pick("git_credentials"),
        directory=pick("directory"),
        home=defaults.get("home") or None,
    )
