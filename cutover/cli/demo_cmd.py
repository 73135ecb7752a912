from __future__ import annotations

import click

from cutover.cli.app import App, pass_app
from cutover.demos.autoloader import DEFAULT_SCENARIO, SCENARIOS


@click.command()
@click.option("--scenario", default=DEFAULT_SCENARIO, show_default=True, metavar="NAME",
              help=f"Which story: {', '.join(SCENARIOS)} (one per legacy orchestrator).")
@click.option("--force", is_flag=True, help="Wipe CUTOVER_HOME even if it is not a demo workspace.")
@click.option("--seed", type=int, default=None,
              help="Seed of the generated sample data (autoloader scenario; default 7).")
@pass_app
def demo(app: App, scenario: str, force: bool, seed: int | None) -> None:
    """Recreate the demo workspace ($CUTOVER_HOME, default ./.cutover) and run one legacy
    orchestrator's end-to-end story (--scenario; the default is the batch orchestrator and
    APScheduler autoloader).

    The workspace is left in place so that every other command can explore it.
    """
    from cutover.cli import cli
    from cutover.cli.app import run_main
    from cutover.core.db import dispose_engines, reset_schema_cache
    from cutover.demos.autoloader import load_scenario, run_scenario

    load_scenario(scenario)  # an unknown or missing scenario fails here, before anything is touched
    dispose_engines()
    reset_schema_cache()

    def invoke(args: list[str]) -> int:
        return run_main(cli, args)

    rc = run_scenario(scenario, invoke, app.echo, app.settings, force=force, seed=seed)
    raise click.exceptions.Exit(rc)
