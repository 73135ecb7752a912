"""`cutover schedules`: translate legacy schedules to Prefect and prove they fire at the same instants
(the work: cutover.commands.schedules)."""

from __future__ import annotations

import click

from cutover.cli.app import App, exit_with, pass_app
from cutover.commands import schedules as C
from cutover.core.schedule.triggers import describe


@click.group()
def schedules() -> None:
    """Translate legacy (APScheduler 3) schedules to Prefect 3 schedules and prove them equivalent.

    `verify` computes the fire times APScheduler 3 really produces and the ones the Prefect
    server really generates over a horizon (DST changes included) and compares the instants.
    """


_schedule_opts = [
    click.option("--schedule", "schedule_text", metavar="TEXT",
                 help="Try a schedule without an ingestion: 'daily 02:30', 'hourly :15', 'weekly mon 06:00', "
                      "'cron 0 2 * * 0' or a JSON APScheduler trigger spec."),
    click.option("--timezone", "tz", metavar="TZ", help="Timezone of --schedule (default UTC)."),
]


def _with(opts):
    def deco(f):
        for o in reversed(opts):
            f = o(f)
        return f
    return deco


@schedules.command("verify")
@click.argument("ingestion_ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every ingestion of the inventory.")
@_with(_schedule_opts)
@click.option("--horizon", default="90d", show_default=True, help="How far ahead to compare fire times.")
@click.option("--start", "start_text", metavar="ISO", help="Start of the comparison (default: now, UTC).")
@click.option("--allow-approx", is_flag=True, help="Translate what Prefect can only approximate (seconds, jitter...).")
@click.option("--max-fires", type=click.IntRange(min=1), default=200_000, show_default=True,
              help="At most this many fire times per side per schedule.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def verify_cmd(app: App, ingestion_ids, all_, schedule_text, tz, horizon, start_text, allow_approx, max_fires,
               as_json) -> None:
    """Prove that Prefect fires exactly when the legacy scheduler does.

    Exit 0 when every schedule is equivalent, 1 when one differs or cannot be translated.
    """
    res = C.schedules_verify(app.settings, ingestion_ids, all_=all_, schedule_text=schedule_text, tz=tz,
                             horizon=horizon, start=start_text, allow_approx=allow_approx, max_fires=max_fires)
    results = res.results
    if as_json:
        app.json(res.as_dict())
    else:
        if not results:
            app.echo("no ingestions")
        for name, spec, r in results:
            legacy = f"{describe(spec)} {r.timezone}"
            app.echo(f"{name}: {r.verdict.upper()}  legacy {legacy}"
                     + (f"  ->  prefect {r.translation.describe()}" if r.translation else ""))
            if r.verdict == "equivalent":
                app.echo(f"  {r.legacy_count} fire times on each side from {r.start:%Y-%m-%d %H:%M}Z "
                         f"to {r.end:%Y-%m-%d %H:%M}Z")
            elif r.verdict == "different":
                d = r.first_difference
                app.echo(f"  legacy {r.legacy_count} vs prefect {r.prefect_count} fire times from "
                         f"{r.start:%Y-%m-%d %H:%M}Z to {r.end:%Y-%m-%d %H:%M}Z")
                if d is not None:
                    app.echo(f"  first difference: {d.describe()}")
            else:
                app.echo(f"  {r.reason}")
            for note in (r.translation.notes if r.translation else []) + r.notes:
                app.echo(f"  - {note}")
        n = res.counts()
        app.echo(f"{len(results)} schedule(s): {n['equivalent']} equivalent, {n['different']} different, "
                 f"{n['untranslatable']} untranslatable")
    exit_with(res.exit_code)


@schedules.command("translate")
@click.argument("ingestion_id", required=False)
@_with(_schedule_opts)
@click.option("--allow-approx", is_flag=True, help="Translate what Prefect can only approximate (seconds, jitter...).")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def translate_cmd(app: App, ingestion_id, schedule_text, tz, allow_approx, as_json) -> None:
    """Print the Prefect schedule a legacy schedule becomes (exit 2 if it cannot be translated)."""
    res = C.schedules_translate(app.settings, ingestion_id, schedule_text=schedule_text, tz=tz,
                                allow_approx=allow_approx)
    name, spec, zone, tr, sched = res.name, res.spec, res.timezone, res.translation, res.prefect_schedule
    if as_json:
        app.json(res.as_dict())
        return
    app.echo(f"{name}: legacy {describe(spec)} ({zone})")
    app.echo(f"  prefect {tr.describe()}" + ("" if tr.exact else "  [APPROXIMATE]"))
    if sched is not None:
        app.echo(f"  {type(sched).__name__}({', '.join(f'{k}={v!r}' for k, v in sched.model_dump(mode='json').items())})")
    for note in tr.notes:
        app.echo(f"  - {note}")
