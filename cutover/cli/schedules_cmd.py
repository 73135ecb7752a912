"""`cutover schedules`: translate legacy schedules to Prefect and prove they fire at the same instants."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import click

from cutover.cli.app import App, pass_app
from cutover.core.errors import EXIT_FAIL, InputError


@click.group()
def schedules() -> None:
    """Translate legacy (APScheduler 3) schedules to Prefect 3 schedules and prove them equivalent.

    `verify` computes the fire times APScheduler 3 really produces and the ones the Prefect
    server really generates over a horizon (DST changes included) and compares the instants.
    """


def _targets(app: App, ids: tuple[str, ...], all_: bool, schedule_text: str | None, tz: str | None
             ) -> list[tuple[str, dict | None, str]]:
    """[(name, spec, timezone)] from the inventory or from an ad-hoc --schedule."""
    if schedule_text is not None:
        if ids or all_:
            raise InputError("--schedule cannot be combined with ingestion ids or --all", fix="use one or the other")
        from cutover.core.schedule.triggers import check_timezone, parse_schedule_text

        tz = tz or "UTC"
        check_timezone(tz)
        return [("(--schedule)", parse_schedule_text(schedule_text), tz)]
    if tz is not None:
        raise InputError("--timezone only applies to an ad-hoc --schedule", fix="the ingestion's own timezone is used")
    if not ids and not all_:
        raise InputError("no ingestion named", fix="name one or more ingestion ids, pass --all, or try one with "
                                                   "--schedule 'daily 02:30' --timezone Europe/Berlin")
    from cutover.core.workspace import Workspace

    items = Workspace(app.settings).ingestions.resolve(ids, all_=all_)
    return [(i.id, i.schedule, i.timezone) for i in items]


def _parse_start(text: str | None) -> datetime:
    if not text:
        return datetime.now(timezone.utc).replace(second=0, microsecond=0)
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"--start {text!r} is not an ISO date-time", fix="write e.g. 2026-03-01T00:00:00Z") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


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
    from cutover.core.config import parse_duration
    from cutover.core.schedule.verify import verify

    secs = parse_duration(horizon, what="--horizon")
    if secs <= 0:
        raise InputError("--horizon must be positive", fix="give e.g. --horizon 90d")
    start = _parse_start(start_text)
    targets = _targets(app, ingestion_ids, all_, schedule_text, tz)
    results = []
    for name, spec, zone in targets:
        try:
            res = verify(spec, zone, start=start, horizon=timedelta(seconds=secs), allow_approx=allow_approx,
                         max_fires=max_fires)
        except InputError as e:
            if schedule_text is not None:
                raise
            # a stored schedule APScheduler itself rejects: report it and go on with the others
            from cutover.core.schedule.verify import VerifyResult

            res = VerifyResult(verdict="untranslatable", legacy_count=0, prefect_count=0, first_difference=None,
                               translation=None, start=start, end=start + timedelta(seconds=secs), timezone=zone,
                               reason=e.one_line())
        results.append((name, spec, res))
    bad = [n for n, _, r in results if not r.ok]
    if as_json:
        app.json({"ok": not bad, "start": start.isoformat(), "horizon": horizon,
                  "results": [{"ingestion": n, "legacy_schedule": s, **r.as_dict()} for n, s, r in results]})
    else:
        from cutover.core.schedule.triggers import describe

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
        n = {v: sum(1 for _, _, r in results if r.verdict == v) for v in ("equivalent", "different", "untranslatable")}
        app.echo(f"{len(results)} schedule(s): {n['equivalent']} equivalent, {n['different']} different, "
                 f"{n['untranslatable']} untranslatable")
    if bad:
        raise click.exceptions.Exit(EXIT_FAIL)


@schedules.command("translate")
@click.argument("ingestion_id", required=False)
@_with(_schedule_opts)
@click.option("--allow-approx", is_flag=True, help="Translate what Prefect can only approximate (seconds, jitter...).")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def translate_cmd(app: App, ingestion_id, schedule_text, tz, allow_approx, as_json) -> None:
    """Print the Prefect schedule a legacy schedule becomes (exit 2 if it cannot be translated)."""
    from cutover.core.schedule.translate import translate
    from cutover.core.schedule.triggers import describe

    [(name, spec, zone)] = _targets(app, (ingestion_id,) if ingestion_id else (), False, schedule_text, tz)
    tr = translate(spec, zone, allow_approx=allow_approx)
    sched = tr.to_prefect_schedule()
    if as_json:
        app.json({"ingestion": name, "legacy_schedule": spec, "legacy_text": describe(spec), **tr.as_dict(),
                  "prefect_schedule": sched.model_dump(mode="json") if sched is not None else None,
                  "prefect_type": type(sched).__name__ if sched is not None else None})
        return
    app.echo(f"{name}: legacy {describe(spec)} ({zone})")
    app.echo(f"  prefect {tr.describe()}" + ("" if tr.exact else "  [APPROXIMATE]"))
    if sched is not None:
        app.echo(f"  {type(sched).__name__}({', '.join(f'{k}={v!r}' for k, v in sched.model_dump(mode='json').items())})")
    for note in tr.notes:
        app.echo(f"  - {note}")
