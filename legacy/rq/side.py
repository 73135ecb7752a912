"""The cutover engine's legacy side with RQ workflows in it, and the RQ part of the incident pause.

:class:`RQLegacySide` wraps the workspace's other legacy side (APScheduler/batch, or the
crontab side): ingestions listed in rq.json's ``workflows`` are paused by the RQ hold AND the
batch flag (the discover step honours both, so even a run already queued does not start), and
resumed by lifting both; every other ingestion goes to the wrapped side as before. APScheduler
never gets a job for an RQ ingestion (``JobSync.sync`` skips them): RQ runs it.

Incident pause (``cutover pause --all`` / ``cutover resume --snapshot``, cutover/engine/pause.py):

- the fast global fence is RQ's worker suspension (``rq suspend``: one Redis SET; every worker
  finishes the job it is on and takes no other) -- next to the legacy fence row, with the
  Prefect work pool fence; only for ``--all`` / ``--fence-pool`` (it stops every workflow on
  that Redis, like the pool fence stops every deployment of the pool). Whether the workers
  were suspended before is recorded first, so resume un-suspends them only if the pause did;
- the durable pause is the hold of every selected RQ ingestion (recorded before: an ingestion
  already held stays held after resume);
- resume: holds restored exactly as recorded (kickoffs back in the ScheduledJobRegistry at
  their own time, or at the next fire time if theirs passed), then the workers resumed (last,
  with the legacy fence).
"""

from __future__ import annotations

from typing import Any

from cutover.core.errors import IngestionPaused
from cutover.core.state.audit import who
from cutover.core.workflow import managed_ids

from cutover.protocol import UNCHANGED, Health, JobInfo, OrchestratorError, run_legacy_now
from legacy.rq.adapter import RQAdapter
from legacy.rq.model import RQConfig


def configured(settings) -> bool:
    return RQConfig.exists(settings)


def managed(ws) -> set[str]:
    return managed_ids(ws.settings)


class RQLegacySide:
    name = "legacy"

    def __init__(self, ws, rq=None, *, base):
        """``base``: the legacy side this one wraps (the registry composes them)."""
        self.ws = ws
        self.base = base
        self._rq = rq
        self.batch = base.batch
        self.aps = base.aps

    @property
    def rq(self):
        if self._rq is None:
            self._rq = RQAdapter(self.ws)
        return self._rq

    def _mine(self, iid: str) -> bool:
        return iid in managed(self.ws)

    def ensure_job(self, ing) -> str:
        return self.rq.ensure_job(ing) if self._mine(ing.id) else self.base.ensure_job(ing)

    def pause(self, iid: str) -> bool:
        if not self._mine(iid):
            return self.base.pause(iid)
        a = self.rq.pause(iid) if self.rq.is_paused(iid) is not None else False
        b = self.batch.pause(iid)
        return a or b

    def resume(self, iid: str) -> bool:
        if not self._mine(iid):
            return self.base.resume(iid)
        a = False
        if self.rq.is_paused(iid) is None:  # no definition (removed): put it back from the inventory
            a = self.rq.ensure_job(self.ws.ingestions.get(iid)) != UNCHANGED
        a = self.rq.resume(iid) or a
        b = self.batch.resume(iid)
        return a or b

    def run_now(self, iid: str, *, trigger: str = "manual") -> str:
        """Run the ingestion on the legacy side now, as its orchestrator runs it, and wait; returns the
        run id. An RQ workflow is enqueued on RQ (its workers run it); any other ingestion goes to the
        side this one wraps. Raises IngestionPaused when the legacy side is held, paused or fenced."""
        if not self._mine(iid):
            return run_legacy_now(self.base, iid, trigger=trigger)
        run_id = self.rq.trigger(iid, wait=True, trigger=trigger)
        state = self.rq.run_state(run_id) or {}
        if state.get("status") in ("SKIPPED", "CANCELLED"):
            raise IngestionPaused(f"the RQ workflow run of {iid} did not start: {state.get('reason')}",
                                  fix=f"see `cutover rq runs {iid}`")
        return run_id

    def list_jobs(self) -> list[JobInfo]:
        mine = managed(self.ws)
        return [j for j in self.base.list_jobs() if not (j.ingestion_id in mine and j.orchestrator == "batch")] \
            + self.rq.list_jobs()

    def health(self):
        h = self.base.health()
        r = self.rq.health()
        return Health(h.ok and r.ok, f"{h.detail}; {r.detail}")

    def live_state(self) -> dict[str, dict]:
        out = self.base.live_state()
        mine = managed(self.ws)
        if not mine:
            return out
        try:
            jobs = {j.ingestion_id: j for j in self.rq.list_jobs()}
        except OrchestratorError:  # Redis down: the RQ ingestions' legacy state is unknown, the others are not
            for iid in mine:
                out.pop(iid, None)
            return out
        for ing in self.ws.ingestions.list():
            if ing.id not in mine:
                continue
            j = jobs.get(ing.id)
            if j is None:
                out[ing.id] = {"live": False, "text": "no RQ definition (run `cutover rq sync`)"}
            elif j.paused or ing.batch_paused:
                out[ing.id] = {"live": False, "text": "paused (RQ hold)" if j.paused else "paused"}
            elif j.schedule is None:
                out[ing.id] = {"live": True, "text": "RQ workflow (manual)"}
            else:
                out[ing.id] = {"live": True, "text": "RQ workflow scheduled"}
        return out


# -- the incident pause's RQ part (cutover/engine/pause.py) ---------------------------------------

def _adapter(ws):
    return RQAdapter(ws)


def read_state(ws, ids: list[str]) -> dict[str, Any] | None:
    """{"holds": {ingestion: held?}, "suspended": bool} for the RQ ingestions among ``ids`` that
    have a definition; None when the workspace has no RQ setup. Raises OrchestratorError when
    Redis does not answer."""
    if not configured(ws.settings):
        return None
    a = _adapter(ws)
    try:
        defs = set(a._call(a.store.def_ids))
        wanted = [i for i in ids if i in defs]
        return {"holds": a._call(a.store.held_map, wanted), "suspended": a._call(a.store.suspended),
                "url": a.config.public_url}
    finally:
        a.close()


def workers_suspended(ws) -> bool:
    a = _adapter(ws)
    try:
        return a._call(a.store.suspended)
    finally:
        a.close()


def suspend_workers(ws) -> bool:
    """Suspend every RQ worker on the workspace's Redis (``rq suspend``); True if this suspended them."""
    a = _adapter(ws)
    try:
        return a._call(a.store.suspend)
    finally:
        a.close()


def unsuspend_workers(ws) -> bool:
    a = _adapter(ws)
    try:
        return a._call(a.store.unsuspend)
    finally:
        a.close()


def set_holds(ws, holds: dict[str, bool], *, reason: str | None = None) -> int:
    """Each ingestion's hold to the given value (True: held); returns how many changed."""
    a = _adapter(ws)
    n = 0
    try:
        for iid, want in sorted(holds.items()):
            if a._call(a.store.read_def, iid) is None:
                continue
            if want:
                n += bool(a._call(a.store.hold, iid, by=who(), reason=reason))
            else:
                n += bool(a._call(a.store.unhold, iid))
        return n
    finally:
        a.close()


def lifted_holds(ws, snap_rq: dict) -> list[str]:
    """Ingestions the pause held that are not held any more (drift, for `cutover status`)."""
    now = read_state(ws, list(snap_rq.get("holds") or {}))
    if now is None:
        return []
    return sorted(i for i in (snap_rq.get("holds") or {}) if i in now["holds"] and not now["holds"][i])
