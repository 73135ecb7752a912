"""pause, pause list, resume: the incident fence and exact restore (the work is in cutover.engine).

It loads no side module but the incident controls the registry names: the on-call engineer's
`cutover pause` reaches its fences without importing the rest of cutover."""

from __future__ import annotations

from typing import Callable

from cutover.core.errors import EXIT_PARTIAL, InputError
from cutover.core.workspace import Workspace
from cutover.engine import pause as P

Echo = Callable[[str], None]


# -- pause | pause list | resume ----------------------------------------------------------------------


def pause(ws: Workspace, *, all_: bool = False, select: str | None = None, reason: str = "", dry_run: bool = False,
          fence_pool: bool | None = None, echo: Echo, started_at: float | None = None) -> P.PauseResult:
    """Stop every run now, then pause every schedule durably (a snapshot for `resume`).
    ``started_at``: when the command started, for time-to-safe (default: this process's start)."""
    if not dry_run and not reason.strip():
        raise InputError("--reason is required", fix='say why, e.g. --reason "catalog outage"')
    return P.pause(ws, all_=all_, select=select, reason=reason, dry_run=dry_run, fence_pool=fence_pool, echo=echo,
                   started_at=P.process_started_at() if started_at is None else started_at)


def pause_exit_code(res: P.PauseResult, *, dry_run: bool) -> int:
    """3 when the pause is not complete (run it again), else 0."""
    return EXIT_PARTIAL if not dry_run and res.problems else 0


def pause_list(ws: Workspace, *, limit: int = 20) -> list[dict]:
    """Pause snapshots, newest first: status, scope, counts, when fenced/durable/resumed."""
    return [s.summary() for s in P.list_snapshots(ws.state_engine, limit)]


def resume(ws: Workspace, snapshot_id: str, *, late: str = "skip", dry_run: bool = False,
           echo: Echo) -> P.ResumeResult:
    """Restore exactly the schedule states of a pause snapshot, then lift the fences."""
    return P.resume(ws, snapshot_id, late=late, dry_run=dry_run, echo=echo)


def resume_exit_code(res: P.ResumeResult, *, dry_run: bool) -> int:
    """3 when a part could not be restored (run it again), else 0."""
    return EXIT_PARTIAL if res.problems and not dry_run else 0
