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
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

from cutover.core.errors import InputError
from cutover.core.osutil import atomic_write
from cutover.core.redact import redact_url

CONFIG_NAME = "rq.json"
ENV_URL = "CUTOVER_RQ_REDIS_URL"
KINDS = ("discover", "ingest", "publish")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,62}$")
_QUEUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,62}$")
DAY = 86400
MAX_PARTITIONS = 64


@dataclass(frozen=True)
class Step:
    name: str
    kind: str  # discover | ingest | publish
    depends_on: tuple[str, ...] = ()
    partition: tuple[int, int] = (0, 1)  # ingest only: (index, count)
    queue: str | None = None  # RQ queue of this step's job (default: the workflow's)
    timeout: int | None = None  # RQ job timeout in seconds (default: the config's)

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "kind": self.kind, "depends_on": list(self.depends_on)}
        if self.kind == "ingest":
            d["partition"] = list(self.partition)
        if self.queue:
            d["queue"] = self.queue
        if self.timeout:
            d["timeout"] = self.timeout
        return d


@dataclass(frozen=True)
class Workflow:
    ingestion_id: str
    steps: tuple[Step, ...]
    queue: str | None = None  # None: the config's default queue

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def partitions(self) -> int:
        return next((s.partition[1] for s in self.steps if s.kind == "ingest"), 1)

    def order(self) -> list[Step]:
        """The steps in a topological order (stable: the configured order breaks ties)."""
        return topological(self.steps)

    def upstream(self, name: str) -> set[str]:
        """Every step ``name`` transitively depends on."""
        by = {s.name: s for s in self.steps}
        seen: set[str] = set()
        todo = list(by[name].depends_on)
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(by[n].depends_on)
        return seen

    def levels(self) -> list[list[str]]:
        """Steps grouped by depth: the steps of one level can run at the same time."""
        depth: dict[str, int] = {}
        for s in self.order():
            depth[s.name] = 1 + max((depth[d] for d in s.depends_on), default=-1)
        out: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
        for s in self.steps:
            out[depth[s.name]].append(s.name)
        return out

    def steps_dicts(self) -> list[dict[str, Any]]:
        return [s.as_dict() for s in self.order()]

    def describe(self) -> str:
        """``discover -> [ingest-0 | ingest-1] -> publish``"""
        return " -> ".join(lv[0] if len(lv) == 1 else "[" + " | ".join(lv) + "]" for lv in self.levels())


def topological(steps: Iterable[Step]) -> list[Step]:
    steps = list(steps)
    by = {s.name: s for s in steps}
    done: list[Step] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(s: Step, path: list[str]) -> None:
        st = state.get(s.name)
        if st == 2:
            return
        if st == 1:
            cycle = path[path.index(s.name):] + [s.name]
            raise InputError(f"workflow steps form a cycle ({' -> '.join(cycle)})",
                             fix="make depends_on point only to earlier steps")
        state[s.name] = 1
        for d in s.depends_on:
            visit(by[d], path + [s.name])
        state[s.name] = 2
        done.append(s)

    for s in steps:
        visit(s, [])
    return done


def partition_of(path: str, count: int) -> int:
    """Which ingest partition a file belongs to: stable across processes and machines."""
    return zlib.crc32(path.encode("utf-8")) % count if count > 1 else 0


def default_steps(partitions: int) -> tuple[Step, ...]:
    """discover -> ingest-0 .. ingest-(n-1) in parallel -> publish (one ``ingest`` step when n = 1)."""
    if partitions == 1:
        ingest = (Step("ingest", "ingest", ("discover",), (0, 1)),)
    else:
        ingest = tuple(Step(f"ingest-{i}", "ingest", ("discover",), (i, partitions)) for i in range(partitions))
    return (Step("discover", "discover"), *ingest, Step("publish", "publish", tuple(s.name for s in ingest)))


def _int(value: Any, what: str, *, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InputError(f"{what} must be an integer", fix=f"give a whole number >= {lo}")
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be an integer, not {value!r}", fix=f"give a whole number >= {lo}") from None
    if n < lo or (hi is not None and n > hi):
        raise InputError(f"{what} is {n}", fix=f"give a value between {lo} and {hi}" if hi else f"give a value >= {lo}")
    return n


def check_queue(name: Any, what: str) -> str:
    if not isinstance(name, str) or not _QUEUE.match(name):
        raise InputError(f"{what} {name!r} is not a valid RQ queue name",
                         fix="use letters, digits, '.', '_' and '-' (e.g. cutover-ingest)")
    return name


def parse_step(raw: Any, where: str) -> Step:
    if not isinstance(raw, dict):
        raise InputError(f"{where}: a step must be a mapping", fix="write {name: ..., kind: ..., depends_on: [...]}")
    unknown = set(raw) - {"name", "kind", "depends_on", "partition", "queue", "timeout"}
    if unknown:
        raise InputError(f"{where}: unknown step key(s) {', '.join(sorted(unknown))}",
                         fix="use name, kind, depends_on, partition, queue, timeout")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise InputError(f"{where}: step name {name!r} is not valid", fix="use lowercase letters, digits, '_' and '-'")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise InputError(f"{where}: step {name} has kind {kind!r}", fix=f"use one of {', '.join(KINDS)}")
    deps = raw.get("depends_on") or []
    if isinstance(deps, str):
        deps = [deps]
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise InputError(f"{where}: depends_on of step {name} must be a list of step names", fix="e.g. [discover]")
    part = (0, 1)
    if "partition" in raw:
        if kind != "ingest":
            raise InputError(f"{where}: step {name} ({kind}) has a partition", fix="only ingest steps are partitioned")
        p = raw["partition"]
        if isinstance(p, str) and "/" in p:
            p = p.split("/", 1)
        if not isinstance(p, (list, tuple)) or len(p) != 2:
            raise InputError(f"{where}: partition of step {name} must be [index, count]", fix="e.g. [0, 2] or \"0/2\"")
        count = _int(p[1], f"{where}: partition count of step {name}", lo=1, hi=MAX_PARTITIONS)
        part = (_int(p[0], f"{where}: partition index of step {name}", lo=0, hi=count - 1), count)
    queue = check_queue(raw["queue"], f"{where}: queue of step {name}") if raw.get("queue") else None
    timeout = _int(raw["timeout"], f"{where}: timeout of step {name}", lo=1) if raw.get("timeout") else None
    return Step(name, kind, tuple(dict.fromkeys(deps)), part, queue, timeout)


def validate_steps(ingestion_id: str, steps: list[Step], where: str) -> tuple[Step, ...]:
    """The DAG rules of the module docstring; raises one InputError naming the problem."""
    names = [s.name for s in steps]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"{where}: step name(s) {', '.join(dup)} used twice", fix="give every step its own name")
    known = set(names)
    for s in steps:
        missing = [d for d in s.depends_on if d not in known]
        if missing:
            raise InputError(f"{where}: step {s.name} depends on unknown step(s) {', '.join(missing)}",
                             fix=f"steps are {', '.join(names)}")
        if s.name in s.depends_on:
            raise InputError(f"{where}: step {s.name} depends on itself", fix="remove it from its depends_on")
    topological(steps)
    discover = [s for s in steps if s.kind == "discover"]
    ingest = [s for s in steps if s.kind == "ingest"]
    publish = [s for s in steps if s.kind == "publish"]
    if len(discover) != 1 or discover[0].depends_on:
        raise InputError(f"{where}: the workflow of {ingestion_id} needs exactly one discover step, with no depends_on",
                         fix="start the DAG with {name: discover, kind: discover}")
    roots = [s.name for s in steps if not s.depends_on]
    if roots != [discover[0].name]:
        raise InputError(f"{where}: step(s) {', '.join(r for r in roots if r != discover[0].name)} depend on nothing",
                         fix=f"make them depend on {discover[0].name} (or a step after it)")
    if not ingest:
        raise InputError(f"{where}: the workflow of {ingestion_id} has no ingest step", fix="add one: kind ingest")
    counts = {s.partition[1] for s in ingest}
    if len(counts) != 1:
        raise InputError(f"{where}: ingest steps use different partition counts ({', '.join(map(str, sorted(counts)))})",
                         fix="give every ingest step the same count: [0, n] .. [n-1, n]")
    n = counts.pop()
    idx = sorted(s.partition[0] for s in ingest)
    if idx != list(range(n)):
        raise InputError(f"{where}: ingest partitions {idx} do not cover 0..{n - 1} exactly once",
                         fix="one ingest step per partition index: every file must belong to exactly one step")
    if len(publish) != 1:
        raise InputError(f"{where}: the workflow of {ingestion_id} needs exactly one publish step",
                         fix="end the DAG with {name: publish, kind: publish, depends_on: [<ingest steps>]}")
    wf = Workflow(ingestion_id, tuple(steps))
    pub = publish[0]
    missing = [s.name for s in ingest if s.name not in wf.upstream(pub.name)]
    if missing:
        raise InputError(f"{where}: publish does not wait for ingest step(s) {', '.join(missing)}",
                         fix=f"add them to the depends_on of {pub.name}")
    # every other step is discover (the root) or an ingest step upstream of publish: nothing runs after it
    return tuple(steps)


def parse_workflow(ingestion_id: str, raw: Any, *, default_partitions: int = 2, where: str = "rq config") -> Workflow:
    where = f"{where}: workflow {ingestion_id}"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InputError(f"{where} must be a mapping", fix="give steps or partitions")
    unknown = set(raw) - {"steps", "partitions", "queue"}
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}", fix="use steps, partitions, queue")
    queue = check_queue(raw["queue"], f"{where}: queue") if raw.get("queue") else None
    if raw.get("steps") is not None and raw.get("partitions") is not None:
        raise InputError(f"{where} has both steps and partitions", fix="give one: partitions generates the steps")
    if raw.get("steps") is not None:
        if not isinstance(raw["steps"], list) or not raw["steps"]:
            raise InputError(f"{where}: steps must be a non-empty list", fix="see docs/rq.md")
        steps = [parse_step(s, where) for s in raw["steps"]]
        return Workflow(ingestion_id, validate_steps(ingestion_id, steps, where), queue)
    n = _int(raw.get("partitions", default_partitions), f"{where}: partitions", lo=1, hi=MAX_PARTITIONS)
    return Workflow(ingestion_id, default_steps(n), queue)


def workflow_from_steps(ingestion_id: str, steps: list[dict], *, where: str = "workflow") -> Workflow:
    """A workflow from its ``steps_dicts()`` form (a Prefect parameter, a Redis definition)."""
    parsed = [parse_step(s, where) for s in steps]
    return Workflow(ingestion_id, validate_steps(ingestion_id, parsed, where))


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
            setattr(self, k, _int(getattr(self, k), f"{where}: {k}", lo=1))
        if self.run_ttl < self.result_ttl:
            raise InputError(f"{where}: run_ttl ({self.run_ttl}s) is shorter than result_ttl ({self.result_ttl}s)",
                             fix="keep the run state at least as long as the job results")
        self.default_partitions = _int(self.default_partitions, f"{where}: default_partitions", lo=1, hi=MAX_PARTITIONS)
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


def managed_ids(settings) -> set[str]:
    """Ingestion ids whose legacy side is an RQ workflow (listed in rq.json); empty without RQ.
    Never raises for a broken file: callers that skip these ids must not fail because of it."""
    p = RQConfig.path(settings)
    if not p.exists():
        return set()
    try:
        data = json.loads(p.read_text())
        return {str(k) for k in (data.get("workflows") or {})}
    except (OSError, ValueError, AttributeError):
        return set()


def steps_for(settings, ingestion_id: str) -> list[dict] | None:
    """The DAG of an RQ ingestion in its parameter form, None when the ingestion is not an RQ workflow."""
    if ingestion_id not in managed_ids(settings):
        return None
    cfg = RQConfig.require(settings)
    return cfg.workflow(ingestion_id).steps_dicts()
