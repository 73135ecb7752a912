"""One App object owns output, settings and exits (hatch-style).

Rendering (text tables, JSON, redaction) and the error -> exit-code mapping live in
``cutover.core.output`` so that the click groups the sides bring (``legacy/*/cli.py``,
``flows/cli.py``) render and exit exactly like the verbs here.
"""

from __future__ import annotations

import time

import click

from cutover.core.osutil import process_started_at
from cutover.core.output import Output, exit_with, run_click

__all__ = ["App", "DefaultGroup", "command_started_at", "exit_with", "pass_app", "process_started_at", "run_main"]


class App(Output):
    """The running `cutover` command: its settings and its output (stdout results, stderr notes)."""


_command_started_at: float | None = None
_invocations = 0


def command_started_at() -> float:
    """When the running command started (Unix time): the process's own start for the first
    command of a process (so time-to-safe includes interpreter start-up, as the on-call engineer
    experiences it), the invocation itself for later in-process commands (the demo, tests)."""
    if _command_started_at is None:
        return process_started_at()
    return _command_started_at


def run_main(cli: click.Group, argv: list[str] | None) -> int:
    """Run the command line ``argv``; returns its exit code (see ``cutover.core.output.run_click``)."""
    global _command_started_at, _invocations

    _invocations += 1
    if _invocations > 1:
        _command_started_at = time.time()
    return run_click(cli, argv)


pass_app = click.make_pass_decorator(App)


class DefaultGroup(click.Group):
    """A group that runs its ``default`` sub-command when the first argument names no other one:
    `cutover parity ID...` is `cutover parity check ID...`, next to `cutover parity history`."""

    def __init__(self, *args, default: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.default = default

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        help_only = bool(args) and args[0] in ctx.help_option_names
        if not help_only and (not args or args[0] not in self.commands):
            args = [self.default, *args]
        return super().parse_args(ctx, args)
