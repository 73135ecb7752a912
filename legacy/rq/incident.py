"""The RQ side's incident control (``cutover.protocol.IncidentWriter``): workflow holds and worker suspension.

- fence: RQ's worker suspension (``rq suspend``: one Redis SET; every worker finishes the job
  it is on and takes no other). It stops every workflow on that Redis, so it is a global switch
  (``--all`` / ``--fence-pool`` only). Whether the workers were suspended before is recorded
  first (``{"suspended_before": bool}``), so resume un-suspends them only if the pause did;
- snapshot part: ``{"holds": {ingestion: held?}}`` for the selection's RQ workflows;
- durable pause: every selected workflow held; restore: holds lifted for the ones not held before.
"""

from __future__ import annotations

from typing import Callable

from cutover.protocol import Restored
from legacy.rq.side import configured, read_state, set_holds, suspend_workers, unsuspend_workers, workers_suspended


class RQIncident:
    name = "rq"
    label = "RQ workflow holds"
    fence_label = "RQ workers suspended (rq suspend)"
    fence_selective = False

    def __init__(self, ws, **_):
        self.ws = ws

    @staticmethod
    def available(ws) -> bool:
        return configured(ws.settings)

    # -- reader
    def read_fence(self) -> dict:
        return {"suspended_before": workers_suspended(self.ws)}

    def read(self, ids: list[str]) -> dict:
        st = read_state(self.ws, ids)
        return {"holds": st["holds"] if st is not None else {}}

    def counts(self, state: dict | None) -> dict:
        holds = (state or {}).get("holds") or {}
        return {"rq_workflows": len(holds), "rq_workflows_already_held": sum(1 for v in holds.values() if v)}

    def describe_pause(self, state: dict, *, fence: bool) -> list[str]:
        c = self.counts(state)
        return [f"RQ: {c['rq_workflows']} workflow(s), {c['rq_workflows'] - c['rq_workflows_already_held']} to hold"
                + ("; workers suspended (rq suspend)" if fence else "; workers not suspended (--select)")]

    def changes(self, state: dict) -> tuple[list, list[str]]:
        """([(ingestion id, held)], notes) to restore the snapshot part."""
        holds = state.get("holds") or {}
        if not holds:
            return [], []
        now = read_state(self.ws, list(holds)) or {"holds": {}}
        out, notes = [], []
        for iid, was in holds.items():
            if iid not in now["holds"]:
                notes.append(f"RQ workflow {iid} was removed since the snapshot: nothing to restore")
            elif now["holds"][iid] != was:
                out.append((iid, was))
        return out, notes

    def describe_restore(self, state: dict, fence_before: dict | None) -> tuple[list[str], list[str]]:
        holds, notes = self.changes(state)
        return ([f"RQ: {sum(1 for _, h in holds if not h)} workflow hold(s) to lift, {sum(1 for _, h in holds if h)} "
                 f"to keep" + ("; workers resumed (they were not suspended before)"
                               if (fence_before or {}).get("suspended_before") is False else "")], notes)

    def drift(self, state: dict | None, *, snapshot_id: str, fence_before: dict | None) -> list[dict]:
        out: list[dict] = []
        try:
            if state and state.get("holds"):
                now = (read_state(self.ws, list(state["holds"])) or {}).get("holds") or {}
                for iid in state["holds"]:
                    if iid in now and not now[iid]:
                        out.append({"kind": "rq hold", "ingestion_id": iid, "item": iid, "detail": "RQ hold lifted"})
            if (fence_before or {}).get("suspended_before") is False and not workers_suspended(self.ws):
                out.append({"kind": "rq workers", "ingestion_id": None, "item": "rq:suspended",
                            "detail": "RQ workers resumed (rq resume)"})
        except Exception:  # noqa: BLE001 - an unreadable side is left out of the drift
            pass
        return out

    # -- writer
    def fence(self, snapshot_id: str, *, ids: list[str] | None, reason: str | None) -> None:
        suspend_workers(self.ws)

    def unfence(self, snapshot_id: str, before: dict) -> dict:
        if before.get("suspended_before") is False:
            unsuspend_workers(self.ws)
            return {"rq_workers_resumed": True}
        return {}

    def pause_many(self, ids: list[str], state: dict | None, *, store: Callable[[dict], None],
                   progress_stream=None) -> int:
        if state is None:
            state = self.read(ids)
            store(state)  # stored before anything changes
        return set_holds(self.ws, {iid: True for iid in state["holds"]}, reason="cutover pause")

    def complete(self, state: dict | None) -> bool:
        return state is not None

    def restore(self, state: dict, *, progress_stream=None) -> Restored:
        holds, notes = self.changes(state)
        lifted = set_holds(self.ws, {i: h for i, h in holds if not h})
        return Restored({"rq_holds_lifted": lifted,
                         "rq_holds_kept": sum(1 for h in (state.get("holds") or {}).values() if h)}, notes, [])

    def close(self) -> None:
        pass
