"""A side without a fence (a team's job store, its crontab: issue #15) makes `cutover pause` safe as
soon as it is paused durably -- not once every other side's (slow) durable pause is done too."""

from __future__ import annotations

import threading
import time

from cutover import registry
from cutover.core.state.snapshots import active
from cutover.core.workspace import Workspace
from cutover.engine.pause import pause
from cutover.protocol import Restored
from tests.helpers import add_ingestion

RELEASE = threading.Event()


class _Side:
    fence_label: str | None = None
    fence_selective = False

    def __init__(self, ws, **_):
        self.ws = ws

    def read_fence(self) -> dict:
        return {}

    def read(self, ids):
        return {"ids": list(ids)}

    def counts(self, state):
        return {}

    def describe_pause(self, state, *, fence):
        return []

    def describe_restore(self, state, fence_before):
        return [], []

    def drift(self, state, *, snapshot_id, fence_before):
        return []

    def fence(self, snapshot_id, *, ids, reason):
        pass

    def unfence(self, snapshot_id, before):
        return {}

    def pause_many(self, ids, state, *, store, progress_stream=None):
        store(self.read(ids))
        return len(ids)

    def complete(self, state):
        return state is not None

    def restore(self, state, *, progress_stream=None):
        return Restored({}, [], [])

    def close(self):
        pass


class Unfenced(_Side):
    name, label = "team", "team jobs"


class SlowFenced(_Side):
    name, label = "pool", "slow side"
    fence_label = "a global switch"

    def pause_many(self, ids, state, *, store, progress_stream=None):
        store(self.read(ids))
        assert RELEASE.wait(60)
        return len(ids)


def test_safe_once_the_unfenced_side_is_paused_while_a_fenced_side_is_still_pausing(workspace_env, tmp_path,
                                                                                   monkeypatch):
    monkeypatch.setattr(registry, "INCIDENT_SIDES", {"team": f"{__name__}:Unfenced", "pool": f"{__name__}:SlowFenced"})
    ws = Workspace()
    for iid in ("a", "b"):
        add_ingestion(ws, iid, tmp_path / iid)
    RELEASE.clear()
    out = {}
    th = threading.Thread(target=lambda: out.update(r=pause(ws, all_=True, reason="unit", echo=lambda *_: None)))
    th.start()
    try:
        deadline = time.monotonic() + 30
        snap = None
        while time.monotonic() < deadline:
            snap = active(ws.state_engine)
            if snap is not None and snap.progress.get("safe_at"):
                break
            time.sleep(0.05)
        assert snap is not None and snap.progress.get("safe_at"), "not safe while the fenced side was still pausing"
        assert "team" in snap.progress["durable"] and "pool" not in snap.progress["durable"]
    finally:
        RELEASE.set()
        th.join(60)
    assert out["r"].durable_after_s is not None and out["r"].safe_after_s <= out["r"].durable_after_s
