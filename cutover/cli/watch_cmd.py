"""watch [--once] [--interval 60] [--json] (the work: cutover.commands.watch)."""

from __future__ import annotations

import contextlib
import logging
import shlex
import signal
import sys
import time
from datetime import datetime, timezone

import click

from cutover.cli.app import App, exit_with, pass_app, run_main
from cutover.commands import watch as C
from cutover.core.output import human_duration, to_json
from cutover.core.workspace import Workspace

log = logging.getLogger("cutover.engine.watch")


def _cell(t) -> str:
    if t.fired:
        mark = "FIRED"
    elif not t.judged:
        return "not judged"
    else:
        mark = "ok"
    if t.name == "failure_rate" and t.value is not None:
        return f"{mark} {t.value * 100:.1f}%"
    if t.name == "duration_regression" and t.value is not None:
        return f"{mark} {'+' if t.value >= 0 else ''}{t.value * 100:.0f}%"
    if t.name == "prefect_unreachable" and t.value is not None:
        return f"{'FIRED, ' if t.fired else ''}down {human_duration(t.value)}"
    return mark


def _show(app: App, ev) -> None:
    if not ev.ingestions:
        app.echo("no ingestion in CUTOVER: nothing to watch")
        return
    if ev.operator_pause:
        app.echo(f"operator pause {ev.operator_pause['id']} is active ({ev.operator_pause['reason']})")
    rows = []
    for ie in ev.ingestions:
        by = {t.name: t for t in ie.triggers}
        rows.append((ie.id, _cell(by["failure_rate"]), _cell(by["parity"]), _cell(by["prefect_unreachable"]),
                     _cell(by["duration_regression"]), ie.action or "-"))
    app.table(rows, ("ingestion", "failure rate", "parity", "prefect api", "duration", "action"))
    for ie in ev.ingestions:
        if ie.action_detail:
            app.echo(f"  {ie.id}: {ie.action_detail}")
    if app.verbose:
        for ie in ev.ingestions:
            for t in ie.triggers:
                app.echo(f"  {ie.id} {t.name}: {t.detail}")


def in_process_rollback(root: click.Command):
    """The auto-rollback of `watch`: `cutover rollback ID --reason R` run in this process, its
    output on stderr (stdout stays watch's own, for --json); returns (exit code, the command)."""
    def rollback(iid: str, reason: str) -> tuple[int, str]:
        argv = ["rollback", iid, "--reason", reason]
        with contextlib.redirect_stdout(sys.stderr):
            rc = run_main(root, argv)
        return rc, "cutover " + shlex.join(argv)

    return rollback


@click.command()
@click.option("--once", is_flag=True, help="Evaluate one round and exit (for cron).")
@click.option("--interval", default="60", show_default=True,
              help="Seconds (or a duration like 5m) between rounds without --once.")
@click.option("--json", "as_json", is_flag=True, help="The evaluation per ingestion as JSON (one line per round in a loop).")
@click.option("--no-auto-rollback", is_flag=True,
              help="Only alert, even when [watch] auto_rollback = true (for a look mid-incident).")
@click.pass_context
@pass_app
def watch(app: App, ctx: click.Context, once: bool, interval: str, as_json: bool, no_auto_rollback: bool) -> None:
    """Evaluate the rollback triggers of every ingestion in CUTOVER.

    Triggers ([watch] in cutover.toml): failure rate of the Prefect live runs in
    the window, a failing parity verdict since the cutover, the Prefect API
    unreachable for longer than unreachable_after, and a duration regression of
    the Prefect live runs against the legacy runs before the cutover. A fired
    trigger logs a WARNING on stderr, or, with auto_rollback = true, runs
    `cutover rollback`. Every firing is in `cutover log`.

    Exit (with --once): 0 nothing fired, 1 a trigger fired (alerted or rolled
    back), 3 an auto-rollback failed. Without --once: loops until SIGINT/SIGTERM.
    """
    every = C.watch_interval(app.settings, interval, once=once)  # bad settings: exit 2 before anything runs
    ws = Workspace(app.settings)
    rollback = in_process_rollback(ctx.find_root().command)

    def round_() -> int:
        ev = C.watch(ws, auto_rollback=False if no_auto_rollback else None, rollback=rollback)
        if as_json:
            if once:
                app.json(ev.as_dict())
            else:
                click.echo(to_json(ev.as_dict(), indent=None))
        elif once:
            _show(app, ev)
        fired = sum(bool(i.fired) for i in ev.ingestions)
        if not once:
            app.info(f"{datetime.now(timezone.utc).isoformat()[:19]}Z watch: {len(ev.ingestions)} ingestion(s) in "
                     f"CUTOVER, {fired} with a fired trigger (exit {ev.exit_code})")
        return ev.exit_code

    if once:
        exit_with(round_())
        return

    stop = {"sig": None}

    def _on_signal(signum, frame):  # noqa: ARG001
        stop["sig"] = signum

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    app.info(f"watching every {every:g}s; stop with Ctrl-C or SIGTERM")
    try:
        while stop["sig"] is None:
            try:
                round_()
            except Exception as e:  # noqa: BLE001 - a watcher survives a bad round (DB hiccup)
                log.error("watch round failed: %s: %s", type(e).__name__, str(e).splitlines()[0] if str(e) else "")
            deadline = time.monotonic() + every
            while stop["sig"] is None and time.monotonic() < deadline:
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    app.info(f"watch stopped ({signal.Signals(stop['sig']).name})")
