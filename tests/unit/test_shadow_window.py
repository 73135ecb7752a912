"""`shadow run --once` compares the runs it starts: its parity window begins a second before now
(another host's clock), but never before the end of a run that had ended already (CI once saw the
previous shadow run, ended half a second before, counted on one side)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from cutover.commands.migration import window_start
from cutover.core.workspace import Workspace


def test_the_window_starts_after_a_run_that_just_ended(workspace_env):
    ws = Workspace()
    item = SimpleNamespace(id="orders")
    now = datetime.now(timezone.utc)
    assert window_start(ws, [item], now) == now - timedelta(seconds=1)  # no run yet
    rid = ws.runs.start("orders", orchestrator="prefect", mode="shadow", trigger="manual")
    ended = ws.runs.finish(rid, "SUCCESS").ended_at
    other = ws.runs.start("customers", orchestrator="legacy", mode="live", trigger="manual")
    ws.runs.finish(other, "SUCCESS")
    time.sleep(0.01)
    now = datetime.now(timezone.utc)
    assert now - ended < timedelta(seconds=1)
    assert window_start(ws, [item], now) == ended + timedelta(microseconds=1)
    # a run still going does not move it; nor does another item's
    ws.runs.start("orders", orchestrator="legacy", mode="live", trigger="scheduled")
    assert window_start(ws, [item], now) == ended + timedelta(microseconds=1)
    later = now + timedelta(seconds=5)
    assert window_start(ws, [item], later) == later - timedelta(seconds=1)
