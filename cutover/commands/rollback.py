"""rollback: give ingestions back to the legacy side (the work is in cutover.engine.rollback)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cutover.commands.result import Result
from cutover.core.config import parse_duration
from cutover.core.errors import PartialFailure
from cutover.core.workspace import Workspace
from cutover.engine import rollback as R

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
