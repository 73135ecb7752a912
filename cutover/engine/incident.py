"""What `cutover pause` and `cutover resume` share: the selection, the sides' incident controls
(``cutover.protocol.IncidentWriter``, by name from ``cutover.registry``), counts, drift, the
operation lock wait, and time-to-safe."""

from __future__ import annotations

import os
import time
from typing import Callable

from cutover.core.errors import InputError
from cutover.core.osutil import process_started_at
from cutover.core.redact import redact_text
from cutover.core.state import lock, states
from cutover.core.state.snapshots import Snapshot
from cutover.engine.plan import selected
from cutover.protocol import IncidentReader, OrchestratorError

Echo = Callable[[str], None]
LOCK_WAIT_S = 300.0  # how long pause waits for an execute/rollback to finish its steps (CUTOVER_PAUSE_LOCK_WAIT_S)


def reason(e: BaseException) -> str:
    """One redacted line for a problem list."""
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return redact_text(text if isinstance(e, (OrchestratorError, InputError)) else f"{type(e).__name__}: {text}")[:300]


def select_ingestions(ws, *, all_: bool, select: str | None) -> dict:
    if all_ == bool(select):
        raise InputError("say what to pause", fix="pass --all, or --select with id globs / owner=, format=, state=, ...")
    st = states.get_states(ws.state_engine)
    ids = [ing.id for ing in ws.items.list()
           if all_ or selected({"ingestion": ing, "state": st.get(ing.id, states.LEGACY)}, select)]
    if not ids:
        raise InputError("no ingestion matches" if select else "there are no ingestions",
                         fix="see `cutover inventory`")
    return {"all": bool(all_), "select": select or None, "ids": ids}


def fencers(controls: list, pool_fence: bool) -> list:
    """The controls whose fence goes up: the selective ones always, the global switches with --all / --fence-pool."""
    return [c for c in controls if c.fence_label and (c.fence_selective or pool_fence)]


def counts(snap: Snapshot, controls: list[IncidentReader]) -> dict:
    """Counts of the snapshot for reports and `cutover pause list` (also stored in the body)."""
    out: dict = {"ingestions": len(snap.ids)}
    for c in controls:
        out.update(c.counts(snap.sides.get(c.name)))
    out["fenced"] = sorted(snap.fences)
    return out


def acquire_lock(engine, what: str, *, wait_s: float, echo: Echo) -> tuple[str | None, str | None]:
    """(lock id, None) once the operation lock is ours, waiting up to ``wait_s`` for its holder;
    (None, why) when it is still held then."""
    deadline = time.monotonic() + wait_s
    told = False
    while True:
        try:
            return lock.acquire(engine, what), None
        except lock.Locked as e:
            if time.monotonic() >= deadline:
                return None, e.one_line()
            if not told:
                echo(f"  waiting for the operation lock ({e.one_line()}); the fences are up meanwhile")
                told = True
            time.sleep(0.2)


def lock_wait_s(ws) -> float:
    try:
        return float(os.environ.get("CUTOVER_PAUSE_LOCK_WAIT_S", LOCK_WAIT_S))
    except ValueError:
        return LOCK_WAIT_S


def drift(snap: Snapshot, controls: list[IncidentReader]) -> list[dict]:
    """Items the pause changed that run again while the snapshot is ACTIVE (for `cutover status`)."""
    p = snap.progress
    out: list[dict] = []
    for c in controls:
        out += c.drift(snap.sides.get(c.name) if (p.get("durable") or {}).get(c.name) else None,
                       snapshot_id=snap.id,
                       fence_before=snap.fences.get(c.name) if (p.get("fenced") or {}).get(c.name) else None)
    return out
