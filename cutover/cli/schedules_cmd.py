"""`cutover schedules`: translate legacy schedules to Prefect and prove they fire at the same instants
(the work: cutover.commands.schedules)."""

from __future__ import annotations

import click

from cutover.cli.app import App, exit_with, pass_app
from cutover.commands import schedules as C
from cutover.core.output import iso_time
from cutover.core.progress import Progress
from cutover.core.schedule.triggers import describe
from cutover.core.schedule.verify import SHOWN


@click.group()
def schedules() -> None:
    """Translate legacy (APScheduler 3, cron) schedules to Prefect 3 schedules and prove them equivalent.

    `verify` computes the fire times the legacy scheduler really produces and the ones the Prefect
    server really generates over a horizon (DST changes included) and compares the instants.
    A weekly schedule without a day runs on Monday (`weekly 06:00` is `weekly mon 06:00`).
    """


_schedule_opts = [
    click.option("--schedule", "schedule_text", metavar="TEXT",
                 help="Try a schedule without an ingestion: 'daily 02:30', 'hourly :15', 'weekly [DAY] 06:00' "
                      "(DAY defaults to mon), 'cron 0 2 * * 0' or a JSON APScheduler trigger spec."),
    click.option("--timezone", "tz", metavar="TZ", help="Timezone of --schedule (default UTC)."),
]


def _with(opts):
    def deco(f):
        for o in reversed(opts):
            f = o(f)
        return f
    return deco


def _progress(label: str):
    bar: dict[str, Progress] = {}

    def hear(done: int, total: int) -> None:
        if "p" not in bar:
            bar["p"] = Progress(label, total, after=1.0)
        bar["p"].update(done)
        if done == total:
            bar["p"].close()
    return hear


@schedules.command("verify")
@click.argument("ingestion_ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every ingestion of the inventory.")
@_with(_schedule_opts)
@click.option("--horizon", default=None, metavar="DURATION",
              help="How far ahead to compare fire times (default: at least 366 days and one day past the next "
                   "two DST changes of every zone involved).")
@click.option("--start", "start_text", metavar="ISO", help="Start of the comparison (default: now, UTC).")
@click.option("--allow-approx", is_flag=True,
              help="Translate what Prefect can only approximate (seconds, jitter...): verdict APPROXIMATE, never "
                   "EQUIVALENT.")
@click.option("--max-fires", type=click.IntRange(min=1), default=200_000, show_default=True,
              help="At most this many fire times per side per schedule.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document (schema: docs/json.md).")
@pass_app
def verify_cmd(app: App, ingestion_ids, all_, schedule_text, tz, horizon, start_text, allow_approx, max_fires,
               as_json) -> None:
    """Prove that Prefect fires exactly when the legacy scheduler does, for many ingestions at once.

    Every differing instant is counted and the first 10 are shown. Exit 0 when every schedule is
    EQUIVALENT; 1 when one is DIFFERENT, APPROXIMATE or UNTRANSLATABLE.
    """
    res = C.schedules_verify(app.settings, ingestion_ids, all_=all_, schedule_text=schedule_text, tz=tz,
                             horizon=horizon, start=start_text, allow_approx=allow_approx, max_fires=max_fires,
                             progress=_progress("verify"))
    results = res.results
    if as_json:
        app.json(res.as_dict())
        exit_with(res.exit_code)
        return
    if not results:
        app.echo("no ingestions")
    detailed = results
    if len(results) > 1:  # one row each; details only for what is not proven
        app.table([(name, r.verdict.upper(), f"{describe(spec)} {r.timezone}",
                    r.translation.describe() if r.translation else "-", r.difference_count or "",
                    iso_time(r.first_difference.at) if r.first_difference else "")
                   for name, spec, r in results],
                  ("ingestion", "verdict", "legacy", "prefect", "diffs", "first difference"))
        detailed = [(n, s, r) for n, s, r in results if not r.ok]
        if detailed:
            app.echo("")
    for name, spec, r in detailed:
        legacy = f"{describe(spec)} {r.timezone}"
        app.echo(f"{name}: {r.verdict.upper()}  legacy {legacy}"
                 + (f"  ->  prefect {r.translation.describe()}" if r.translation else ""))
        window = f"from {iso_time(r.start)} to {iso_time(r.end)}"
        if r.verdict == "equivalent":
            app.echo(f"  {r.legacy_count} fire times on each side {window}")
        elif r.verdict == "approximate":
            app.echo(f"  {r.legacy_count} nominal fire times on each side {window}; approximated: "
                     f"{', '.join(r.approximated)}")
        elif r.verdict == "different":
            app.echo(f"  {r.difference_count} differing instant(s); legacy {r.legacy_count} vs prefect "
                     f"{r.prefect_count} fire times {window}")
            for i, d in enumerate(r.differences, 1):
                app.echo(f"  {'first difference' if i == 1 else f'difference {i}'}: {d.describe()}")
            if r.difference_count > len(r.differences):
                app.echo(f"  ... and {r.difference_count - len(r.differences)} more (the first {SHOWN} are shown)")
        else:
            app.echo(f"  {r.reason}")
        for note in (r.translation.notes if r.translation else []) + r.notes:
            app.echo(f"  - {note}")
    n = res.counts()
    app.echo(f"{len(results)} schedule(s): {n['equivalent']} equivalent, {n['approximate']} approximate, "
             f"{n['different']} different, {n['untranslatable']} untranslatable (horizon: {res.horizon})")
    exit_with(res.exit_code)


@schedules.command("translate")
@click.argument("ingestion_ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every ingestion of the inventory.")
@_with(_schedule_opts)
@click.option("--allow-approx", is_flag=True, help="Translate what Prefect can only approximate (seconds, jitter...).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document (schema: docs/json.md).")
@pass_app
def translate_cmd(app: App, ingestion_ids, all_, schedule_text, tz, allow_approx, as_json) -> None:
    """Print the Prefect schedule each legacy schedule becomes.

    Exit 2 if an ad-hoc --schedule cannot be translated; 1 if a stored one cannot (the others are
    still printed).
    """
    res = C.schedules_translate(app.settings, ingestion_ids, all_=all_, schedule_text=schedule_text, tz=tz,
                                allow_approx=allow_approx, progress=_progress("translate"))
    if as_json:
        app.json(res.as_dict())
        exit_with(res.exit_code)
        return
    for t in res.items:
        app.echo(f"{t.name}: legacy {describe(t.spec)} ({t.timezone})")
        if t.error:
            app.echo(f"  UNTRANSLATABLE: {t.error}")
            continue
        tr, sched = t.translation, t.prefect_schedule
        app.echo(f"  prefect {tr.describe()}"
                 + ("" if tr.exact else f"  [APPROXIMATE: {', '.join(tr.approximated)}]"))
        if sched is not None:
            fields = ", ".join(f"{k}={' '.join(str(v).split())}" for k, v in sched.model_dump(mode="json").items()
                               if v is not None)
            app.echo(f"  {type(sched).__name__}({fields})")
        for note in tr.notes:
            app.echo(f"  - {note}")
    exit_with(res.exit_code)
