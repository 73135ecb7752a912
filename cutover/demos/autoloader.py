"""The end-to-end demos on the embedded defaults (what `make demo` runs).

One scenario per legacy orchestrator, chosen with ``cutover demo --scenario NAME``
(``make demo SCENARIO=NAME``). Each recreates the demo workspace and tells its story
with the same commands a user would type, printing each one first, so that the
workspace left behind can be explored with every other command.

``autoloader`` (the default, :func:`run_demo` below) generates sample files (CSV,
JSON lines, Parquet, one bad file among them) for the batch orchestrator and
APScheduler. The others live in their own modules (``cutover/demo_<name>.py``) and
are registered in :data:`SCENARIOS` as ``"module:function"``, imported only when
chosen. A scenario function is called as ``fn(invoke, echo, settings, force=...)``
and returns the exit code; it starts with :func:`demo_workspace`.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import random
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from cutover.core.errors import InputError
from cutover.core.workspace import Workspace
from cutover.core.state.models import pause_snapshots as _snaps

MARKER = ".cutover-demo"

# scenario name -> "module:function", imported lazily (`cutover --help` must not pay for it)
SCENARIOS: dict[str, str] = {
    "autoloader": "cutover.demos.autoloader:run_demo",
    "cron": "cutover.demos.cron:run_cron_demo",
    "rq": "cutover.demos.rq:run_rq_demo",
    "team": "cutover.demos.team:run_team_demo",
}
DEFAULT_SCENARIO = "autoloader"


def _module_present(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def available_scenarios() -> list[str]:
    """The registered scenarios whose module is present (found, not imported)."""
    return [name for name, target in SCENARIOS.items() if _module_present(target.partition(":")[0])]


def load_scenario(name: str) -> Callable[..., int]:
    """The story function of scenario ``name``; InputError (one line, with the choices) when it
    is not registered or its module or function is missing. Imports only that scenario's module."""
    def choices() -> str:
        avail = available_scenarios()
        return f"use --scenario with one of: {', '.join(avail)}" if avail else "no demo scenario is installed"

    target = SCENARIOS.get(name)
    if target is None:
        raise InputError(f"demo scenario {name!r} does not exist", fix=choices())
    module, _, attr = target.partition(":")
    if not _module_present(module):
        raise InputError(f"demo scenario {name!r} is registered ({target}) but module {module} is missing",
                         fix=choices())
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:  # a dependency of the scenario module, not the module itself
        raise InputError(f"demo scenario {name!r} cannot be loaded: {module} needs the missing module {e.name!r}",
                         fix=f"install it (`make install` installs every dependency), or {choices()}") from None
    fn = getattr(mod, attr, None)
    if not callable(fn):
        raise InputError(f"demo scenario {name!r} is registered ({target}) but {module} has no function {attr}",
                         fix=choices())
    return fn


def run_scenario(name: str, invoke: Callable[[list[str]], int], echo: Callable[[str], None], settings, *,
                 force: bool = False, **options: Any) -> int:
    """Run scenario ``name``. ``options`` (e.g. ``seed``) go only to a scenario that takes them;
    one it does not take is an InputError, raised before anything is touched."""
    fn = load_scenario(name)
    params = inspect.signature(fn).parameters
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(k for k in given if k not in params)
    if unknown:
        raise InputError(f"--{unknown[0]} does not apply to the {name} demo scenario",
                         fix=f"leave --{unknown[0]} out")
    return fn(invoke, echo, settings, force=force, **given)


def _rows_orders(rng: random.Random, day: datetime, n: int, start_id: int) -> list[dict]:
    out = []
    for i in range(n):
        out.append({
            "order_id": start_id + i,
            "customer": f"c{rng.randint(1, 400):04d}",
            "amount": round(rng.uniform(5, 500), 2),
            "currency": rng.choice(["EUR", "USD", "GBP"]),
            "ordered_at": (day + timedelta(seconds=rng.randint(0, 86399))).strftime("%Y-%m-%dT%H:%M:%S"),
        })
    return out


def generate_files(data: Path, *, batch: int, rng: random.Random) -> dict[str, int]:
    """One day of files per ingestion; returns rows written per ingestion (bad file excluded)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    day = datetime(2026, 11, 1, tzinfo=timezone.utc) + timedelta(days=batch)
    stamp = day.strftime("%Y%m%d")
    rows: dict[str, int] = {}

    orders = data / "orders"
    orders.mkdir(parents=True, exist_ok=True)
    total = 0
    for part in range(3):
        n = rng.randint(40, 120)
        recs = _rows_orders(rng, day, n, start_id=batch * 10_000 + part * 1000)
        pcsv.write_csv(pa.Table.from_pylist(recs), orders / f"orders_{stamp}_{part}.csv")
        total += n
    rows["orders"] = total

    events = data / "events"
    events.mkdir(parents=True, exist_ok=True)
    total = 0
    for part in range(2):
        n = rng.randint(100, 300)
        with open(events / f"events_{stamp}_{part}.jsonl", "w") as f:
            for i in range(n):
                f.write(json.dumps({
                    "event_id": f"{stamp}-{part}-{i}",
                    "user_id": rng.randint(1, 1000),
                    "kind": rng.choice(["view", "click", "purchase"]),
                    "at": (day + timedelta(seconds=rng.randint(0, 86399))).strftime("%Y-%m-%dT%H:%M:%S"),
                }) + "\n")
        total += n
    rows["events"] = total

    metrics = data / "metrics"
    metrics.mkdir(parents=True, exist_ok=True)
    n = rng.randint(200, 400)
    pq.write_table(pa.table({
        "host": [f"web-{rng.randint(1, 9)}" for _ in range(n)],
        "ts": [day + timedelta(minutes=i) for i in range(n)],
        "cpu": [round(rng.uniform(0, 100), 1) for _ in range(n)],
        "mem_mb": [rng.randint(512, 16384) for _ in range(n)],
    }), metrics / f"metrics_{stamp}.parquet")
    rows["metrics"] = n

    if batch == 0:
        # The bad file: a truncated CSV export with a row that has too few columns.
        (orders / f"orders_{stamp}_broken.csv").write_text(
            "order_id,customer,amount,currency,ordered_at\n900001,c0001,12.50,EUR\n")
    return rows


def definitions(data: Path) -> dict:
    return {"ingestions": [
        {"id": "orders", "name": "Shop orders (CSV export)", "source_uri": str(data / "orders"),
         "pattern": "*.csv", "format": "csv", "table": "demo.orders",
         "schedule": {"frequency": "daily", "at": "02:30"}, "timezone": "Europe/Berlin",
         "key_columns": ["order_id"], "owner": "shop-data@example.com", "size_class": "small"},
        {"id": "events", "name": "Clickstream events (JSON lines)", "source_uri": str(data / "events"),
         "pattern": "*.jsonl", "format": "jsonl", "table": "demo.events",
         "schedule": {"cron": "15 * * * *"}, "timezone": "UTC",
         "key_columns": ["event_id"], "owner": "web-analytics@example.com", "priority": "high"},
        {"id": "metrics", "name": "Host metrics (Parquet)", "source_uri": str(data / "metrics"),
         "pattern": "*.parquet", "format": "parquet", "table": "demo.metrics",
         "schedule": {"trigger": "interval", "hours": 6, "start_date": "2026-01-01T00:45:00"},
         "timezone": "America/New_York", "key_columns": ["host", "ts"], "owner": "sre@example.com",
         "size_class": "large"},
    ]}


def _wait_shadow_catch_up(ws, iid: str, echo, timeout: float = 180.0) -> None:
    """Wait until the shadow ledger has every file the live ledger has (the worker is running the flow)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        live = {e.path for e in ws.ledger(iid, "live").entries() if e.status != "PROCESSING"}
        shadow = {e.path for e in ws.ledger(iid, "shadow").entries() if e.status != "PROCESSING"}
        running = [r for r in ws.runs.list(ingestion_id=iid, orchestrator="prefect", mode="shadow", limit=5)
                   if r.status == "RUNNING"]
        if live <= shadow and not running:
            echo(f"the Prefect shadow run of {iid} caught up ({len(shadow)} files in the shadow ledger)")
            return
        time.sleep(1.0)
    raise RuntimeError(f"the Prefect shadow run of {iid} did not catch up within {timeout:.0f}s")


def prepare_home(home: Path, *, force: bool) -> None:
    """Recreate the demo workspace; refuse to wipe anything that is not a demo workspace."""
    if home.exists() and any(home.iterdir()):
        if not (home / MARKER).exists() and not force:
            raise InputError(f"{home} holds files that are not a cutover demo workspace",
                             fix="point CUTOVER_HOME at an empty or demo directory, or pass --force")
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)
    (home / MARKER).write_text("created by `cutover demo`; `cutover demo` may delete this directory\n")


def check_embedded(settings) -> None:
    """A demo runs on the embedded defaults only (its own Prefect server and SQLite databases)."""
    if settings.prefect_api_url:
        raise InputError(f"the demo runs on the embedded defaults, but a Prefect server is selected: "
                         f"{settings.prefect.where}",
                         fix="unset PREFECT_API_URL and use a Prefect profile without one (prefect profile use NAME): "
                             "the demo starts its own local Prefect server")
    if not (settings.is_embedded_autoloader and settings.is_embedded_state):
        raise InputError("the demo runs on the embedded SQLite defaults, but a database URL is configured",
                         fix="unset CUTOVER_DATABASE_* (or use another CUTOVER_HOME without a cutover.toml)")


def demo_workspace(settings, *, force: bool) -> Path:
    """What every scenario starts with: the embedded defaults checked, then CUTOVER_HOME recreated
    (refused for a directory that is not a demo workspace unless ``force``). Returns the home."""
    check_embedded(settings)
    prepare_home(settings.home, force=force)
    return settings.home


def run_demo(invoke: Callable[[list[str]], int], echo: Callable[[str], None], settings, *, force: bool = False,
             seed: int = 7) -> int:
    """The autoloader story. ``invoke`` runs one cutover command line in-process and returns its exit code."""
    home = demo_workspace(settings, force=force)
    rng = random.Random(seed)
    data = home / "demo-data"
    expected: dict[str, int] = {}

    def step(title: str) -> None:
        echo("")
        echo(f"== {title}")

    def cmd(*args: str, ok: tuple[int, ...] = (0,)) -> int:
        echo(f"$ cutover {' '.join(args)}")
        rc = invoke(list(args))
        if rc not in ok:
            raise RuntimeError(f"`cutover {' '.join(args)}` exited {rc}")
        return rc

    step(f"1. A fresh workspace in {home} and a day of sample files")
    for k, v in generate_files(data, batch=0, rng=rng).items():
        expected[k] = expected.get(k, 0) + v
    defs = home / "ingestions.yaml"
    import yaml

    defs.write_text(yaml.safe_dump(definitions(data), sort_keys=False))
    echo(f"wrote {defs} and files under {data} (one of them, orders_20261101_broken.csv, is bad on purpose)")
    cmd("config", "show")

    step("2. The inventory: three ingestions with legacy schedules (daily, cron, APScheduler interval)")
    cmd("ingestion", "add", "--from-file", str(defs))
    cmd("ingestion", "list")
    cmd("legacy", "sync")
    cmd("legacy", "jobs")

    step("3. The legacy batch orchestrator ingests everything; the bad file is FAILED, the run goes on")
    cmd("legacy", "run", "--all", ok=(0, 3))

    step("4. A second day of files arrives: only the new files are processed, nothing twice")
    for k, v in generate_files(data, batch=1, rng=rng).items():
        expected[k] = expected.get(k, 0) + v
    cmd("legacy", "run", "--all", ok=(0, 3))
    cmd("legacy", "run", "orders")

    step("5. What happened: runs, the ledger, and Iceberg row counts from snapshot metadata")
    cmd("runs")
    cmd("ledger", "orders")
    cmd("table", "counts")
    cmd("table", "snapshots", "demo.orders", "--limit", "3")

    step("6. Check: every table holds exactly the rows of its good source files")

    ws = Workspace(settings)
    bad = 0
    for iid, rows in expected.items():
        ing = ws.ingestions.get(iid)
        total = ws.catalog.total_records(ing.table)
        ok = total == rows
        bad += not ok
        echo(f"{iid:<8} table {ing.table:<13} {total} rows, source files {rows} rows: {'OK' if ok else 'MISMATCH'}")
    if bad:
        return 1

    step("7. The Prefect side: a local server and worker, schedules translated and proven equivalent")
    cmd("prefect", "up")
    try:
        # default horizon: a year and the next two DST changes. orders (daily 02:30 Europe/Berlin) differs on
        # the spring-forward day (02:30 does not exist: APScheduler fires 03:30 CEST, Prefect 01:30 CET)
        cmd("schedules", "verify", "--all", ok=(1,))
        cmd("inventory")

        step("8. Shadow: fork cutover-shadow, deploy the Prefect shadow deployments on the legacy schedules")
        cmd("shadow", "start", "--all", "--reason", "demo", ok=(1,))  # refused: orders is not proven equivalent
        echo("the operator accepts the one-hour shift of orders on the spring-forward day (audited):")
        cmd("shadow", "start", "--all", "--reason", "demo: 02:30 on the DST day is accepted",
            "--accept-schedule-difference", "orders")
        cmd("status")

        step("9. A shadow run: legacy live and Prefect shadow ingest the same new files; parity proves it")
        for k, v in generate_files(data, batch=2, rng=rng).items():
            expected[k] = expected.get(k, 0) + v
        cmd("shadow", "run", "--once", "--all")
        for k, v in generate_files(data, batch=3, rng=rng).items():
            expected[k] = expected.get(k, 0) + v
        cmd("shadow", "run", "--once", "--all")
        cmd("table", "counts")

        step("10. A divergence: new orders arrive, only the legacy side runs; parity fails (exit 1) and says why")
        generate_files(data, batch=4, rng=rng)
        cmd("legacy", "run", "orders")
        reports = home / "reports"
        cmd("parity", "orders", "--since", "1h", "--format", "text,json,html,junit", "--out", str(reports), ok=(1,))
        echo(f"reports in {reports}: parity.html (with plots), parity.json, parity.xml (JUnit), parity.txt")
        cmd("prefect", "trigger", "orders", "--mode", "shadow")
        _wait_shadow_catch_up(ws, "orders", echo)
        cmd("parity", "orders", "--since", "1h", "--checks", "ledger,counts")

        step("11. The phased cutover: plan, dry-run, execute the canary, status")
        plan_file = home / "plan.json"
        cmd("plan", "--waves", "canary=1,rest", "--gate", "streak>=1,no_open_waiver", "--out", str(plan_file))
        cmd("execute", str(plan_file), "--dry-run", "--accept-schedule-difference", "orders")
        cmd("execute", str(plan_file), "--yes", "--reason", "demo canary", "--accept-schedule-difference", "orders")
        cmd("status")

        step("12. An incident: pause everything at once, then resume exactly what was running")
        cmd("legacy", "pause", "metrics")  # paused on purpose before the incident: must stay paused
        cmd("pause", "--all", "--reason", "demo: catalog outage")
        from sqlalchemy import select as _select


        with ws.state_engine.connect() as conn:
            snap = conn.execute(_select(_snaps.c.id).where(_snaps.c.status == "ACTIVE")).scalar()
        cmd("pause", "list")
        cmd("status", ok=(0, 1))
        cmd("resume", "--snapshot", str(snap))
        cmd("legacy", "jobs")
        echo("metrics was paused by hand before the incident and stays paused, so status flags it (exit 1):")
        cmd("status", ok=(1,))
        cmd("legacy", "resume", "metrics")

        step("13. Roll the canary back to the legacy side (it also lists the intervals a backfill may need)")
        cmd("rollback", "orders", "--reason", "demo: canary rollback")
        cmd("status")
        cmd("log", "--limit", "10")
    finally:
        step("14. Stop the local Prefect server (`cutover prefect up` starts it again)")
        cmd("prefect", "down", ok=(0, 1, 2, 3))
    echo("")
    echo(f"The workspace stays in {home}: try `cutover ingestion show orders`, `cutover ledger orders --status FAILED`, "
         f"`cutover parity history`, `cutover table snapshots demo.orders --branch cutover-shadow`, "
         f"`cutover legacy jobs`, `cutover status` (it starts the local Prefect server again).")
    return 0
