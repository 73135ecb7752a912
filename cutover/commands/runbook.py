"""runbook list | show | run: Markdown runbooks whose ```sh blocks are the steps (cutover.runbooks)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cutover.commands.result import Result
from cutover.core.errors import EXIT_OK
from cutover.runbooks import Runbook, Step, StepResult, check_vars, default_dir, execute, load, load_all, parse_vars


@dataclass
class Runbooks(Result):
    directory: Path
    books: list[Runbook]

    def as_dict(self) -> list[dict]:
        return [{"name": b.name, "title": b.title, "summary": b.summary, "steps": len(b.steps),
                 "variables": b.placeholders, "path": str(b.path)} for b in self.books]


def runbook_list(directory: Path | None = None) -> Runbooks:
    """Every runbook of ``directory`` (default: runbooks/ of this checkout)."""
    d = directory or default_dir()
    return Runbooks(d, load_all(d))


def runbook_show(name: str, directory: Path | None = None) -> Runbook:
    """One runbook: its text, variables and steps."""
    return load(name, directory)


def runbook_prepare(name: str, var_items, directory: Path | None = None) -> tuple[Runbook, dict[str, str]]:
    """The runbook and its --var NAME=VALUE values, every placeholder given (checked before
    anything is shown or run)."""
    rb = load(name, directory)
    values = parse_vars(var_items)
    check_vars(rb, values)
    return rb, values


@dataclass
class RunbookRun(Result):
    runbook: Runbook
    code: int  # 0 all ran, 1 stopped by the operator, 3 a step failed
    results: list[StepResult] = field(default_factory=list)
    dry_run: bool = False

    @property
    def exit_code(self) -> int:
        return self.code

    @property
    def ran(self) -> int:
        return sum(1 for r in self.results if not r.skipped)

    @property
    def ok(self) -> bool:
        return self.code == EXIT_OK

    def as_dict(self) -> dict:
        return {"runbook": self.runbook.name, "exit_code": self.code, "dry_run": self.dry_run,
                "steps": [{"number": r.step.number, "title": r.step.title, "exit_code": r.exit_code, "ok": r.ok,
                           "skipped": r.skipped} for r in self.results]}


def runbook_run(rb: Runbook, values: dict[str, str], *, echo: Callable[[str], None],
                confirm: Callable[[Step], str] | None = None, dry_run: bool = False, start: int = 1) -> RunbookRun:
    """Run the runbook's steps from ``start`` on (each shown through ``echo``; ``confirm(step)``
    answers y/s/q, None runs all), stopping at the first failing one."""
    code, results = execute(rb, values, echo=echo, confirm=confirm, dry_run=dry_run, start=start)
    return RunbookRun(rb, code, results, dry_run)
