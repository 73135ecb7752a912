"""The workflow model: a DAG of steps that runs ONE ingestion (discover -> ingest partitions ->
publish), whichever orchestrator runs it -- RQ jobs on the legacy side (``legacy/rq``), Prefect
tasks on the Prefect side (``flows/dag.py``). See ``legacy/rq/model.py`` for the step kinds and
the RQ configuration (``$CUTOVER_HOME/rq.json``) that lists the workflows.

Pure logic: nothing here imports ``rq``, ``redis`` or ``prefect``.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from cutover.core.errors import InputError

RQ_CONFIG_NAME = "rq.json"  # in $CUTOVER_HOME: the RQ setup, whose ``workflows`` name the RQ-run ingestions
KINDS = ("discover", "ingest", "publish")
MAX_PARTITIONS = 64
DEFAULT_PARTITIONS = 2
_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,62}$")
_QUEUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")


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


def int_in_range(value: Any, what: str, *, lo: int, hi: int | None = None) -> int:
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
        count = int_in_range(p[1], f"{where}: partition count of step {name}", lo=1, hi=MAX_PARTITIONS)
        part = (int_in_range(p[0], f"{where}: partition index of step {name}", lo=0, hi=count - 1), count)
    queue = check_queue(raw["queue"], f"{where}: queue of step {name}") if raw.get("queue") else None
    timeout = int_in_range(raw["timeout"], f"{where}: timeout of step {name}", lo=1) if raw.get("timeout") else None
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
    n = int_in_range(raw.get("partitions", default_partitions), f"{where}: partitions", lo=1, hi=MAX_PARTITIONS)
    return Workflow(ingestion_id, default_steps(n), queue)


def workflow_from_steps(ingestion_id: str, steps: list[dict], *, where: str = "workflow") -> Workflow:
    """A workflow from its ``steps_dicts()`` form (a Prefect parameter, a Redis definition)."""
    parsed = [parse_step(s, where) for s in steps]
    return Workflow(ingestion_id, validate_steps(ingestion_id, parsed, where))


def _rq_config(settings) -> dict | None:
    p = Path(settings.home) / RQ_CONFIG_NAME
    if not p.exists():
        return None
    return json.loads(p.read_text())


def managed_ids(settings) -> set[str]:
    """Ingestion ids whose legacy side is an RQ workflow (listed in rq.json); empty without RQ.
    Never raises for a broken file: callers that skip these ids must not fail because of it."""
    try:
        data = _rq_config(settings)
        return {str(k) for k in ((data or {}).get("workflows") or {})}
    except (OSError, ValueError, AttributeError):
        return set()


def steps_for(settings, ingestion_id: str) -> list[dict] | None:
    """The DAG of an RQ ingestion in its parameter form, None when the ingestion is not an RQ workflow."""
    if ingestion_id not in managed_ids(settings):
        return None
    p = Path(settings.home) / RQ_CONFIG_NAME
    data = _rq_config(settings) or {}
    raw = data.get("default_partitions")
    default = int_in_range(DEFAULT_PARTITIONS if raw is None else raw, f"{p}: default_partitions",
                           lo=1, hi=MAX_PARTITIONS)
    return parse_workflow(ingestion_id, (data.get("workflows") or {}).get(ingestion_id),
                          default_partitions=default, where=str(p)).steps_dicts()
