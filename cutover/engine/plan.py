"""Phased cutover plans: waves of per-ingestion moves, each step with its inverse.

A Plan is a frozen, serializable object built from the inventory; it records a
fingerprint of every ingestion definition and state it was built from, so a
stale plan is refused. Executing and dry-running are two evaluators over the
same steps (cutover.engine.execute).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from cutover.core.errors import InputError
from cutover.core.state.states import CUTOVER, LEGACY, ROLLED_BACK, SHADOW

PLAN_VERSION = 1
DEFAULT_GATE = "streak>=3,schedule_verified,no_open_waiver"
DEFAULT_WAVES = "canary=1,50%,rest"

# action -> (human form, inverse action)
ACTIONS: dict[str, tuple[str, str | None]] = {
    "fork_shadow": ("fork Iceberg branch cutover-shadow and seed the shadow ledger", None),
    "deploy_prefect": ("deploy Prefect deployment {mode}{paused}", "remove_prefect"),
    "remove_prefect": ("remove Prefect deployment {mode}", "deploy_prefect"),
    "pause_prefect": ("pause Prefect deployment {mode}", "resume_prefect"),
    "resume_prefect": ("resume Prefect deployment {mode}", "pause_prefect"),
    "pause_legacy": ("pause the legacy job", "resume_legacy"),
    "resume_legacy": ("resume the legacy job", "pause_legacy"),
    "wait_legacy_idle": ("wait for the in-flight legacy run to end (at most {timeout}s)", None),
    "set_state": ("state {from_state} -> {to_state}", "set_state"),
    "cancel_prefect": ("cancel the in-flight Prefect flow runs (live and shadow) and release their claims "
                       "(wait at most {timeout}s)", None),
}
# A step with args on_failure="continue" may fail without stopping the operation (recorded FAILED,
# reported at the end, retried by the next run); the move's set_state then does not run.
CONTINUE = "continue"


@dataclass(frozen=True)
class Step:
    action: str
    ingestion_id: str
    args: tuple[tuple[str, Any], ...] = ()

    @property
    def kw(self) -> dict[str, Any]:
        return dict(self.args)

    def describe(self) -> str:
        kw = self.kw
        fmt = ACTIONS[self.action][0]
        return f"{self.ingestion_id}: " + fmt.format(
            mode=kw.get("mode", ""), paused=" (created paused)" if kw.get("paused") else "",
            timeout=kw.get("timeout", ""), from_state=kw.get("from_state", ""), to_state=kw.get("to_state", "")) + (
            " (a failure does not stop the operation)" if kw.get("on_failure") == CONTINUE else "")

    def inverse(self) -> "Step | None":
        inv = ACTIONS[self.action][1]
        if inv is None:
            return None
        kw = self.kw
        if self.action == "set_state":
            return Step("set_state", self.ingestion_id, step_args(from_state=kw["to_state"], to_state=kw["from_state"]))
        return Step(inv, self.ingestion_id, tuple((k, v) for k, v in self.args if k != "on_failure"))

    def as_dict(self) -> dict:
        return {"action": self.action, "ingestion_id": self.ingestion_id, "args": self.kw}

    @classmethod
    def from_dict(cls, d: dict) -> "Step":
        return cls(d["action"], d["ingestion_id"], step_args(**d.get("args", {})))


def step_args(**kw) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(kw.items()))


@dataclass(frozen=True)
class Move:
    ingestion_id: str
    from_state: str
    to_state: str
    steps: tuple[Step, ...]

    def as_dict(self) -> dict:
        return {"ingestion_id": self.ingestion_id, "from_state": self.from_state, "to_state": self.to_state,
                "steps": [s.as_dict() for s in self.steps]}

    @classmethod
    def from_dict(cls, d: dict) -> "Move":
        return cls(d["ingestion_id"], d["from_state"], d["to_state"], tuple(Step.from_dict(s) for s in d["steps"]))


@dataclass(frozen=True)
class Wave:
    number: int
    name: str
    moves: tuple[Move, ...]

    def as_dict(self) -> dict:
        return {"number": self.number, "name": self.name, "moves": [m.as_dict() for m in self.moves]}

    @classmethod
    def from_dict(cls, d: dict) -> "Wave":
        return cls(d["number"], d["name"], tuple(Move.from_dict(m) for m in d["moves"]))


@dataclass(frozen=True)
class Plan:
    id: str
    created_at: str
    created_by: str
    gate: str
    waves: tuple[Wave, ...]
    fingerprints: dict[str, str] = field(default_factory=dict)
    handoff_timeout: float = 600.0
    version: int = PLAN_VERSION

    def as_dict(self) -> dict:
        return {"version": self.version, "id": self.id, "created_at": self.created_at, "created_by": self.created_by,
                "gate": self.gate, "handoff_timeout": self.handoff_timeout, "fingerprints": self.fingerprints,
                "waves": [w.as_dict() for w in self.waves]}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        if d.get("version") != PLAN_VERSION:
            raise InputError(f"plan version {d.get('version')} is not supported", fix="make a new plan with `cutover plan`")
        return cls(d["id"], d["created_at"], d["created_by"], d["gate"], tuple(Wave.from_dict(w) for w in d["waves"]),
                   dict(d.get("fingerprints", {})), float(d.get("handoff_timeout", 600.0)))

    @classmethod
    def load(cls, path) -> "Plan":
        p = Path(path)
        if not p.exists():
            raise InputError(f"plan file {p} does not exist", fix="make one with `cutover plan --out FILE`")
        try:
            return cls.from_dict(json.loads(p.read_text()))
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"{p} is not a cutover plan ({e})", fix="make one with `cutover plan --out FILE`") from None

    def summary(self) -> dict[str, int]:
        n = {"shadow": 0, "cutover": 0, "rollback": 0}
        for w in self.waves:
            for m in w.moves:
                if m.to_state == SHADOW:
                    n["shadow"] += 1
                elif m.to_state == CUTOVER:
                    n["cutover"] += 1
                elif m.to_state in (ROLLED_BACK, LEGACY):
                    n["rollback"] += 1
        return n

    def summary_line(self) -> str:
        n = self.summary()
        return f"Plan: {n['shadow']} to shadow, {n['cutover']} to cut over, {n['rollback']} to roll back."


# -- building ------------------------------------------------------------------------------

def fingerprint(ingestion, state: str) -> str:
    d = ingestion.definition()
    d["credentials_hash"] = hashlib.sha256(json.dumps(ingestion.credentials or {}, sort_keys=True).encode()).hexdigest()
    d["state"] = state
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def steps_for(iid: str, from_state: str, to_state: str, *, handoff_timeout: float) -> tuple[Step, ...]:
    if to_state == SHADOW:
        return (
            Step("fork_shadow", iid),
            Step("deploy_prefect", iid, step_args(mode="shadow")),
            Step("set_state", iid, step_args(from_state=from_state, to_state=SHADOW)),
        )
    if to_state == CUTOVER:
        # DESIGN §4 handoff order: at no instant are both sides live-scheduled.
        return (
            Step("pause_legacy", iid),
            Step("wait_legacy_idle", iid, step_args(timeout=handoff_timeout)),
            Step("pause_prefect", iid, step_args(mode="shadow")),
            Step("deploy_prefect", iid, step_args(mode="live", paused=True)),
            Step("resume_prefect", iid, step_args(mode="live")),
            Step("set_state", iid, step_args(from_state=from_state, to_state=CUTOVER)),
        )
    raise ValueError(f"no plan for {from_state} -> {to_state}")


def next_state(state: str) -> str | None:
    return {LEGACY: SHADOW, ROLLED_BACK: SHADOW, SHADOW: CUTOVER}.get(state)


_WAVE = re.compile(r"^(?:(?P<name>[A-Za-z][\w-]*)=)?(?P<size>rest|\d+%|\d+)$")


def parse_waves(spec: str) -> list[tuple[str | None, str]]:
    out = []
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        m = _WAVE.match(part)
        if not m:
            raise InputError(f"wave {part!r} is not understood", fix="use e.g. --waves 'canary=2,25%,rest'")
        out.append((m["name"], m["size"]))
    if not out:
        raise InputError("no waves given", fix="use e.g. --waves 'canary=2,25%,rest'")
    if any(size == "rest" for _, size in out[:-1]):
        raise InputError("'rest' must be the last wave", fix="use e.g. --waves 'canary=2,25%,rest'")
    return out


def risk(row: dict) -> tuple:
    """Low risk first: small, infrequent, long clean streak."""
    size = {"small": 0, "medium": 1, "large": 2}.get(row["ingestion"].size_class, 1)
    return (size, row.get("fires_per_day", 0.0), -row.get("streak", 0), row["ingestion"].id)


def build_plan(inventory: list[dict], *, waves: str = DEFAULT_WAVES, select: str | None = None,
               gate: str = DEFAULT_GATE, created_by: str = "", handoff_timeout: float = 600.0) -> Plan:
    """inventory rows: {"ingestion": Ingestion, "state": str, "streak": int, "fires_per_day": float}."""
    parse_gate(gate)
    specs = parse_waves(waves)
    rows = [r for r in inventory if selected(r, select)]
    movable = sorted([r for r in rows if next_state(r["state"])], key=risk)
    total = len(movable)
    out_waves, i = [], 0
    for k, (name, size) in enumerate(specs, start=1):
        if size == "rest":
            n = total - i
        elif size.endswith("%"):
            n = math.ceil(total * int(size[:-1]) / 100)
        else:
            n = int(size)
        chunk = movable[i:i + n]
        i += len(chunk)
        moves = tuple(Move(r["ingestion"].id, r["state"], next_state(r["state"]),
                           steps_for(r["ingestion"].id, r["state"], next_state(r["state"]), handoff_timeout=handoff_timeout))
                      for r in chunk)
        if moves:
            out_waves.append(Wave(len(out_waves) + 1, name or f"wave-{k}", moves))
    fps = {r["ingestion"].id: fingerprint(r["ingestion"], r["state"]) for r in movable}
    return Plan(uuid.uuid4().hex[:12], datetime.now(timezone.utc).isoformat(), created_by, gate, tuple(out_waves), fps,
                handoff_timeout)


def selected(row: dict, select: str | None) -> bool:
    if not select:
        return True
    ing = row["ingestion"]
    for term in [t.strip() for t in select.split(",") if t.strip()]:
        if "=" in term:
            k, v = term.split("=", 1)
            val = {"owner": ing.owner, "format": ing.format, "size_class": ing.size_class, "priority": ing.priority,
                   "queue": ing.work_queue, "state": row["state"], "table": ing.table}.get(k.strip())
            if val is None and k.strip() not in ("owner",):
                raise InputError(f"--select key {k!r} is not known", fix="use id globs or owner=, format=, size_class=, priority=, queue=, state=, table=")
            if fnmatch(str(val or ""), v.strip()):
                return True
        elif fnmatch(ing.id, term):
            return True
    return False


# -- gates ---------------------------------------------------------------------------------

_GATE = re.compile(r"^(streak)\s*>=\s*(\d+)$|^(schedule_verified)$|^(no_open_waiver)$")


def parse_gate(spec: str) -> list[tuple[str, int | None]]:
    out = []
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        m = _GATE.match(part)
        if not m:
            raise InputError(f"gate {part!r} is not understood", fix="use streak>=N, schedule_verified, no_open_waiver")
        if m.group(1):
            out.append(("streak", int(m.group(2))))
        else:
            out.append((m.group(3) or m.group(4), None))
    return out


_args = step_args  # the name cutover.cli.shadow_cmd still imports
