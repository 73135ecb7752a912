from __future__ import annotations

import click

from cutover.cli.app import App, pass_app


@click.command()
@click.option("--force", is_flag=True, help="Wipe CUTOVER_HOME even if it is not a demo workspace.")
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the generated sample data.")
@pass_app
def demo(app: App, force: bool, seed: int) -> None:
    """Recreate the demo workspace ($CUTOVER_HOME, default ./.cutover) and run the story.

    The workspace is left in place so that every other command can explore it.
    """
    from cutover.cli import cli
    from cutover.cli.app import run_main
    from cutover.db import dispose_engines, reset_schema_cache
    from cutover.demo import run_demo

    dispose_engines()
    reset_schema_cache()

    def invoke(args: list[str]) -> int:
        return run_main(cli, args)

    rc = run_demo(invoke, app.echo, app.settings, force=force, seed=seed)
    raise click.exceptions.Exit(rc)
