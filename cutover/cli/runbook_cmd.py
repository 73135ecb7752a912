"""runbook list | show NAME | run NAME [--var K=V ...] [--yes] [--dry-run] [--from N]"""

from __future__ import annotations

from pathlib import Path

import click

from cutover.cli.app import App, exit_with, pass_app
from cutover.commands import runbook as C


@click.group()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="Where the runbooks are (default: runbooks/ of this cutover checkout).")
@click.pass_context
def runbook(ctx: click.Context, directory: Path | None) -> None:
    """Operational runbooks: Markdown whose ```sh blocks are run step by step.

    `cutover` in a block is this very installation (same Python, same venv).
    Placeholders {{name}} are filled from --var name=value, shell-quoted.
    """
    ctx.meta["runbook_dir"] = directory


def _dir(ctx: click.Context) -> Path | None:
    return ctx.find_root().meta.get("runbook_dir")


@runbook.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@pass_app
def list_cmd(app: App, ctx: click.Context, as_json: bool) -> None:
    """Every runbook: name, steps, variables, what it is for."""
    res = C.runbook_list(_dir(ctx))
    d, books = res.directory, res.books
    if as_json:
        app.json(res.as_dict())
        return
    if not books:
        app.echo(f"no runbooks in {d}")
        return
    app.table([(b.name, len(b.steps), ", ".join(b.placeholders) or "-", b.title) for b in books],
              ("runbook", "steps", "variables", "what for"))
    app.echo("")
    app.echo("read one: cutover runbook show NAME; run it: cutover runbook run NAME --var name=value ...")


@runbook.command("show")
@click.argument("name")
@click.option("--steps", "steps_only", is_flag=True, help="Only the numbered steps and their commands.")
@click.pass_context
@pass_app
def show_cmd(app: App, ctx: click.Context, name: str, steps_only: bool) -> None:
    """The runbook as written, then its variables and steps."""
    b = C.runbook_show(name, _dir(ctx))
    if not steps_only:
        app.echo(b.text.rstrip("\n"))
        app.echo("")
        app.echo("-" * 72)
    app.echo(f"runbook {b.name}: {len(b.steps)} step(s); variables: "
             f"{', '.join(b.placeholders) or 'none'}")
    for s in b.steps:
        exp = f"  (accepts exit {', '.join(map(str, s.expect))})" if s.expect != (0,) else ""
        app.echo(f"  {s.number}. {s.title}{exp}")
        for line in s.code.splitlines():
            app.echo(f"       {line}")
    vs = " ".join(f"--var {p}=..." for p in b.placeholders)
    app.echo(f"run: cutover runbook run {b.name} {vs}".rstrip())


@runbook.command("run")
@click.argument("name")
@click.option("--var", "var_items", multiple=True, metavar="NAME=VALUE", help="Fill {{NAME}} (repeatable).")
@click.option("--yes", is_flag=True, help="Run every step without asking (CI).")
@click.option("--dry-run", is_flag=True, help="Print the steps with the variables filled in; run nothing.")
@click.option("--from", "start", type=int, default=1, show_default=True, help="Start at this step (to resume).")
@click.pass_context
@pass_app
def run_cmd(app: App, ctx: click.Context, name: str, var_items, yes: bool, dry_run: bool, start: int) -> None:
    """Run the runbook's command blocks in order, each shown and confirmed.

    Every placeholder must be given before anything runs. Each block runs with
    bash -euo pipefail; a block accepts exit 0 unless it says `# expect-exit: ...`.
    Exit 0 all steps ran, 1 stopped by the operator, 2 usage (unknown runbook,
    missing --var), 3 a step failed (the message names it; resume with --from).
    """
    b, values = C.runbook_prepare(name, var_items, _dir(ctx))  # before anything is shown or run

    def confirm(step) -> str:
        return click.prompt(f"run step {step.number}? [y]es, [s]kip, [q]uit", type=click.Choice(["y", "s", "q"]),
                            default="y", show_choices=False, err=True)

    app.echo(f"runbook {b.name}: {b.title} ({len(b.steps)} step(s){', dry run' if dry_run else ''})")
    res = C.runbook_run(b, values, echo=app.echo, confirm=None if (yes or dry_run) else confirm, dry_run=dry_run,
                        start=start)
    if dry_run:
        app.echo("")
        app.echo("Dry run: nothing was run.")
    elif res.ok:
        app.echo("")
        app.echo(f"runbook {b.name} done: {res.ran} step(s) ran, {len(res.results) - res.ran} skipped")
    exit_with(res.exit_code)
