"""The RQ demo scenario (``cutover demo --scenario rq`` / ``make demo SCENARIO=rq``).

A legacy Redis RQ workflow -- discover -> three ingest partitions in parallel -> publish, each
step an RQ job -- ingests CSV files; cutover shadows it with the same DAG as a Prefect flow,
proves parity, catches a divergence, cuts the canary over, survives an incident mass pause
and rolls back. Everything runs locally: a throwaway ``redis-server`` (password-protected,
started in the workspace; Debian's package: ``scripts/ensure-redis``), two RQ workers
(``python -m legacy.rq.worker``), the local Prefect server and worker. All of them are stopped
at the end; the workspace stays for exploring (``cutover rq runs``, ``cutover parity history``).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from cutover.core.errors import InputError
from cutover.core.redact import redact_text
from legacy.rq.adapter import RQAdapter
from cutover.demos.autoloader import _wait_shadow_catch_up, prepare_home
from legacy.rq.server import RedisServer, RedisUnavailable, find_redis_server
from cutover.core.workspace import Workspace
from cutover.core.state.models import pause_snapshots as _snaps

INGESTION = "rq-orders"
QUEUE = "etl"
PARTITIONS = 3
REPO_ROOT = Path(__file__).resolve().parents[2]


def write_batch(src: Path, batch: int, rng: random.Random, files: int = 4) -> int:
    """``files`` CSV exports of one day; returns the rows written."""
    src.mkdir(parents=True, exist_ok=True)
    day = datetime(2026, 11, 1, tzinfo=timezone.utc) + timedelta(days=batch)
    total = 0
    for part in range(files):
        n = rng.randint(20, 60)
        lines = ["order_id,customer,amount,ordered_at"]
        for i in range(n):
            oid = batch * 100_000 + part * 1000 + i
            lines.append(f"{oid},c{rng.randint(1, 300):04d},{rng.uniform(5, 500):.2f},"
                         f"{(day + timedelta(seconds=rng.randint(0, 86399))):%Y-%m-%dT%H:%M:%S}")
        (src / f"orders_{day:%Y%m%d}_{part}.csv").write_text("\n".join(lines) + "\n")
        total += n
    return total


def _start_workers(settings, url: str, log: Path, n: int = 2) -> list[subprocess.Popen]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(CUTOVER_HOME=str(settings.home), CUTOVER_RQ_REDIS_URL=url,
               PYTHONPATH=str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""))
    procs = []
    for i in range(n):
        args = [sys.executable, "-m", "legacy.rq.worker", "--queues", QUEUE, "--name", f"cutover-demo-{i}",
                "--log-level", "WARNING"] + (["--with-scheduler"] if i == 0 else [])
        procs.append(subprocess.Popen(args, cwd=str(REPO_ROOT), env=env, stdin=subprocess.DEVNULL,
                                      stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True))
    return procs


def _stop_workers(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)  # RQ's warm shutdown: the current job finishes
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)


def _wait_workers(ws, n: int, procs, timeout: float = 60.0) -> None:

    deadline = time.monotonic() + timeout
    with RQAdapter(ws) as a:
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("an RQ worker exited at start (see rq-workers.log in the workspace)")
            if sum(1 for w in a.workers() if w["alive"]) >= n:
                return
            time.sleep(0.2)
    raise RuntimeError(f"{n} RQ workers did not register within {timeout:.0f}s")


def run_rq_demo(invoke: Callable[[list[str]], int], echo: Callable[[str], None], settings, *,
                force: bool = False) -> int:
    """The RQ story. ``invoke`` runs one cutover command line in-process and returns its exit code."""

    if settings.prefect_api_url:
        raise InputError(f"the demo runs on the embedded defaults, but a Prefect server is selected: "
                         f"{settings.prefect.where}",
                         fix="unset PREFECT_API_URL and use a Prefect profile without one (prefect profile use NAME): "
                             "the demo starts its own local Prefect server")
    if not (settings.is_embedded_autoloader and settings.is_embedded_state):
        raise InputError("the demo runs on the embedded SQLite defaults, but a database URL is configured",
                         fix="unset CUTOVER_DATABASE_* (or use another CUTOVER_HOME without a cutover.toml)")

    try:
        find_redis_server()  # before anything is wiped
    except RedisUnavailable as e:
        raise InputError(str(e), fix="run scripts/ensure-redis (make demo SCENARIO=rq does)") from None
    home = settings.home
    prepare_home(home, force=force)
    rng = random.Random(11)
    src = home / "demo-data" / "orders"

    def step(title: str) -> None:
        echo("")
        echo(f"== {title}")

    def cmd(*args: str, ok: tuple[int, ...] = (0,)) -> int:
        echo(redact_text(f"$ cutover {' '.join(args)}"))
        rc = invoke(list(args))
        if rc not in ok:
            raise RuntimeError(f"`cutover {' '.join(args)}` exited {rc}")
        return rc

    redis = None
    workers: list[subprocess.Popen] = []
    prefect_started = False
    try:
        step("1. The legacy RQ setup: a local Redis (password-protected), two RQ workers, a workflow DAG")
        redis = RedisServer(home / "redis").start()
        echo(f"redis-server on {redis.public_url} (data in {redis.dir})")
        expected = write_batch(src, 0, rng)
        defs = home / "ingestions.yaml"
        import yaml

        defs.write_text(yaml.safe_dump({"ingestions": [{
            "id": INGESTION, "name": "Shop orders, loaded by an RQ workflow", "source_uri": str(src),
            "pattern": "*.csv", "format": "csv", "table": "demo.rq_orders", "key_columns": ["order_id"],
            "schedule": {"frequency": "daily", "at": "02:30"}, "timezone": "Europe/Berlin",
            "owner": "shop-data@example.com"}]}, sort_keys=False))
        setup = home / "rq-setup.yaml"
        setup.touch(mode=0o600)  # it holds the Redis password: never on a command line, never printed
        setup.write_text(yaml.safe_dump({"redis_url": redis.url, "queue": QUEUE,
                                         "workflows": {INGESTION: {"partitions": PARTITIONS}}}, sort_keys=False))
        echo(f"wrote {defs}, {setup} (workflow: discover -> {PARTITIONS} ingest partitions in parallel -> publish)")
        cmd("rq", "import", "--config", str(setup), "--definitions", str(defs))

        ws = Workspace(settings)
        workers = _start_workers(settings, redis.url, home / "rq-workers.log")
        _wait_workers(ws, len(workers), workers)
        cmd("rq", "status")
        cmd("rq", "jobs")

        step("2. The RQ workflow ingests the files: the partitions run at the same time on both workers")
        cmd("rq", "run", INGESTION)
        cmd("rq", "runs", INGESTION)
        cmd("ledger", INGESTION)
        cmd("table", "counts")
        total = ws.catalog.total_records("demo.rq_orders")
        echo(f"table demo.rq_orders: {total} rows, source files {expected} rows: {'OK' if total == expected else 'MISMATCH'}")
        if total != expected:
            return 1

        step("3. The Prefect side: a local server and worker; the schedule is proven equivalent")
        cmd("prefect", "up")
        prefect_started = True
        cmd("schedules", "verify", INGESTION, "--horizon", "60d")

        step("4. Shadow: the same DAG as a Prefect flow (tasks in parallel), writing cutover-shadow only")
        cmd("shadow", "start", INGESTION, "--reason", "demo")
        expected += write_batch(src, 1, rng)
        cmd("rq", "run", INGESTION)
        cmd("prefect", "trigger", INGESTION, "--mode", "shadow")
        _wait_shadow_catch_up(ws, INGESTION, echo)
        cmd("parity", INGESTION, "--since", "fork")

        step("5. A divergence: new files, only the RQ side runs; parity fails (exit 1) and says why")
        write_batch(src, 2, rng, files=2)
        cmd("rq", "run", INGESTION)
        cmd("parity", INGESTION, "--since", "fork", "--checks", "ledger,counts", ok=(1,))
        cmd("prefect", "trigger", INGESTION, "--mode", "shadow")
        _wait_shadow_catch_up(ws, INGESTION, echo)
        cmd("parity", INGESTION, "--since", "fork", "--checks", "ledger,counts")

        step("6. The canary cutover: the RQ workflow is held (its kickoff leaves RQ's scheduled registry)")
        plan_file = home / "plan.json"
        cmd("plan", "--waves", "canary=1", "--gate", "streak>=1,no_open_waiver", "--out", str(plan_file))
        cmd("execute", str(plan_file), "--dry-run")
        cmd("execute", str(plan_file), "--yes", "--reason", "demo canary")
        cmd("rq", "jobs")
        cmd("status")
        cmd("rq", "run", INGESTION, ok=(1,))  # refused: the legacy side is held

        step("7. An incident: pause everything (RQ workers suspended), then resume exactly")
        cmd("pause", "--all", "--reason", "demo: redis maintenance")
        from sqlalchemy import select as _select


        with ws.state_engine.connect() as conn:
            snap = conn.execute(_select(_snaps.c.id).where(_snaps.c.status == "ACTIVE")).scalar()
        cmd("rq", "status", ok=(1,))  # suspended workers: not healthy, on purpose
        cmd("resume", "--snapshot", str(snap))
        cmd("rq", "status")

        step("8. Roll the canary back: the hold is lifted, the same kickoff is back, RQ runs it again")
        cmd("rollback", INGESTION, "--reason", "demo: canary rollback")
        cmd("rq", "jobs")
        write_batch(src, 3, rng, files=1)
        cmd("rq", "run", INGESTION)
        cmd("status")
        cmd("log", "--limit", "8")
    finally:
        step("9. Stop the local Prefect server, the RQ workers and Redis")
        if prefect_started:
            cmd("prefect", "down", ok=(0, 1, 2, 3))
        _stop_workers(workers)
        if redis is not None:
            redis.stop(remove=False)
            echo("RQ workers and redis-server stopped")
    echo("")
    echo(f"The workspace stays in {home}: try `cutover rq runs`, `cutover parity history`, "
         f"`cutover table snapshots demo.rq_orders --branch cutover-shadow`, `cutover log` "
         f"(`cutover rq ...` needs a Redis again: the demo's was stopped).")
    return 0
