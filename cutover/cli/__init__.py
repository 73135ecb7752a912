"""The `cutover` command line: parses, calls a function of ``cutover.commands``, renders.

Sub-command groups are imported only when used, so `cutover --help` never pays for prefect,
great_expectations or pyspark. The verbs of the sides (legacy orchestrators, Prefect) come from
``cutover.registry``, loaded by module name on use.
"""

from __future__ import annotations

import importlib
import sys

import click

from cutover import __version__
from cutover.cli.app import App, run_main
from cutover.core.output import add_json_option
from cutover.core.validate import nearest
from cutover.registry import load_side_command, side_commands

# name -> (module:attribute, one-line help). Help text lives here so that
# listing commands does not import them.
CORE = {
    "config": ("cutover.cli.config_cmd:config", "Show the resolved settings (secrets redacted)."),
    "db": ("cutover.cli.db_cmd:db", "Database schemas: upgrade, downgrade, current, history."),
    "ingestion": ("cutover.cli.ingestion_cmd:ingestion", "Manage ingestions: add, list, show, remove."),
    "runs": ("cutover.cli.inspect_cmd:runs", "Run records of both orchestrators."),
    "ledger": ("cutover.cli.ledger_cmd:ledger", "The processed-file ledger of an ingestion; `ledger retry` re-queues FAILED files."),
    "table": ("cutover.cli.inspect_cmd:table", "Iceberg tables: row counts per branch, snapshots, maintain."),
    "shadow": ("cutover.cli.shadow_cmd:shadow", "Shadow runs: start, stop, run --once (legacy stays authoritative)."),
    "parity": ("cutover.cli.parity_cmd:parity", "Parity verdict per ingestion; `parity history` for streaks."),
    "waive": ("cutover.cli.parity_cmd:waive", "Waive one check of one ingestion until a date."),
    "waivers": ("cutover.cli.parity_cmd:waivers", "List and remove waivers."),
    "inventory": ("cutover.cli.ops_cmd:inventory", "Every ingestion: schedules, verification, queue, state, streak."),
    "plan": ("cutover.cli.ops_cmd:plan", "Plan the migration in waves with gates (changes nothing)."),
    "execute": ("cutover.cli.ops_cmd:execute", "Apply the next wave of a plan: journaled, resumable, locked."),
    "status": ("cutover.cli.ops_cmd:status", "States, live owners, schedule states and the invariant."),
    "log": ("cutover.cli.ops_cmd:log_cmd", "The audit trail of every mutating action."),
    "unlock": ("cutover.cli.ops_cmd:unlock", "Break a stale operator lock."),
    "rollback": ("cutover.cli.rollback_cmd:rollback", "Give ingestions back to the legacy side (works with Prefect down)."),
    "pause": ("cutover.cli.pause_cmd:pause", "Incident: fence and pause every schedule on both sides; `pause list`."),
    "resume": ("cutover.cli.pause_cmd:resume", "Restore exactly what a pause snapshot recorded, then lift the fences."),
    "demo": ("cutover.cli.demo_cmd:demo", "Recreate the demo workspace and run an end-to-end story (--scenario)."),
    "schedules": ("cutover.cli.schedules_cmd:schedules", "Verify that Prefect schedules fire exactly when the legacy ones do."),
    "watch": ("cutover.cli.watch_cmd:watch", "Rollback triggers for ingestions in CUTOVER: alert or auto-rollback."),
    "runbook": ("cutover.cli.runbook_cmd:runbook", "Operational runbooks: list, show, run their command blocks step by step."),
}

# every verb, the sides' included (name -> (module:attribute, help))
LAZY = {**side_commands(), **CORE}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted({*super().list_commands(ctx), *LAZY})

    def get_command(self, ctx, name):
        cmd = super().get_command(ctx, name)
        if cmd is not None or name not in LAZY:
            return cmd if cmd is None else add_json_option(cmd)
        if name not in CORE:
            cmd = load_side_command(name)
        else:
            mod, _, attr = CORE[name][0].partition(":")
            cmd = getattr(importlib.import_module(mod), attr)
        return cmd if cmd is None else add_json_option(cmd)  # --json on every command

    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError:
            best = nearest(args[0], self.list_commands(ctx)) if args and not args[0].startswith("-") else None
            if best:
                raise click.UsageError(f"No such command {args[0]!r}: did you mean {best!r}?", ctx) from None
            raise

    def format_commands(self, ctx, formatter):
        rows = []
        for name in self.list_commands(ctx):
            if name in LAZY:
                rows.append((name, LAZY[name][1]))
            else:
                cmd = super().get_command(ctx, name)
                if cmd is not None and not cmd.hidden:
                    rows.append((name, cmd.get_short_help_str(limit=80)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cutover")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """Move ingestion pipelines from legacy orchestrators to Prefect 3, safely.

    Workspace: $CUTOVER_HOME (default ./.cutover). Exit codes: 0 ok, 1 parity
    failed or a gate said no, 2 usage or input error, 3 partial failure.
    """
    ctx.obj = App(verbose=verbose)


def main(argv: list[str] | None = None) -> None:
    sys.exit(run_main(cli, argv))
