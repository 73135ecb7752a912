"""The RQ workflow model: configuration (``$CUTOVER_HOME/rq.json``), DAG validation, partitioning.

Pure logic: nothing here imports ``rq`` or ``redis`` (``cutover --help`` must stay fast and the
Prefect flow uses the same DAG without Redis).

A workflow is the legacy side of ONE ingestion: a DAG of steps, each an RQ job when RQ runs it
and a Prefect task when Prefect runs it (``flows/dag.py``)::

    discover ──► ingest-0 ──┐
             └─► ingest-1 ──┴─► publish

Step kinds (each calls the shared ingestion service, ``cutover/core/autoloader/service.py``):

- ``discover`` (exactly one, the only root): checks the legacy pause/fence/hold, creates the
  run record (the workflow run id IS the run record id), lists the source, diffs it against
  the ledger and records the pending files for the run;
- ``ingest`` (one or more): claims and ingests the pending files of its partition
  ``[i, n]`` -- ``crc32(path) % n == i`` -- one Iceberg snapshot per file, exactly as the
  other orchestrators do; the partitions of one workflow share ``n`` and cover ``0..n-1``
  exactly once, so every pending file belongs to exactly one ingest step;
- ``publish`` (exactly one, the only sink, downstream of every ingest step): closes the run
  record (SUCCESS / PARTIAL / FAILED from the ledger counters, FAILED with the first
  upstream error when a step failed, CANCELLED when the run was cancelled).

Config (written by ``cutover rq import``, JSON; the Redis URL may hold a password: the file
is written 0600 and the URL is redacted in every output)::

    {"redis_url": "redis://:secret@redis:6379/0", "queue": "cutover", "key_prefix": "cutover",
     "result_ttl": 604800, "failure_ttl": 2592000, "run_ttl": 2592000, "job_timeout": 3600,
     "default_partitions": 2,
     "workflows": {"orders": {"queue": "ingest", "partitions": 3},
                   "events": {"steps": [{"name": "discover", "kind": "discover"},
                                        {"name": "ingest", "kind": "ingest", "depends_on": ["discover"]},
                                        {"name": "publish", "kind": "publish", "depends_on": ["ingest"]}]}}}

``CUTOVER_RQ_REDIS_URL`` in the environment overrides ``redis_url`` (keep the password out of
the file that way).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cutover.core.errors import InputError
from cutover.core.osutil import atomic_write
from cutover.core.workflow import (  # noqa: F401 - the workflow model, re-exported for the RQ side
    KINDS, MAX_PARTITIONS, RQ_CONFIG_NAME as CONFIG_NAME, Step, Workflow, check_queue, default_steps, int_in_range,
    managed_ids, parse_step, parse_workflow, partition_of, steps_for, topological, validate_steps, workflow_from_steps)
from cutover.core.redact import redact_url

ENV_URL = "CUTOVER_RQ_REDIS_URL"
_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,62}$")
DAY = 86400


@dataclass
class RQConfig:
    """The legacy RQ setup of a workspace. Saved by `cutover rq import` in $CUTOVER_HOME/rq.json."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    queue: str = "cutover"
    key_prefix: str = "cutover"
    result_ttl: int = 7 * DAY  # finished jobs (RQ's own default is 500 s: far too short to read run history)
    failure_ttl: int = 30 * DAY  # failed jobs stay in FailedJobRegistry to be inspected / requeued
    run_ttl: int = 30 * DAY  # cutover's per-run state and the run index
    job_timeout: int = 3600
    default_partitions: int = 2
    workflows: dict[str, dict] = field(default_factory=dict)

    # -- reading ---------------------------------------------------------------------------
    @classmethod
    def path(cls, settings) -> Path:
        return Path(settings.home) / CONFIG_NAME

    @classmethod
    def exists(cls, settings) -> bool:
        return cls.path(settings).exists()

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "rq config") -> "RQConfig":
        if not isinstance(data, dict):
            raise InputError(f"{where} must be a JSON/YAML mapping", fix="see docs/rq.md for the format")
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise InputError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}",
                             fix=f"valid keys are {', '.join(sorted(known))}")
        cfg = cls(**{k: v for k, v in data.items() if v is not None})
        cfg.validate(where)
        return cfg

    @classmethod
    def load(cls, settings) -> "RQConfig | None":
        p = cls.path(settings)
        if not p.exists():
            return None
        try:
            data = json.loads(p.read_text())
        except ValueError as e:
            raise InputError(f"{p} is not valid JSON ({e})", fix="run `cutover rq import` again") from None
        return cls.from_dict(data, where=str(p))

    @classmethod
    def require(cls, settings) -> "RQConfig":
        cfg = cls.load(settings)
        if cfg is None:
            raise InputError(f"no RQ setup in {cls.path(settings)}",
                             fix="run `cutover rq import --config FILE` first (see docs/rq.md)")
        return cfg

    def validate(self, where: str = "rq config") -> None:
        if not isinstance(self.redis_url, str) or not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise InputError(f"{where}: redis_url {redact_url(str(self.redis_url))!r} is not a Redis URL",
                             fix="write redis://[:password@]host:port/db (or rediss://, unix://)")
        check_queue(self.queue, f"{where}: queue")
        if not isinstance(self.key_prefix, str) or not _PREFIX.match(self.key_prefix):
            raise InputError(f"{where}: key_prefix {self.key_prefix!r} is not valid",
                             fix="letters, digits, '.', '_', ':' and '-' (e.g. cutover)")
        for k in ("result_ttl", "failure_ttl", "run_ttl", "job_timeout"):
            setattr(self, k, int_in_range(getattr(self, k), f"{where}: {k}", lo=1))
        if self.run_ttl < self.result_ttl:
            raise InputError(f"{where}: run_ttl ({self.run_ttl}s) is shorter than result_ttl ({self.result_ttl}s)",
                             fix="keep the run state at least as long as the job results")
        self.default_partitions = int_in_range(self.default_partitions, f"{where}: default_partitions", lo=1, hi=MAX_PARTITIONS)
        if not isinstance(self.workflows, dict):
            raise InputError(f"{where}: workflows must be a mapping of ingestion id -> workflow", fix="see docs/rq.md")
        for iid, wf in self.workflows.items():
            parse_workflow(iid, wf, default_partitions=self.default_partitions, where=where)

    # -- using ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The Redis URL to connect to (``CUTOVER_RQ_REDIS_URL`` wins over the file)."""
        return os.environ.get(ENV_URL) or self.redis_url

    @property
    def public_url(self) -> str:
        return redact_url(self.url) or ""

    @property
    def job_ns(self) -> str:
        """The key prefix as it may appear in an RQ job id ([A-Za-z0-9_-])."""
        return re.sub(r"[^A-Za-z0-9_-]", "-", self.key_prefix)

    def workflow(self, ingestion_id: str) -> Workflow:
        """The workflow of an ingestion: configured, else the default DAG (``default_partitions``)."""
        return parse_workflow(ingestion_id, self.workflows.get(ingestion_id),
                              default_partitions=self.default_partitions)

    def queue_of(self, wf: Workflow) -> str:
        return wf.queue or self.queue

    def queues(self) -> list[str]:
        """Every queue a workflow job may be put on (what the workers must listen to)."""
        out = [self.queue]
        for iid in self.workflows:
            wf = self.workflow(iid)
            for q in [wf.queue, *(s.queue for s in wf.steps)]:
                if q and q not in out:
                    out.append(q)
        return out

    def as_dict(self, *, public: bool = False) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        if public:
            d["redis_url"] = redact_url(self.redis_url)
        return d

    def save(self, settings) -> Path:
        p = self.path(settings)
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(p, json.dumps(self.as_dict(), indent=2) + "\n", mode=0o600)  # may hold a password
        return p

    def with_workflows(self, workflows: dict[str, dict]) -> "RQConfig":
        return replace(self, workflows={**self.workflows, **workflows})
