"""demo [--scenario NAME] (the work: cutover.commands.demos)."""

from __future__ import annotations

import click

from cutover.cli.app import App, exit_with, pass_app, run_main
from cutover.commands.demos import DEFAULT_SCENARIO, SCENARIOS
from cutover.commands.demos import demo as run_demo


@click.command()
@click.option("--scenario", default=DEFAULT_SCENARIO, show_default=True, metavar="NAME",
              help=f"Which story: {', '.join(SCENARIOS)} (one per legacy orchestrator).")
@click.option("--force", is_flag=True, help="Wipe CUTOVER_HOME even if it is not a demo workspace.")
@click.option("--seed", type=int, default=None,
              help="Seed of the generated sample data (autoloader scenario; default 7).")
@click.pass_context
@pass_app
def demo(app: App, ctx: click.Context, scenario: str, force: bool, seed: int | None) -> None:
    """Recreate the demo workspace ($CUTOVER_HOME, default ./.cutover) and run one legacy
    orchestrator's end-to-end story (--scenario; the default is the batch orchestrator and
    APScheduler autoloader).

    The workspace is left in place so that every other command can explore it.
    """
    root = ctx.find_root().command  # the story runs `cutover` command lines in this process

    def invoke(args: list[str]) -> int:
        return run_main(root, args)

    rc = run_demo(app.settings, scenario, invoke, app.echo, force=force, seed=seed)
    exit_with(rc)
