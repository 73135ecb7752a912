"""watch: the rollback triggers of every ingestion in CUTOVER (the work is in cutover.engine.watch)."""

from __future__ import annotations

from typing import Callable

from cutover.core.config import Settings, parse_duration
from cutover.core.errors import InputError
from cutover.core.workspace import Workspace
from cutover.engine.watch import Evaluation, Thresholds, watch_once


# -- watch ---------------------------------------------------------------------------------------------


def watch_interval(settings: Settings, interval: str, *, once: bool) -> float:
    """Check the watch's settings before anything runs: the interval in seconds (positive unless
    ``once``) and the [watch] thresholds (a bad one is an InputError)."""
    every = parse_duration(interval, what="--interval")
    if every <= 0 and not once:
        raise InputError("--interval must be positive", fix="e.g. --interval 60")
    Thresholds.from_settings(settings)
    return every


def watch(ws: Workspace, *, auto_rollback: bool | None = None,
          rollback: Callable[[str, str], tuple[int, str]] | None = None) -> Evaluation:
    """One round of the rollback triggers of every ingestion in CUTOVER (alert, or roll back when
    [watch] auto_rollback = true and ``auto_rollback`` is not False). ``rollback(ingestion_id,
    reason)`` rolls one back and returns (exit code, what it ran); the command line passes its
    own `cutover rollback`. ``.exit_code``: 0 nothing fired, 1 a trigger fired, 3 an
    auto-rollback failed."""
    return watch_once(ws, auto_rollback=auto_rollback, rollback=rollback)
