"""rollback, pause, pause list, resume, watch: the incident controls (the work is in cutover.engine)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cutover.commands.result import Result
from cutover.core.config import Settings, parse_duration
from cutover.core.errors import EXIT_PARTIAL, InputError, PartialFailure
from cutover.core.workspace import Workspace
from cutover.engine import pause as P
from cutover.engine import rollback as R
from cutover.engine.watch import Evaluation, Thresholds, watch_once

Echo = Callable[[str], None]


# -- rollback ------------------------------------------------------------------------------------


@dataclass
class Rollback(Result):
    report: dict  # ingestions, notes, partial, missed_intervals, dry_run
    error: PartialFailure | None = None  # some steps not done: re-run the same rollback

    @property
    def exit_code(self) -> int:
        return self.error.exit_code if self.error is not None else 0

    def report_lines(self) -> list[str]:
        """The missed legacy fire times since the cutover (backfill candidates), as text lines."""
        lines: list[str] = []
        R.print_report(self.report, lines.append)
        return lines

    def as_dict(self) -> dict:
        return self.report


def rollback(ws: Workspace, ingestion_ids=(), *, all_: bool = False, wave: int | None = None,
             plan_file: Path | None = None, cancel_running: bool = False, cancel_timeout: str = "2m",
             reason: str = "", dry_run: bool = False, echo: Echo) -> Rollback:
    """Give ingestions back to the legacy orchestrator (works with the Prefect API down: then the
    result carries the PartialFailure, and the same call again completes it)."""
    try:
        report = R.rollback(ws, list(ingestion_ids), all_=all_, wave=wave, plan_file=plan_file,
                            cancel_running=cancel_running,
                            cancel_timeout=parse_duration(cancel_timeout, what="--cancel-timeout"),
                            reason=reason, dry_run=dry_run, echo=echo)
    except PartialFailure as e:
        report = getattr(e, "report", None)  # the engine attaches the report it built
        if report is None:
            raise
        return Rollback(report, e)
    return Rollback(report)


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
