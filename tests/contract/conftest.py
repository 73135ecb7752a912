"""Fixtures of the orchestrator contract suite.

Every adapter runs the same tests through a ``Harness``. To add an adapter
(e.g. Prefect), write a ``make_<name>(workspace)`` factory returning a Harness
and add it to ``HARNESSES`` (with marks if it needs a server)::

    HARNESSES.append(pytest.param("prefect", marks=pytest.mark.prefect))
    FACTORIES["prefect"] = make_prefect
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from cutover.core.config import load_settings
from cutover.core.workspace import Workspace
from cutover.core.records.ingestions import Ingestion, validate
from cutover.core.schedule.triggers import parse_schedule_text

SCHEDULES = {
    # yearly crons: nothing fires while the suite runs
    "orders": "cron 0 3 1 1 *",
    "customers": "cron 30 4 2 1 *",
    "fresh": "cron 15 5 3 1 *",
}
OTHER_SCHEDULE = "cron 45 6 4 1 *"


@dataclass
class ContractWorkspace:
    ws: Workspace
    home: Path
    ingestions: dict[str, Ingestion]  # in the inventory
    fresh: Ingestion  # valid, NOT in the inventory
    files: dict[str, list[str]]  # ingestion id -> its CSV file paths

    def with_schedule(self, ing: Ingestion, text: str) -> Ingestion:
        from dataclasses import replace

        return replace(ing, schedule=parse_schedule_text(text))


def _csv_source(root: Path, name: str, rows: list[tuple[int, str, float]]) -> list[str]:
    src = root / name
    src.mkdir(parents=True)
    paths = []
    for part in range(2):
        p = src / f"{name}-{part}.csv"
        chunk = rows[part::2]
        p.write_text("id,name,amount\n" + "".join(f"{i},{n},{a}\n" for i, n, a in chunk))
        paths.append(str(p))
    return paths


@pytest.fixture
def contract_ws(workspace_env, tmp_path, monkeypatch):
    """An isolated workspace (``workspace_env`` of tests/conftest.py) with two ingestions
    over small CSV files in the inventory, and a third one ready but not added."""
    home = workspace_env
    monkeypatch.setenv("CUTOVER_SCHEDULER_POLL_INTERVAL", "0.1")
    ws = Workspace(load_settings())
    files, ings = {}, {}
    for n, name in enumerate(("orders", "customers", "fresh")):
        files[name] = _csv_source(tmp_path / "src", name, [(i, f"{name}-{i}", i * 1.5) for i in range(1, 6 + n)])
        ings[name] = validate({"id": name, "source_uri": str(tmp_path / "src" / name), "pattern": "*.csv",
                               "format": "csv", "table": f"contract.{name}", "key_columns": ["id"],
                               "schedule": parse_schedule_text(SCHEDULES[name])})
    fresh = ings.pop("fresh")
    ws.ingestions.upsert(list(ings.values()), replace_existing=False)
    return ContractWorkspace(ws, home, ings, fresh, files)


@dataclass
class Harness:
    name: str
    adapter: Any
    cw: ContractWorkspace
    removes_jobs: bool = True  # remove_job makes the job disappear (batch: it is retired = paused)
    has_schedules: bool = True  # JobInfo.schedule reflects the ingestion's schedule
    writes_ledger: bool = True  # a triggered run fills the processed-file ledger
    run_orchestrator: str = "legacy"  # RunRecord.orchestrator of its runs
    register: Callable[[Ingestion], None] = lambda ing: None  # called before ensure_job(fresh ingestion)
    start_runner: Callable[[], None] = lambda: None  # makes triggered runs happen (e.g. a scheduler)
    closers: list[Callable[[], None]] = field(default_factory=list)

    def wait_for_run(self, ingestion_id: str, run_ref: str, *, timeout: float = 30.0):
        """The run a trigger() returned, once it has finished (matched by id or external id)."""
        self.start_runner()
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            for r in self.adapter.read_runs(ingestion_id=ingestion_id):
                if run_ref in (r.id, r.external_id):
                    last = r
                    if r.status != "RUNNING":
                        return r
            time.sleep(0.1)
        raise AssertionError(f"{self.name}: no finished run for {run_ref} within {timeout}s (last seen: {last})")

    def close(self) -> None:
        for c in reversed(self.closers):
            c()


def make_fake(cw: ContractWorkspace) -> Harness:
    from cutover.testing import FakeOrchestrator

    return Harness("fake", FakeOrchestrator(), cw, writes_ledger=False)


def make_fake_prefect(cw: ContractWorkspace) -> Harness:
    """The fake as the engine's unit tests use it for a Prefect side (cutover.testing.FakeSides)."""
    from cutover.testing import FakeSides

    return Harness("fake-prefect", FakeSides().prefect("live"), cw, writes_ledger=False, run_orchestrator="prefect")


def make_batch(cw: ContractWorkspace) -> Harness:
    from legacy.batch.adapter import BatchAdapter

    return Harness("batch", BatchAdapter(cw.ws), cw, removes_jobs=False, has_schedules=False)


def make_apscheduler(cw: ContractWorkspace) -> Harness:
    from legacy.apscheduler.adapters import APSchedulerAdapter
    from legacy.apscheduler.process import run_foreground

    h = Harness("apscheduler", APSchedulerAdapter(cw.ws), cw)
    stop = threading.Event()
    state: dict[str, threading.Thread] = {}

    def start_runner():
        if "thread" in state:
            return
        started = threading.Event()
        t = threading.Thread(target=run_foreground, args=(cw.ws.settings,),
                             kwargs={"stop_event": stop, "started": started}, daemon=True)
        t.start()
        state["thread"] = t
        assert started.wait(20), "the scheduler did not start"

    def close():
        stop.set()
        if "thread" in state:
            state["thread"].join(30)

    h.start_runner = start_runner
    h.closers.append(close)
    return h


def make_cron(cw: ContractWorkspace) -> Harness:
    """The crontab adapter over a crontab FILE with foreign lines (never the machine's crontab);
    jobs run the generated wrapper (legacy/cron/medallion.py) synchronously. After each test the
    lines outside the managed block must be byte-identical."""
    from legacy.cron.side import BEGIN, CronAdapter
    from legacy.cron.medallion import write_pipeline

    d = cw.home.parent / "cron"
    paths = write_pipeline(d, source_dir=d / "unused-source", cutover_home=cw.home)
    foreign = ("# m h dom mon dow command\nMAILTO=ops@example.com\n"
               "5 4 * * 0 /usr/local/bin/backup.sh --full >> /var/log/backup.log 2>&1\n"
               "# 0 * * * * /usr/local/bin/disabled-by-a-human.sh\n")
    paths["crontab"].write_text(foreign)
    adapter = CronAdapter(cw.ws, crontab=paths["crontab"], run_log=paths["run_log"], wrapper=str(paths["wrapper"]),
                          timezone="UTC", output_dir=paths["logs"], trigger_timeout=120)
    h = Harness("cron", adapter, cw)

    def foreign_lines_untouched():
        text = paths["crontab"].read_text()
        assert text.split(BEGIN)[0].rstrip("\n") == foreign.rstrip("\n"), "a line outside the managed block changed"

    h.closers.append(foreign_lines_untouched)
    return h


FACTORIES: dict[str, Callable[[ContractWorkspace], Harness]] = {
    "fake": make_fake,
    "fake-prefect": make_fake_prefect,
    "batch": make_batch,
    "apscheduler": make_apscheduler,
    "cron": make_cron,
}
HARNESSES: list = [pytest.param(name, id=name) for name in FACTORIES]


def make_prefect(cw: ContractWorkspace) -> Harness:
    from tests.prefect_fixtures import make_prefect_harness  # real server + worker, one per session

    return make_prefect_harness(cw)


FACTORIES["prefect"] = make_prefect
HARNESSES.append(pytest.param("prefect", id="prefect", marks=[pytest.mark.prefect, pytest.mark.slow]))


def make_rq(cw: ContractWorkspace) -> Harness:
    """RQ on the session's real Redis + real workers (tests/rq_fixtures.py), a key prefix per test."""
    from legacy.rq.server import RedisUnavailable
    from tests.rq_fixtures import make_rq_harness

    try:
        return make_rq_harness(cw)
    except RedisUnavailable as e:
        pytest.fail(f"Redis not available: {e} (run `sh scripts/ensure-redis`; `make test` does)", pytrace=False)


FACTORIES["rq"] = make_rq
HARNESSES.append(pytest.param("rq", id="rq", marks=[pytest.mark.rq]))


def _generic_cw(cw: ContractWorkspace, kind: str) -> ContractWorkspace:
    """The contract workspace with a generic job of ``kind`` in place of each ingestion (same ids and
    schedules): the generic sides run jobs, not ingestions."""
    from cutover.core.records.jobs import validate_job

    def job(ing: Ingestion):
        base = {"id": ing.id, "kind": kind, "schedule": ing.schedule, "timezone": ing.timezone, "shadow": "observe"}
        if kind == "callable":
            return validate_job({**base, "target": "tests.team_funcs:sync", "args": [ing.id, 1],
                                 "kwargs": {"full": True}})
        return validate_job({**base, "shell": f"echo run {ing.id}; cat", "stdin": "from stdin\n",
                             "env": {"SHELL": "/bin/sh"}})

    for iid in cw.ingestions:  # the ids name jobs now (ingestions and jobs share ids)
        cw.ws.ingestions.remove(iid)
    return ContractWorkspace(cw.ws, cw.home, {k: job(v) for k, v in cw.ingestions.items()}, job(cw.fresh), {})


def make_apscheduler_jobs(cw: ContractWorkspace) -> Harness:
    """The generic APScheduler side: callable jobs in a team's own job store (a SQLite file), run by a
    real APScheduler BackgroundScheduler with cutover's run-recording listeners (legacy/apscheduler/teamside.py)."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    from cutover.registry import generic_side
    from legacy.apscheduler.teamside import record_runs

    url = f"sqlite:///{cw.home.parent / 'team-jobs.db'}"
    SQLAlchemyJobStore(url=url).jobs_t.create(__import__("sqlalchemy").create_engine(url), checkfirst=True)
    gcw = _generic_cw(cw, "callable")
    h = Harness("apscheduler-jobs", generic_side("apscheduler", cw.ws, url), gcw, writes_ledger=False)
    state: dict = {}

    def start_runner():
        if "s" in state:
            return
        s = BackgroundScheduler(jobstores={"default": SQLAlchemyJobStore(url=url)}, timezone="UTC",
                                job_defaults={"misfire_grace_time": 3600})
        record_runs(s, ws=cw.ws)
        s.start()
        state["s"] = s

    def close():
        if "s" in state:
            state["s"].shutdown(wait=True)
        h.adapter.store.close()

    h.start_runner = start_runner
    h.closers.append(close)
    return h


def make_cron_jobs(cw: ContractWorkspace) -> Harness:
    """The generic crontab side: command jobs as lines of a crontab FILE wrapped by `cutover cron exec`
    (legacy/cron/jobside.py), among foreign lines that must stay byte-identical."""
    from cutover.registry import generic_side

    crontab = cw.home.parent / "team.crontab"
    foreign = ("# m h dom mon dow command\nMAILTO=ops@example.com\n"
               "5 4 * * 0 /usr/local/bin/backup.sh --full >> /var/log/backup.log 2>&1\n")
    crontab.write_text(foreign)
    h = Harness("cron-jobs", generic_side("cron", cw.ws, crontab), _generic_cw(cw, "command"), writes_ledger=False)

    def foreign_lines_untouched():
        assert crontab.read_text().startswith(foreign), "a line cutover does not own changed"

    h.closers.append(foreign_lines_untouched)
    return h


def make_rq_jobs(cw: ContractWorkspace) -> Harness:
    """The generic RQ side: callable jobs in rq-scheduler's layout on a redis-server of its own, run by a
    real RQ worker (burst) started when a run is awaited (legacy/rq/teamside.py)."""
    import subprocess
    import sys

    from cutover.registry import generic_side
    from legacy.rq.server import RedisServer, RedisUnavailable

    try:
        srv = RedisServer(cw.home.parent / "team-redis").start()
    except RedisUnavailable as e:
        pytest.fail(f"Redis not available: {e} (sh scripts/ensure-redis)", pytrace=False)
    root = str(Path(__file__).resolve().parents[2])
    h = Harness("rq-jobs", generic_side("rq", cw.ws, srv.url, queue="team-jobs"), _generic_cw(cw, "callable"),
                writes_ledger=False)

    def start_runner():
        import os

        subprocess.run([sys.executable, "-m", "rq.cli", "worker", "--burst", "--url", srv.url, "team-jobs"], cwd=root,
                       env={**os.environ, "PYTHONPATH": root}, capture_output=True, timeout=120, check=True)

    h.start_runner = start_runner
    h.closers += [srv.stop, h.adapter.close]
    return h


FACTORIES["rq-jobs"] = make_rq_jobs
HARNESSES.append(pytest.param("rq-jobs", id="rq-jobs", marks=[pytest.mark.rq]))
FACTORIES["apscheduler-jobs"] = make_apscheduler_jobs
FACTORIES["cron-jobs"] = make_cron_jobs
HARNESSES += [pytest.param("apscheduler-jobs", id="apscheduler-jobs"), pytest.param("cron-jobs", id="cron-jobs")]


@pytest.fixture(params=HARNESSES)
def harness(request, contract_ws) -> Harness:
    h = FACTORIES[request.param](contract_ws)
    for ing in h.cw.ingestions.values():
        h.adapter.ensure_job(ing)
    yield h
    h.close()
