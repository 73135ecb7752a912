"""The `cutover` command line: a thin layer over the library.

Sub-command groups are imported only when used, so `cutover --help` never
pays for prefect, great_expectations or pyspark.
"""

from __future__ import annotations

import importlib
import sys

import click

from cutover import __version__
from cutover.cli.app import App, run_main

# name -> (module:attribute, one-line help). Help text lives here so that
# listing commands does not import them.
LAZY = {
    "config": ("cutover.cli.config_cmd:config", "Show the resolved settings (secrets redacted)."),
    "db": ("cutover.cli.db_cmd:db", "Database schemas: upgrade, downgrade, current, history."),
    "ingestion": ("cutover.cli.ingestion_cmd:ingestion", "Manage ingestions: add, list, show, remove."),
    "legacy": ("cutover.cli.legacy_cmd:legacy", "The legacy side: run, scheduler, jobs, pause/resume, import."),
    "runs": ("cutover.cli.inspect_cmd:runs", "Run records of both orchestrators."),
    "ledger": ("cutover.cli.inspect_cmd:ledger", "The processed-file ledger of an ingestion."),
    "table": ("cutover.cli.inspect_cmd:table", "Iceberg tables: row counts per branch and snapshots."),
    "demo": ("cutover.cli.demo_cmd:demo", "Recreate the demo workspace and run the end-to-end story."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted({*super().list_commands(ctx), *LAZY})

    def get_command(self, ctx, name):
        cmd = super().get_command(ctx, name)
        if cmd is not None or name not in LAZY:
            return cmd
        target = LAZY[name][0]
        mod, _, attr = target.partition(":")
        return getattr(importlib.import_module(mod), attr)

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
