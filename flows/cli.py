"""`cutover prefect ...` and `cutover backfill`: the Prefect side's verbs (local server,
deployments, runs, the prefect.yaml export, the backfill flow).

Added to the `cutover` command line by ``cutover.registry`` (loaded by name on use). prefect is
imported inside the commands only: `cutover prefect --help` stays fast.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import click

from cutover.core.config import parse_duration
from cutover.core.db import get_engine
from cutover.core.errors import EXIT_PARTIAL, InputError
from cutover.core.output import Output as App
from cutover.core.output import pass_output as pass_app
from cutover.core.output import write_text_atomic
from cutover.core.records.ingestions import IngestionRepo
from cutover.core.records.jobs import JobRepo
from cutover.core.schedule.gate import check_accepted_ids, check_deploy, record_acceptances
from cutover.core.workspace import Workspace
from flows import deploy as D
from flows import local as pl
from flows.adapter import PrefectAdapter
from flows.export import export
from flows.jobdeploy import deploy_items
from flows.pools import render_kubernetes_job


@click.group()
def prefect() -> None:
    """The Prefect side: local server and worker, deployments, flow runs.

    The server is the one Prefect would use: PREFECT_API_URL, else the active
    Prefect profile (PREFECT_PROFILE / profiles.toml), else this workspace's
    embedded server (`cutover config show` says which). The embedded server is
    started only by `prefect up`, deploys, shadow start/run and execute.
    """


def _settings_env(app: App, *, dry_run: bool = False):
    """Keep the in-process Prefect client's files in this workspace (before prefect is imported).

    Importing prefect creates PREFECT_HOME: a dry run on a workspace without one points it at a
    temporary directory, removed at exit, so that it leaves nothing behind.
    """
    if "prefect" in sys.modules:  # imported already (tests, library use): too late to matter
        return app.settings
    home = Path(app.settings.prefect_home).absolute()
    if "PREFECT_HOME" in os.environ:  # the user's: the in-process client keeps it
        return app.settings
    if dry_run and not home.exists():
        tmp = tempfile.mkdtemp(prefix="cutover-dry-run-prefect-")
        atexit.register(shutil.rmtree, tmp, True)
        home = Path(tmp)
    # ours, not the user's: the connection (resolved already) is passed to every client explicitly,
    # and a later load_settings() must still find the user's profiles (cutover.core.prefectconn)
    os.environ["PREFECT_HOME"] = os.environ["CUTOVER_SET_PREFECT_HOME"] = str(home)
    return app.settings


@prefect.command("up")
@click.option("--timeout", type=float, default=None,
              help="Seconds to wait for the server's /api/health (default: [prefect] start_timeout, "
                   "env CUTOVER_PREFECT_START_TIMEOUT, 180).")
@click.option("--no-worker", is_flag=True, help="Start the server only.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def up_cmd(app: App, timeout: float, no_worker: bool, as_json: bool) -> None:
    """Start the local Prefect server and a process worker (idempotent)."""
    settings = _settings_env(app)
    conn = settings.prefect
    if timeout is not None and timeout <= 0:
        raise InputError(f"--timeout must be positive, got {timeout}", fix="give the seconds to wait, e.g. --timeout 300")
    if not conn.embedded or conn.problem:
        url = pl.api_url(settings, start=False)  # the selected server, probed: one line when it does not answer
        app.info(f"using the Prefect server {conn.where}: no server or worker is started here; only the work "
                 f"pool and queues are ensured there")
        created = pl.ensure_work_pool(url, settings.prefect_work_pool)
        res = {"mode": "external", "url": conn.public()["api_url"], "source": conn.source, "created": created}
        if as_json:
            app.json(res)
            return
        app.echo(f"work pool {settings.prefect_work_pool}: {', '.join(created) or 'already there'}")
        app.echo(f"a worker must poll it for flows to run: {pl.worker_start_command(settings.prefect_work_pool)}")
        return
    r = pl.up(settings, timeout=timeout, worker=not no_worker, echo=app.info)
    if as_json:
        app.json({**r.state.as_dict(), "started_server": r.started_server, "started_worker": r.started_worker,
                  "created": r.created, "health_wait_s": r.health_wait_s})
        return
    if r.started_server:
        app.echo(f"server: started at {r.state.url} (pid {r.state.server_pid}), healthy after {r.health_wait_s:.1f}s")
    else:
        app.echo(f"server: already running at {r.state.url} (pid {r.state.server_pid})")
    if no_worker:
        app.echo("worker: not started (--no-worker)")
    else:
        app.echo(f"worker: {'started' if r.started_worker else 'already running'} (pid {r.state.worker_pid}) "
                 f"for pool {r.state.work_pool}")
    if r.created:
        app.echo(f"created: {', '.join(r.created)}")
    app.echo(f"export PREFECT_API_URL={r.state.url}  # to use it from other tools")


@prefect.command("down")
@click.option("--grace", default=10.0, show_default=True, help="Seconds between SIGTERM and SIGKILL.")
@pass_app
def down_cmd(app: App, grace: float) -> None:
    """Stop the local Prefect worker and server (idempotent)."""
    out = pl.down(app.settings, grace=grace)
    app.echo(f"worker: {out['worker']}")
    app.echo(f"server: {out['server']}")


@prefect.command("status")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def status_cmd(app: App, as_json: bool) -> None:
    """URL, pids and health of the Prefect side (starts nothing). Exit 1 when it is not healthy."""
    st = pl.status(app.settings)
    if as_json:
        app.json(st)
        if not st["healthy"]:
            raise click.exceptions.Exit(1)
        return
    app.echo(f"mode:    {st['mode']}")
    app.echo(f"url:     {st.get('url') or '-'}")
    app.echo(f"health:  {'ok' if st['healthy'] else 'DOWN'} ({st['health']})")
    if st.get("source"):
        app.echo(f"from:    {st['source']}")
    if st["mode"] == "local":
        app.echo(f"server:  pid {st.get('server_pid') or '-'} {'alive' if st.get('server_alive') else 'not running'}")
        app.echo(f"worker:  pid {st.get('worker_pid') or '-'} {'alive' if st.get('worker_alive') else 'not running'}")
    app.echo(f"pool:    {st['work_pool']}")
    app.echo(f"home:    {st['prefect_home']}")
    if not st["healthy"]:
        raise click.exceptions.Exit(1)


def _dry_run_repo(settings):
    """The ingestion repo without creating or migrating anything (dry runs write nothing)."""
    if settings.is_embedded_autoloader and not (settings.home / "autoloader.db").exists() \
            and settings.autoloader_url.endswith("autoloader.db"):
        raise InputError(f"no ingestions in {settings.home} (the workspace is empty)",
                         fix="add one with `cutover ingestion add`")
    return IngestionRepo(get_engine(settings.autoloader_url))


@prefect.command("deploy")
@click.argument("ingestion_ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every ingestion.")
@click.option("--mode", type=click.Choice(["live", "shadow"]), default="shadow", show_default=True)
@click.option("--dry-run", is_flag=True, help="Show create/update/unchanged; no write anywhere (Prefect reads only).")
@click.option("--paused/--active", "paused", default=None,
              help="State of *new* deployments (default: live paused, shadow active). Existing ones keep theirs.")
@click.option("--allow-approx", is_flag=True, help="Accept schedules Prefect can only approximate.")
@click.option("--accept-schedule-difference", "accepted", multiple=True, metavar="ID",
              help="Deploy ID even though its schedule is not proven equivalent (recorded in the audit log).")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def deploy_cmd(app: App, ingestion_ids, all_: bool, mode: str, dry_run: bool, paused, allow_approx: bool,
               accepted, as_json: bool) -> None:
    """Create or update one Prefect deployment per ingestion (<id>-<mode>), idempotently.

    Shadow mode forks the Iceberg branch cutover-shadow first (the table must exist).
    A paused deployment stays paused. A schedule `cutover schedules verify` does not prove
    equivalent is refused (exit 1) unless named with --accept-schedule-difference.
    """
    settings = _settings_env(app, dry_run=dry_run)
    settings.prefect.check()  # a misconfigured connection: one line, exit 2, before anything is read
    ws = Workspace(settings)
    if dry_run:
        repo = _dry_run_repo(settings)
        ws.__dict__["ingestions"] = repo  # no schema check / creation in a dry run
        ws.__dict__["jobs"] = JobRepo(repo.engine)
        url = pl.api_url(settings, start=False) if not settings.prefect.embedded else pl.local_url(settings)
        if url is None:
            app.info("no Prefect server is running (dry run: none started): every deployment would be created")
    items_in = ws.items.resolve(ingestion_ids, all_=all_)  # ingestions and the team's jobs
    if not items_in:
        raise InputError("no ingestion or job to deploy", fix="add one with `cutover ingestion add` (or import jobs)")
    # the deploy gate (cutover.core.schedule.gate): proven equivalent, or accepted by name; before any server start
    check_accepted_ids(accepted, [i.id for i in items_in])
    checks = check_deploy(items_in, accepted, command="`cutover prefect deploy`", allow_approx=allow_approx)
    if not dry_run:
        # deploying needs a server (the embedded one is started when it is the selected one), not a
        # worker: the flows run when one polls the pool
        url = pl.api_url(settings, start=True, worker=False, echo=app.info)

    counter = pl.RetryCounter()
    with counter.watching():
        if dry_run and url is None:
            items, notes = deploy_items(None, ws, items_in, mode, dry_run=True, paused_on_create=paused,
                                        allow_approx=allow_approx)
        else:
            with pl.client(url) as c:
                items, notes = deploy_items(c, ws, items_in, mode, dry_run=dry_run, paused_on_create=paused,
                                            allow_approx=allow_approx)
        if not dry_run:
            record_acceptances(ws.state_engine, checks, command=f"prefect deploy --mode {mode}")
    for n in notes:
        app.info(n)
    warnings = sorted({w for it in items for w in it.desired.warnings})
    if not dry_run and any(it.action != "unchanged" for it in items):
        try:  # a deployment nobody polls runs never: say so (one request)
            pl.require_worker(url, settings.prefect_work_pool)
        except pl.PrefectUnavailable as e:
            warnings.append(f"{e.message}; scheduled flow runs wait until a worker starts: {e.fix}")
    for w in warnings:
        app.info(f"warning: {w}")
    if counter.count:
        app.info(counter.summary())
    if as_json:
        app.json({"dry_run": dry_run, "mode": mode, "api_url": url, "items": [it.as_dict() for it in items],
                  "retried_requests": counter.count})
        return
    prefix = "would " if dry_run else ""
    for it in items:
        extra = []
        if it.changes:
            extra.append(f"changed: {', '.join(it.changes)}")
        extra.append(f"pool {it.desired.work_pool} ({it.desired.pool_type}), queue {it.desired.work_queue}")
        extra.append(it.desired.schedule_text or "manual")
        if it.secret:
            extra.append(f"secret block {it.desired.credentials_block}: {it.secret}")
        if it.paused:
            extra.append("paused")
        app.echo(f"{prefix}{it.action}: {it.ingestion_id} -> {it.full_name} ({'; '.join(extra)})")
    n = {a: sum(1 for it in items if it.action == a) for a in ("create", "update", "unchanged")}
    app.echo(f"{'Dry run: ' if dry_run else ''}{n['create']} to create, {n['update']} to update, "
             f"{n['unchanged']} unchanged")


@prefect.command("trigger")
@click.argument("ingestion_id")
@click.option("--mode", type=click.Choice(["live", "shadow"]), default="shadow", show_default=True)
@click.option("--force", is_flag=True, help="Run even if the deployment is paused.")
@pass_app
def trigger_cmd(app: App, ingestion_id: str, mode: str, force: bool) -> None:
    """Start a flow run of the ingestion's deployment now (trigger=manual); prints the flow-run id.

    Exit 1 when the deployment is paused (unless --force).
    """
    settings = _settings_env(app)
    ws = Workspace(settings)
    ws.items.get(ingestion_id)  # an ingestion or a team's job
    with PrefectAdapter(ws, mode=mode) as ad:
        app.echo(ad.trigger(ingestion_id, force=force))
        try:  # the run is queued either way; say when nobody will pick it up
            ad.require_worker()
        except pl.PrefectUnavailable as e:
            app.info(f"warning: {e.one_line()}")


@prefect.command("runs")
@click.argument("ingestion_id", required=False)
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def runs_cmd(app: App, ingestion_id: str | None, limit: int, as_json: bool) -> None:
    """Recent flow runs of cutover deployments, with their cutover run records."""
    settings = _settings_env(app)
    ws = Workspace(settings)
    with PrefectAdapter(ws, start=False) as ad:  # read-only: starts nothing
        frs = ad.flow_runs(ingestion_id=ingestion_id, limit=limit)
        records = {r.external_id: r for r in ws.runs.list(orchestrator="prefect", ingestion_id=ingestion_id,
                                                          limit=max(200, limit * 4)) if r.external_id}
    rows = []
    for fr in frs:
        rec = records.get(str(fr.id))
        when = fr.start_time or fr.expected_start_time
        rows.append({"flow_run_id": str(fr.id), "name": fr.name, "state": fr.state_name,
                     "start": when.isoformat(timespec="seconds") if when else None,
                     "run_id": rec.id if rec else None, "run_status": rec.status if rec else None,
                     "files": rec.files_processed if rec else None, "records": rec.records_ingested if rec else None})
    if as_json:
        app.json(rows)
        return
    app.table([[r["flow_run_id"][:8], r["name"], r["state"], r["start"], (r["run_id"] or "")[:12], r["run_status"],
                r["files"], r["records"]] for r in rows],
              ["flow run", "name", "state", "start", "run", "status", "files", "records"])


@prefect.command("job-manifest")
@click.argument("ingestion_id")
@click.option("--mode", type=click.Choice(["live", "shadow"]), default="shadow", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def job_manifest_cmd(app: App, ingestion_id: str, mode: str, as_json: bool) -> None:
    """The Kubernetes Job prefect-kubernetes would submit for a run of this deployment (kubernetes pools).

    Rendered with the worker's own code from the pool's base job template and the deployment's job
    variables, for a preview flow run that is not created; no cluster needed. PREFECT_API_KEY is masked.
    """
    from prefect.exceptions import ObjectNotFound

    settings = _settings_env(app)
    ws = Workspace(settings)
    ws.ingestions.get(ingestion_id)
    with PrefectAdapter(ws, mode=mode) as ad, ad.client() as c:
        try:
            dep = c.read_deployment_by_name(D.full_name(ingestion_id, mode))
        except ObjectNotFound:
            raise InputError(f"no deployment {D.full_name(ingestion_id, mode)}",
                             fix=f"deploy it first: cutover prefect deploy {ingestion_id} --mode {mode}") from None
        manifest = render_kubernetes_job(ad.api_url, str(dep.id))
    if as_json:
        app.json(manifest)
        return
    import yaml

    app.echo(yaml.safe_dump(manifest, sort_keys=False).rstrip())


@prefect.command("export")
@click.option("--format", "fmt", type=click.Choice(["prefect-yaml"]), default="prefect-yaml", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), help="File to write (default: standard output).")
@click.option("--source", type=click.Choice(["server", "inventory"]), default="server", show_default=True,
              help="server: the cutover deployments as they are on Prefect (paused flags included); "
                   "inventory: what `cutover prefect deploy` would create.")
@click.option("--mode", "modes", type=click.Choice(["live", "shadow"]), multiple=True,
              help="Only deployments of this mode (repeatable; default: both).")
@pass_app
def export_cmd(app: App, fmt: str, out: str | None, source: str, modes) -> None:
    """Write the work pool(s) and deployments cutover manages as a prefect.yaml.

    `prefect deploy --all --prefect-file FILE`, run from the repository root, accepts it
    unchanged and recreates the same deployments (see flows/export.py).
    """
    settings = _settings_env(app)
    ws = Workspace(settings)
    name = Path(out).name if out else "prefect.yaml"
    if source == "server":
        with PrefectAdapter(ws, start=False) as ad, ad.client() as c:  # read-only: starts nothing
            text, doc = export(ws, source="server", client=c, modes=list(modes) or None, filename=name)
    else:
        text, doc = export(ws, source="inventory", modes=list(modes) or None, filename=name)
    if out:
        write_text_atomic(Path(out).absolute(), text)
        app.info(f"wrote {len(doc['deployments'])} deployment(s) and {len(doc['definitions']['work_pools'])} "
                 f"work pool(s) to {out}")
    else:
        click.echo(text, nl=False)


# -- backfill (a top-level verb) ---------------------------------------------------------

CHUNKS = ("daily", "weekly", "monthly")


@click.command("backfill")
@click.argument("ingestion_id")
@click.option("--start", required=True, help="First date (YYYY-MM-DD, included).")
@click.option("--end", required=True, help="Last date (YYYY-MM-DD, included).")
@click.option("--chunk", type=click.Choice(CHUNKS), default="daily", show_default=True)
@click.option("--mode", type=click.Choice(["live", "shadow"]), default="live", show_default=True,
              help="live: main branch + live ledger; shadow: cutover-shadow branch + shadow ledger.")
@click.option("--dry-run", is_flag=True, help="Show the chunks, their files and what would run; change nothing.")
@click.option("--local", is_flag=True, help="Run the flow in this process (a flow call) instead of on a worker.")
@click.option("--no-wait", is_flag=True, help="With a worker: return once the flow run is created.")
@click.option("--timeout", default="1h", show_default=True, help="How long to wait for the worker's flow run.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def backfill(app: App, ingestion_id, start, end, chunk, mode, dry_run, local, no_wait, timeout, as_json) -> None:
    """Ingest the files of a date range chunk by chunk with the Prefect backfill flow.

    A file's date is the first date in its name (else in its path, else its mtime); each
    chunk is one run record (trigger backfill); files already in the ledger are skipped, so
    nothing is ingested twice. Chunks already done are skipped on a re-run: resumable.
    Exit 0 all chunks done, 3 some chunk failed (the summary lists them), 2 bad input.
    """
    settings = _settings_env(app, dry_run=dry_run)
    from flows import backfill as B  # imports prefect: only when a backfill runs

    s, e = B.parse_date(start, "--start"), B.parse_date(end, "--end")
    B.chunk_ranges(s, e, chunk)  # validates the range before anything else
    ws = Workspace(settings)
    if dry_run:
        _dry_run(app, ws, B, ingestion_id, s, e, chunk, mode, as_json)
        return
    ing = ws.ingestions.get(ingestion_id)
    if local:
        summary = _local(app, ws, B, ingestion_id, s, e, chunk, mode)
    else:
        summary = _on_worker(app, ws, B, ing, s, e, chunk, mode, no_wait=no_wait, timeout=timeout)
        if summary is None:
            return
    if as_json:
        app.json(summary)
    else:
        app.echo(B.format_summary(summary))
    if summary.get("failed") or summary.get("flow_state") not in (None, "COMPLETED"):
        raise click.exceptions.Exit(EXIT_PARTIAL)


def _dry_run(app, ws, B, iid, s, e, chunk, mode, as_json) -> None:
    ing, chunks, undated = B.plan(ws, iid, s, e, chunk)
    recorded = B.Progress(ws.settings, iid, mode).chunks()
    ledger = ws.ledger(iid, mode)
    rows = []
    for c in chunks:
        st = recorded.get(c.key, {}).get("status")
        pending = ledger.diff(c.files) if c.files else []
        action = "skip (done)" if st in (B.DONE, B.EMPTY) else ("empty" if not c.files else "would run")
        rows.append({"chunk": c.key, "files": len(c.files), "pending": len(pending), "recorded": st or "-",
                     "action": action})
    if as_json:
        app.json({"ingestion_id": iid, "mode": mode, "chunks": rows, "undated_files": undated, "dry_run": True})
        return
    app.table([(r["chunk"], r["files"], r["pending"], r["recorded"], r["action"]) for r in rows],
              ["CHUNK", "FILES", "NOT IN LEDGER", "RECORDED", "ACTION"])
    if undated:
        app.echo(f"{len(undated)} file(s) without a date would be left out, e.g. {undated[0]}")
    app.echo("Dry run: nothing was changed.")


def _api_url(app, ws, *, worker: bool) -> str:
    return pl.api_url(ws.settings, worker=worker, echo=app.info)


def _local(app, ws, B, iid, s, e, chunk, mode) -> dict:
    url = _api_url(app, ws, worker=False)  # the flow runs in this process
    with pl.settings_for(url):
        state = B.backfill(iid, s.isoformat(), e.isoformat(), chunk, mode, return_state=True)
    data = state.result(raise_on_failure=False)
    if isinstance(data, BaseException) or not isinstance(data, dict):
        raise InputError(f"the backfill flow ended {state.type.value}: {state.message or data}",
                         fix="see the flow run's logs")
    return {**data, "flow_state": state.type.value}


def _on_worker(app, ws, B, ing, s, e, chunk, mode, *, no_wait: bool, timeout: str) -> dict | None:
    url = _api_url(app, ws, worker=True)
    wait_s = parse_duration(timeout, what="--timeout")
    if not no_wait:  # a flow run nobody picks up would be waited for until the timeout
        pl.require_worker(url, ws.settings.prefect_work_pool)
    with pl.client(url) as c:
        fr_id = B.submit(c, ws, ing, start=s.isoformat(), end=e.isoformat(), chunk=chunk, mode=mode)
        app.info(f"backfill flow run {fr_id} queued on work queue {ing.work_queue} of pool "
                 f"{ws.settings.prefect_work_pool}")
        if no_wait:
            app.echo(fr_id)
            return None
        t0 = time.monotonic()
        deadline, next_note = t0 + wait_s, t0 + 15.0
        while True:
            fr = c.read_flow_run(fr_id)
            if fr.state is not None and fr.state.is_final():
                break
            if time.monotonic() > deadline:
                raise InputError(f"flow run {fr_id} is not finished after {timeout} "
                                 f"({fr.state.type.value if fr.state else 'no state'})",
                                 fix="is a worker running for the pool? ("
                                     f"{pl.worker_start_command(ws.settings.prefect_work_pool)})")
            if time.monotonic() >= next_note:
                app.info(f"backfill flow run {fr_id} {fr.state.name if fr.state else 'no state'}, "
                         f"{time.monotonic() - t0:.0f}s (timeout {timeout})")
                next_note += 15.0
            time.sleep(1.0)
    rows = B.status_of_range(B.Progress(ws.settings, ing.id, mode), s, e, chunk)
    failed = [r for r in rows if r["status"] not in (B.DONE, B.EMPTY)]
    return {"ingestion_id": ing.id, "mode": mode, "start": s.isoformat(), "end": e.isoformat(), "chunk": chunk,
            "chunks": len(rows), "done": sum(r["status"] == B.DONE for r in rows), "skipped": 0,
            "empty": sum(r["status"] == B.EMPTY for r in rows), "failed": len(failed),
            "failed_chunks": [{"chunk": r["chunk"], "error": r.get("error") or r["status"],
                               "failed_files": r.get("failed_files") or []} for r in failed],
            "progress_file": str(B.Progress(ws.settings, ing.id, mode).path), "flow_run_id": fr_id,
            "flow_state": fr.state.type.value}
