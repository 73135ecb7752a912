"""Fake incident controls (``cutover.protocol.IncidentWriter``) for the engine's pause/resume tests.

Two sides, as the engine sees real ones: ``FakeLegacyIncident`` (a selective fence, like the
legacy fence row) and ``FakePrefectIncident`` (a global fence, like a work pool). Their world —
every job's paused flag and each side's fence — lives in one JSON file in the workspace
(``fake-incident.json``), written atomically after every change, so it survives the process:
the tests kill ``cutover pause`` / ``cutover resume`` for real and run them again.

Failure injection, from the environment of the process under test:

- ``CUTOVER_FAKE_KILL_AFTER=N``: ``os._exit(137)`` right after the N-th side effect of this
  process (a job paused or restored, a fence raised or lifted, a snapshot part handed to the
  engine's ``store``) — the state change is on disk, the engine never hears of it;
- ``CUTOVER_FAKE_DOWN=prefect`` (comma-separated side names): that side raises
  ``OrchestratorError`` on every call.

Every side effect is appended to the world's ``effects`` list (``[side, action, item]``), so a test
can count what happened across a kill and a re-run.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Callable

from cutover.protocol import FenceHeld, OrchestratorError, Restored

WORLD_FILE = "fake-incident.json"
_LOCK = threading.Lock()
_EFFECTS_THIS_PROCESS = [0]


def world_path(home) -> Path:
    return Path(home) / WORLD_FILE


def write_world(home, world: dict) -> None:
    p = world_path(home)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(world, sort_keys=True))
    os.replace(tmp, p)


def read_world(home) -> dict:
    return json.loads(world_path(home).read_text())


def new_world(home, jobs: dict[str, dict[str, bool]]) -> dict:
    """``jobs``: {side: {ingestion id: paused}}. Fences down, no effects."""
    world = {"jobs": jobs, "fences": {side: None for side in jobs}, "effects": []}
    write_world(home, world)
    return world


class _FakeIncident:
    name = "fake"
    label = "fake jobs"
    fence_label = "fake fence"
    fence_selective = True

    def __init__(self, ws, **_):
        self.home = ws.settings.home

    @classmethod
    def available(cls, ws) -> bool:
        return world_path(ws.settings.home).exists()

    # -- the world
    def _check(self) -> None:
        down = {s.strip() for s in os.environ.get("CUTOVER_FAKE_DOWN", "").split(",") if s.strip()}
        if self.name in down:
            raise OrchestratorError(f"{self.name} is down (CUTOVER_FAKE_DOWN)")

    def _effect(self, world: dict, action: str, item: str | None) -> None:
        """Record a side effect, persist the world, and die here if told to."""
        world["effects"].append([self.name, action, item])
        write_world(self.home, world)
        _EFFECTS_THIS_PROCESS[0] += 1
        kill = os.environ.get("CUTOVER_FAKE_KILL_AFTER")
        if kill and _EFFECTS_THIS_PROCESS[0] == int(kill):
            os._exit(137)

    def _jobs(self, world: dict) -> dict[str, bool]:
        return world["jobs"].setdefault(self.name, {})

    # -- reader
    def read_fence(self) -> dict:
        self._check()
        with _LOCK:
            return {"up_before": read_world(self.home)["fences"].get(self.name) is not None}

    def read(self, ids: list[str]) -> dict:
        self._check()
        with _LOCK:
            jobs = self._jobs(read_world(self.home))
        return {"paused": {i: jobs[i] for i in ids if i in jobs}, "complete": True}

    def counts(self, state: dict | None) -> dict:
        paused = (state or {}).get("paused") or {}
        return {f"{self.name}_jobs": len(paused), f"{self.name}_jobs_already_paused": sum(paused.values())}

    def describe_pause(self, state: dict, *, fence: bool) -> list[str]:
        paused = state.get("paused") or {}
        return [f"{self.label}: {sum(1 for v in paused.values() if not v)} to pause"
                + (f"; {self.fence_label} up" if fence else "")]

    def _restore_plan(self, state: dict) -> tuple[list[tuple[str, bool]], list[str]]:
        with _LOCK:
            jobs = self._jobs(read_world(self.home))
        out, notes = [], []
        for iid, was in sorted((state.get("paused") or {}).items()):
            if iid not in jobs:
                notes.append(f"{self.name} job {iid} was removed since the snapshot: nothing to restore")
            elif jobs[iid] != was:
                out.append((iid, was))
        return out, notes

    def describe_restore(self, state: dict, fence_before: dict | None) -> tuple[list[str], list[str]]:
        out, notes = self._restore_plan(state)
        lines = [f"{self.label}: {iid} -> {'paused' if was else 'active'}" for iid, was in out]
        if fence_before is not None and not fence_before.get("up_before"):
            lines.append(f"{self.fence_label} lifted")
        return lines, notes

    def drift(self, state: dict | None, *, snapshot_id: str, fence_before: dict | None) -> list[dict]:
        with _LOCK:
            world = read_world(self.home)
        out = []
        jobs = self._jobs(world)
        for iid in sorted((state or {}).get("paused") or {}):
            if iid in jobs and not jobs[iid]:
                out.append({"kind": "unpaused", "ingestion_id": iid, "item": f"{self.name} job", "detail": "active again"})
        if fence_before is not None and world["fences"].get(self.name) != snapshot_id:
            out.append({"kind": "fence_lifted", "ingestion_id": None, "item": self.fence_label, "detail": "down"})
        return out

    # -- writer
    def fence(self, snapshot_id: str, *, ids: list[str] | None, reason: str | None) -> None:
        self._check()
        with _LOCK:
            world = read_world(self.home)
            held = world["fences"].get(self.name)
            if held == snapshot_id:
                return
            if held is not None:
                raise FenceHeld(f"{self.fence_label} is held by snapshot {held}")
            world["fences"][self.name] = snapshot_id
            self._effect(world, "fence", snapshot_id)

    def unfence(self, snapshot_id: str, before: dict) -> dict:
        self._check()
        with _LOCK:
            world = read_world(self.home)
            if world["fences"].get(self.name) != snapshot_id or before.get("up_before"):
                return {}
            world["fences"][self.name] = None
            self._effect(world, "unfence", snapshot_id)
        return {f"{self.name}_fence_lifted": 1}

    def pause_many(self, ids: list[str], state: dict | None, *, store: Callable[[dict], None],
                   progress_stream=None) -> int:
        self._check()
        if state is None or not state.get("complete"):
            state = self.read(ids)
            store(state)  # recorded before anything it covers changes
            with _LOCK:
                world = read_world(self.home)
                self._effect(world, "store", None)
        changed = 0
        for iid in sorted(state["paused"]):
            with _LOCK:
                world = read_world(self.home)
                jobs = self._jobs(world)
                if iid in jobs and not jobs[iid]:
                    jobs[iid] = True
                    self._effect(world, "pause", iid)
                    changed += 1
        return changed

    def complete(self, state: dict | None) -> bool:
        return bool(state and state.get("complete"))

    def restore(self, state: dict, *, progress_stream=None) -> Restored:
        self._check()
        out, notes = self._restore_plan(state)
        n = 0
        for iid, was in out:
            with _LOCK:
                world = read_world(self.home)
                self._jobs(world)[iid] = was
                self._effect(world, "restore", iid)
                n += 1
        return Restored({f"{self.name}_jobs": n}, notes, [])

    def close(self) -> None:
        pass


class FakeLegacyIncident(_FakeIncident):
    name = "legacy"
    label = "fake legacy jobs"
    fence_label = "fake legacy fence"
    fence_selective = True


class FakePrefectIncident(_FakeIncident):
    name = "prefect"
    label = "fake deployments"
    fence_label = "fake work pool paused"
    fence_selective = False


SIDES = {"legacy": "cutover.testing.fake_incident:FakeLegacyIncident",
         "prefect": "cutover.testing.fake_incident:FakePrefectIncident"}
