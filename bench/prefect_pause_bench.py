"""Mass pause on the Prefect side: the cutover adapter vs `prefect deployment schedule pause --all`.

For each backend (a Prefect server on SQLite, and/or on a throwaway PostgreSQL
cluster) the bench starts a fresh local server (no worker), then:

1. deploys COUNT deployments through ``PrefectAdapter.ensure_job`` (live mode,
   active, one daily schedule each: ``prefect deployment schedule pause`` only
   touches deployments that have schedules);
2. pauses all of them through ``PrefectAdapter.pause`` (deployment ``paused`` flag,
   one ingestion after the other, as ``cutover pause`` does), then resumes them;
3. runs ``prefect deployment schedule pause --all`` and ``resume --all`` against the
   same server (schedule ``active`` flag, 10 concurrent requests, CLI start-up included);

and prints seconds, operations per second and the adapter/CLI ratio. Every state
change is verified by reading the deployments back.

    .venv/bin/python bench/prefect_pause_bench.py --count 500 --backend both

Options: ``--count N`` (default 500), ``--backend sqlite|postgres|both`` (default
both), ``--event-persister on|off`` (default off, as ``cutover prefect up`` runs
it), ``--json`` (one JSON line per backend as well as the table).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# `prefect ARGS` with PrefectClient.read_deployments defaulting sort to NAME_ASC (see run_cli)
CLI_SHIM = """
import sys
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.sorting import DeploymentSort
_orig = PrefectClient.read_deployments
async def read_deployments(self, *a, sort=None, **kw):
    return await _orig(self, *a, sort=sort or DeploymentSort.NAME_ASC, **kw)
PrefectClient.read_deployments = read_deployments
from prefect.cli import app
sys.argv[0] = "prefect"
sys.exit(app())
"""


def _env_base() -> dict[str, str]:
    keep = ("CUTOVER_PREFECT_START_TIMEOUT",)  # the one start timeout demos, tests and benches honour
    return {k: v for k, v in os.environ.items() if not k.startswith(("CUTOVER_", "PREFECT_")) or k in keep}


def _read_all(client):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags
    from prefect.client.schemas.sorting import DeploymentSort

    out, offset = [], 0
    while True:
        page = client.read_deployments(deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=["cutover"])),
                                       limit=200, offset=offset, sort=DeploymentSort.NAME_ASC)
        out.extend(page)
        if len(page) < 200:
            return out
        offset += 200


def run_backend(backend: str, count: int, *, event_persister: bool, keep: bool = False) -> dict:
    from flows import local as pl
    from cutover.core.config import load_settings
    from cutover.core.workspace import Workspace
    from flows.adapter import PrefectAdapter
    from cutover.core.records.ingestions import validate

    root = Path(tempfile.mkdtemp(prefix=f"cutover-bench-{backend}-"))
    env = _env_base()
    env["CUTOVER_HOME"] = str(root / "home")
    settings = load_settings(env)
    extra = {"PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": "true" if event_persister else "false"}
    pg = None
    result: dict = {"backend": backend, "count": count, "event_persister": event_persister}
    try:
        if backend == "postgres":
            from tests.pg import PgCluster

            pg = PgCluster().start()
            pg.create_database("prefect")
            extra["PREFECT_API_DATABASE_CONNECTION_URL"] = pg.url("prefect", driver="asyncpg")
        t0 = time.monotonic()
        up = pl.up(settings, worker=False, env=env, extra_env=extra)  # waits [prefect] start_timeout
        result["server_start_s"] = round(time.monotonic() - t0, 2)
        url = up.state.url
        print(f"[{backend}] server at {url} healthy in {result['server_start_s']}s", file=sys.stderr, flush=True)

        # the workspace: COUNT scheduled ingestions (no files needed: nothing runs)
        old = {k: os.environ.get(k) for k in ("CUTOVER_HOME", "PREFECT_API_URL")}
        os.environ["CUTOVER_HOME"] = env["CUTOVER_HOME"]
        os.environ.pop("PREFECT_API_URL", None)
        try:
            ws = Workspace(settings)
            src = root / "src"
            src.mkdir()
            items = [validate({"id": f"bench-{i:05d}", "source_uri": str(src), "format": "csv",
                               "table": f"bench.t{i:05d}",
                               "schedule": {"frequency": "daily", "at": f"{i % 24:02d}:{i % 60:02d}"},
                               "timezone": "Europe/Berlin"}) for i in range(count)]
            ws.ingestions.upsert(items, replace_existing=True)
            ad = PrefectAdapter(ws, url, mode="live", paused_on_create=False)

            def timed(name, fn):
                t = time.monotonic()
                out = fn()
                s = time.monotonic() - t
                result[name] = round(s, 2)
                print(f"[{backend}] {name}: {s:.1f}s", file=sys.stderr, flush=True)
                return out

            actions = timed("adapter_deploy_s", lambda: [ad.ensure_job(i) for i in items])
            assert actions == ["created"] * count, set(actions)
            timed("adapter_list_jobs_s", ad.list_jobs)
            changed = timed("adapter_pause_s", lambda: [ad.pause(i.id) for i in items])
            assert all(changed)
            with pl.client(url) as c:
                deps = _read_all(c)
            assert len(deps) == count and all(d.paused for d in deps)
            changed = timed("adapter_resume_s", lambda: [ad.resume(i.id) for i in items])
            assert all(changed)
            with pl.client(url) as c:
                deps = _read_all(c)
            assert not any(d.paused for d in deps)
            result["adapter_retried_requests"] = ad.retries
            ad.close()
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

        cli_env = pl.prefect_env(settings, url, env)

        def run_cli(verb: str) -> None:
            args = ["deployment", "schedule", verb, "--all"]
            t = time.monotonic()
            p = subprocess.run([*pl.prefect_executable(), *args], env=cli_env, stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=1800)
            s = time.monotonic() - t
            if p.returncode != 0 and "'loc': ['body', 'sort']" in (p.stdout + p.stderr):
                # Prefect 3.8.8's client sends "sort": null, which this server stack (fastapi 0.154)
                # rejects with 422: the stock CLI cannot run here. Same CLI code, with the client
                # defaulting sort to NAME_ASC (its documented server default).
                result["cli_shim"] = True
                print(f"[{backend}] stock `prefect {' '.join(args)}` failed with 422 on sort=null; "
                      f"re-running it with the sort shim", file=sys.stderr, flush=True)
                t = time.monotonic()
                p = subprocess.run([sys.executable, "-c", CLI_SHIM, *args], env=cli_env, stdin=subprocess.DEVNULL,
                                   capture_output=True, text=True, timeout=1800)
                s = time.monotonic() - t
            if p.returncode != 0:
                raise RuntimeError(f"prefect {' '.join(args)} failed: {p.stdout[-500:]} {p.stderr[-2000:]}")
            result[f"cli_schedule_{verb}_s"] = round(s, 2)
            print(f"[{backend}] prefect deployment schedule {verb} --all: {s:.1f}s", file=sys.stderr, flush=True)

        run_cli("pause")
        with pl.client(url) as c:
            deps = _read_all(c)
        assert all(not s.active for d in deps for s in d.schedules) and all(d.schedules for d in deps)
        run_cli("resume")
        with pl.client(url) as c:
            deps = _read_all(c)
        assert all(s.active for d in deps for s in d.schedules)
        return result
    finally:
        pl.down(settings, grace=10)
        if pg is not None:
            pg.stop()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def print_table(results: list[dict]) -> None:
    rows = []
    for r in results:
        n = r["count"]
        for label, key, ref in (
            ("deploy (adapter.ensure_job)", "adapter_deploy_s", None),
            ("list_jobs (paged reads)", "adapter_list_jobs_s", None),
            ("pause  (adapter.pause)", "adapter_pause_s", "cli_schedule_pause_s"),
            ("resume (adapter.resume)", "adapter_resume_s", "cli_schedule_resume_s"),
            ("prefect deployment schedule pause --all", "cli_schedule_pause_s", None),
            ("prefect deployment schedule resume --all", "cli_schedule_resume_s", None),
        ):
            s = r.get(key)
            if s is None:
                continue
            ratio = f"{s / r[ref]:.2f}x" if ref and r.get(ref) else ""
            rows.append((r["backend"], label, str(n), f"{s:.1f}", f"{n / s:.0f}" if s else "-", ratio))
    headers = ("backend", "operation", "n", "seconds", "per s", "adapter/CLI")
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    print(fmt.format(*headers))
    print(fmt.format(*("-" * w for w in widths)))
    for row in rows:
        print(fmt.format(*row))
    for r in results:
        print(f"{r['backend']}: server healthy in {r['server_start_s']}s; event persister "
              f"{'on' if r['event_persister'] else 'off'}; adapter requests retried by the client: "
              f"{r.get('adapter_retried_requests', 0)}"
              + ("; the stock prefect CLI failed (422, sort=null): CLI timed with the sort shim"
                 if r.get("cli_shim") else ""))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    ap.add_argument("--event-persister", choices=("on", "off"), default="off")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the temp workspace (logs) for inspection")
    args = ap.parse_args(argv)
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    results = []
    for b in backends:
        r = run_backend(b, args.count, event_persister=args.event_persister == "on", keep=args.keep)
        results.append(r)
        if args.json:
            print(json.dumps(r), flush=True)
    print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
