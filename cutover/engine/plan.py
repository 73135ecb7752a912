"""Phased cutover plans: waves of per-ingestion moves, each step with its inverse.

A Plan is a frozen, serializable object built from the inventory; it records a
fingerprint of every ingestion definition and state it was built from, so a
stale plan is refused. Executing and dry-running are two evaluators over the
same steps (cutover.engine.execute).

A saved plan carries a digest (:func:`digest_of`): the SHA-256 of its content (which holds the
fingerprints, i.e. the inventory state it was built from) and a short hash of every part
(header field, gate condition, fingerprint, wave, move field, step). :meth:`Plan.load` refuses a
plan whose content does not match its digest ("plan was edited: ..."), naming each part that
differs; the journal of an execution is bound to the content digest (the operation id holds it,
cutover.engine.execute.operation_id), so an edited plan never resumes another plan's journal.
The digest is a seal against edits, not a signature: it has no secret.
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
from cutover.core.validate import did_you_mean, read_text

PLAN_VERSION = 2  # 2: the saved plan carries a digest of its content
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
    """A Step's ``args``: the keyword arguments, sorted (so equal steps compare and hash equal)."""
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

    def content(self) -> dict:
        """What the plan says (everything but its digest)."""
        return {"version": self.version, "id": self.id, "created_at": self.created_at, "created_by": self.created_by,
                "gate": self.gate, "handoff_timeout": float(self.handoff_timeout), "fingerprints": self.fingerprints,
                "waves": [w.as_dict() for w in self.waves]}

    def digest(self) -> str:
        """SHA-256 (hex) of the content: what binds a saved plan and its journal to what it says."""
        return content_digest(self.content())

    def as_dict(self) -> dict:
        content = self.content()
        return {**content, "digest": digest_of(content)}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        """The plan a dict describes (its digest is not checked here: :meth:`loads` does)."""
        if d.get("version") != PLAN_VERSION:
            raise InputError(f"plan version {d.get('version')} is not supported", fix="make a new plan with `cutover plan`")
        return cls(d["id"], d["created_at"], d["created_by"], d["gate"], tuple(Wave.from_dict(w) for w in d["waves"]),
                   dict(d.get("fingerprints", {})), float(d.get("handoff_timeout", 600.0)))

    @classmethod
    def loads(cls, text: str, where: str = "the plan") -> "Plan":
        """Parse a saved plan and check it against its digest (InputError "plan was edited: ..." when not)."""
        try:
            d = json.loads(text)
        except ValueError as e:
            raise InputError(f"{where} is not a cutover plan ({e})", fix="make one with `cutover plan --out FILE`") from None
        if not isinstance(d, dict):
            raise InputError(f"{where} is not a cutover plan (not a JSON object)", fix="make one with `cutover plan --out FILE`")
        if d.get("version") != PLAN_VERSION:
            raise InputError(f"plan version {d.get('version')} is not supported", fix="make a new plan with `cutover plan`")
        verify_digest(d, where)
        # its shape (types, fields, actions, states), typed: pydantic loads here, where a plan file is read
        from cutover.core.schema import validated
        from cutover.core.schema.planfile import PlanFile

        validated(PlanFile, d, where=where, root="a JSON object")
        plan = cls.from_dict(d)
        if plan.digest() != d["digest"]["plan"]:  # a content from_dict does not read back the same
            raise InputError(f"plan was edited: {where} has fields cutover does not read back the same",
                             fix=_EDITED_FIX)
        return plan

    @classmethod
    def load(cls, path) -> "Plan":
        p = Path(path)
        if not p.exists():
            raise InputError(f"plan file {p} does not exist", fix="make one with `cutover plan --out FILE`")
        return cls.loads(read_text(p, what="a plan saved by `cutover plan --out FILE`"), str(p))

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


# -- the digest: a saved plan cannot be edited behind our back -------------------------------

_EDITED_FIX = "do not edit a saved plan: make a new one with `cutover plan --out FILE`"
_HEADER = {"version": "plan version", "id": "plan id", "created_at": "creation time", "created_by": "author",
           "handoff_timeout": "handoff timeout"}
_MOVE_FIELDS = ("ingestion_id", "from_state", "to_state")
_STATES = (LEGACY, SHADOW, CUTOVER, ROLLED_BACK, "DONE")


def _canon(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def content_digest(content) -> str:
    """SHA-256 (hex) of the canonical JSON of a plan's content (or of a part of it)."""
    return hashlib.sha256(_canon(content).encode()).hexdigest()


def _h(kind: str, value) -> str:
    """The short hash of one part, tagged with what it is (so equal values of two kinds differ)."""
    return hashlib.sha256(_canon([kind, value]).encode()).hexdigest()[:16]


def _gate_terms(gate) -> list[str]:
    return [re.sub(r"\s+", "", t) for t in str(gate).split(",") if t.strip()]


def digest_of(content: dict) -> dict:
    """The digest a saved plan carries: ``plan`` the SHA-256 of the whole content, ``inventory`` that of
    the fingerprints it was built from, and ``parts`` a short hash of every part (to name what an edit
    changed: which header field, gate condition, fingerprint, wave, move field, step)."""
    fps = content.get("fingerprints") or {}
    return {
        "algorithm": "sha256",
        "plan": content_digest(content),
        "inventory": content_digest(fps),
        "parts": {
            "header": {k: _h(k, content.get(k)) for k in _HEADER},
            "gate": [_h("gate", t) for t in _gate_terms(content.get("gate", ""))],
            "fingerprints": {iid: _h("fingerprint", [iid, fp]) for iid, fp in fps.items()},
            "waves": [{"number": _h("wave.number", w.get("number")), "name": _h("wave.name", w.get("name")),
                       "moves": [{**{f: _h(f, m.get(f)) for f in _MOVE_FIELDS},
                                  "steps": [_h("step", st) for st in m.get("steps", [])]}
                                 for m in w.get("moves", [])]}
                      for w in content.get("waves", [])],
        },
    }


def verify_digest(d: dict, where: str = "the plan") -> None:
    """Raise InputError "plan was edited: ..." unless the content of the saved plan ``d`` matches its digest."""
    stored = d.get("digest")
    content = {k: v for k, v in d.items() if k != "digest"}
    if not isinstance(stored, dict) or not isinstance(stored.get("plan"), str):
        raise InputError(f"plan was edited: {where} carries no digest (it was removed or altered)", fix=_EDITED_FIX)
    if content_digest(content) == stored["plan"]:
        return
    try:
        edits = describe_edits(stored.get("parts") or {}, content)
    except (AttributeError, KeyError, TypeError, ValueError):
        edits = ["its content is not well-formed any more"]
    raise InputError(f"plan was edited: {'; '.join(edits)} ({where} does not match its digest)", fix=_EDITED_FIX)


def _recover(h, kind: str, candidates) -> Any:
    """The candidate whose hash is ``h`` (what a part was before the edit), or None."""
    for c in candidates:
        if _h(kind, c) == h:
            return c
    return None


def _gate_candidates():
    yield "schedule_verified"
    yield "no_open_waiver"
    for n in range(0, 10001):
        yield f"streak>={n}"


def describe_edits(parts: dict, content: dict) -> list[str]:
    """What differs between the stored part hashes and the content, as precisely as the hashes allow:
    the values of small domains (states, gate conditions, ingestion ids the plan knew, steps the
    planner makes) are recovered by trying them."""
    cur = digest_of(content)["parts"]
    out: list[str] = []
    for k, label in _HEADER.items():
        if (parts.get("header") or {}).get(k) != cur["header"][k]:
            out.append(f"the {label} changed (now {content.get(k)!r})")
    sg, cg = list(parts.get("gate") or []), cur["gate"]
    for h in sg:
        if h not in cg:
            out.append(f"a gate was removed ({_recover(h, 'gate', _gate_candidates()) or 'a condition'})")
    for t, h in zip(_gate_terms(content.get("gate", "")), cg):
        if h not in sg:
            out.append(f"a gate was added or changed ({t})")
    sf, cf = dict(parts.get("fingerprints") or {}), cur["fingerprints"]
    for iid in sorted(set(sf) | set(cf)):
        if iid not in cf:
            out.append(f"the fingerprint of {iid} was removed")
        elif iid not in sf:
            out.append(f"a fingerprint of {iid} was added")
        elif sf[iid] != cf[iid]:
            out.append(f"the fingerprint of {iid} changed (the inventory state the plan was built from)")
    known_ids = sorted(set(sf) | {m.get("ingestion_id") for w in content.get("waves", []) for m in w.get("moves", [])},
                       key=str)
    sw, cw, waves = list(parts.get("waves") or []), cur["waves"], content.get("waves", [])
    for i in range(max(len(sw), len(cw))):
        if i >= len(cw):
            out.append(f"wave {i + 1} was removed")
        elif i >= len(sw):
            out.append(f"wave {waves[i].get('number')} ({waves[i].get('name')}) was added")
        else:
            out += _wave_edits(sw[i], cw[i], waves[i], known_ids, content.get("handoff_timeout"))
    if not out:
        extra = sorted(set(content) - {*_HEADER, "gate", "fingerprints", "waves"})
        out.append(f"field(s) {', '.join(extra)} were added" if extra else "a field the digest does not itemize changed")
    return out


def _wave_edits(sw: dict, cw: dict, wave: dict, known_ids: list, handoff_timeout) -> list[str]:
    label = f"wave {wave.get('number')}"
    out = []
    if sw.get("number") != cw["number"]:
        out.append(f"{label}: the wave number changed")
    if sw.get("name") != cw["name"]:
        out.append(f"{label}: the wave name changed (now {wave.get('name')!r})")
    sm, cm, moves = list(sw.get("moves") or []), cw["moves"], wave.get("moves", [])
    pairs, used = [], set()
    for a, s in enumerate(sm):  # a move is matched by its ingestion id first, then by position
        b = next((b for b, c in enumerate(cm) if b not in used and c["ingestion_id"] == s.get("ingestion_id")), None)
        if b is not None:
            pairs.append((a, b))
            used.add(b)
    left_s = [a for a in range(len(sm)) if a not in {p[0] for p in pairs}]
    left_c = [b for b in range(len(cm)) if b not in used]
    pairs += list(zip(left_s, left_c))
    for a in left_s[len(left_c):]:
        was = _recover(sm[a].get("ingestion_id"), "ingestion_id", known_ids)
        out.append(f"{label}: a move was removed ({was or f'move {a + 1}'})")
    for b in left_c[len(left_s):]:
        out.append(f"{label}: a move was added ({moves[b].get('ingestion_id')})")
    for a, b in sorted(pairs, key=lambda p: p[1]):
        out += _move_edits(label, sm[a], cm[b], moves[b], known_ids, handoff_timeout)
    return out


def _move_edits(label: str, s: dict, c: dict, move: dict, known_ids: list, handoff_timeout) -> list[str]:
    iid = move.get("ingestion_id")
    was = {f: _recover(s.get(f), f, known_ids if f == "ingestion_id" else _STATES) for f in _MOVE_FIELDS}
    out = []
    if s.get("ingestion_id") != c["ingestion_id"]:
        out.append(f"{label}: ingestion id changed ({was['ingestion_id'] or 'a move'} is now {iid})")
    name = was["ingestion_id"] or iid
    if s.get("from_state") != c["from_state"] or s.get("to_state") != c["to_state"]:
        before = f"{was['from_state'] or '?'} -> {was['to_state'] or '?'}"
        out.append(f"{label}: a move was flipped ({name}: {before} is now {move.get('from_state')} -> {move.get('to_state')})")
    ss, cs, steps = list(s.get("steps") or []), c["steps"], move.get("steps", [])
    if ss == cs:
        return out
    if sorted(ss) == sorted(cs):
        return out + [f"{label}, {name}: the steps were reordered"]
    candidates = []  # the steps the planner would have made for this move, before or after the edit
    for fs, ts in {(was["from_state"], was["to_state"]), (move.get("from_state"), move.get("to_state"))}:
        try:
            candidates += [st.as_dict() for st in steps_for(name, fs, ts, handoff_timeout=handoff_timeout)]
        except (ValueError, TypeError):
            pass
    for k, h in enumerate(ss):
        if h not in cs:
            st = _recover(h, "step", candidates)
            out.append(f"{label}, {name}: a step was removed or changed "
                       f"({_describe(st) if st else f'step {k + 1} of {len(ss)}'})")
    for k, (st, h) in enumerate(zip(steps, cs)):
        if h not in ss:
            out.append(f"{label}, {name}: a step was added or changed (step {k + 1}: {_describe(st)})")
    return out


def _describe(step: dict) -> str:
    try:
        return Step.from_dict(step).describe().split(": ", 1)[-1]
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        return str(step.get("action")) if isinstance(step, dict) else repr(step)


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
            # deploying never un-pauses: after a rollback (or a pause) the shadow deployment is
            # there, paused, and a shadow that does not run would never build a parity streak
            Step("resume_prefect", iid, step_args(mode="shadow")),
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
        size = m["size"]
        if size != "rest" and (int(size.rstrip("%")) == 0 or (size.endswith("%") and int(size[:-1]) > 100)):
            raise InputError(f"wave {part!r}: {size} is not a wave size", fix="give 1-100% or a count of at least 1, "
                             "e.g. --waves 'canary=2,25%,rest'")
        out.append((m["name"], size))
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
    check_select(select)
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


SELECT_KEYS = ("owner", "format", "size_class", "priority", "queue", "state", "table")


def check_select(select: str | None) -> None:
    """Every ``key=`` term of ``--select`` names a known key (checked even when nothing is selected)."""
    for term in [t.strip() for t in (select or "").split(",") if t.strip()]:
        key = term.split("=", 1)[0].strip() if "=" in term else None
        if key is not None and key not in SELECT_KEYS:
            raise InputError(f"--select key {key!r} is not known", fix=did_you_mean(key, SELECT_KEYS, valid="use id globs or"))


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
                raise InputError(f"--select key {k.strip()!r} is not known",
                                 fix=did_you_mean(k.strip(), SELECT_KEYS, valid="use id globs or"))
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


