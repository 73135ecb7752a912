"""`cutover legacy import`: a team's real APScheduler 3 job store becomes ingestions with
their real triggers; the source is only read."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from cutover.core.config import load_settings
from cutover.core.workspace import Workspace
from cutover.core.schedule import triggers as sched
from cutover.core.records.ingestions import validate
from legacy.apscheduler.jobstore import load_job_state
from legacy.apscheduler.scheduler import JobSync

UTC = timezone.utc
START = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def team_ingest(**kwargs):  # the team's job function (made unimportable in the store below)
    return kwargs


class RetryPolicy:  # a team class pickled in a job's kwargs (made unimportable below)
    def __init__(self, n):
        self.n = n


@pytest.fixture
def home(workspace_env):
    """An isolated workspace (tests/conftest.py)."""
    return workspace_env


def _defn(tmp_path: Path, name: str, **extra) -> dict:
    src = tmp_path / "team" / name
    src.mkdir(parents=True, exist_ok=True)
    (src / "a.csv").write_text("id,v\n1,2\n")
    return {"source_uri": str(src), "format": "csv", "table": f"team.{name}", "pattern": "*.csv", **extra}


def build_source(path, jobs: list[dict], *, break_refs: bool = True) -> str:
    """A job store written by real APScheduler; then (like a team whose code moved on)
    the func refs and pickled classes of this module are made unimportable."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    url = f"sqlite:///{path}" if isinstance(path, Path) else path
    s = BackgroundScheduler(jobstores={"default": SQLAlchemyJobStore(url=url)}, timezone=UTC)
    s.start(paused=True)
    try:
        for spec in jobs:
            spec = dict(spec)
            paused = spec.pop("paused", False)
            s.add_job(f"{__name__}:team_ingest", **spec)
            if paused:
                s.pause_job(spec["id"])
    finally:
        s.shutdown(wait=False)
    if break_refs:
        from sqlalchemy import create_engine, text

        mod = __name__.encode()
        gone = b"z" * len(mod)  # same length: the pickles stay valid, the module does not exist
        engine = create_engine(url)
        with engine.begin() as conn:
            for jid, blob in conn.execute(text("SELECT id, job_state FROM apscheduler_jobs")).all():
                conn.execute(text("UPDATE apscheduler_jobs SET job_state = :b WHERE id = :i"),
                             {"b": bytes(blob).replace(mod, gone), "i": jid})
        engine.dispose()
    return url if isinstance(path, Path) else path


def snapshot(path):
    """Every row of the source store (and, for a file, its bytes)."""
    from sqlalchemy import create_engine, text

    if isinstance(path, Path):
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        rows = con.execute("SELECT id, next_run_time, job_state FROM apscheduler_jobs ORDER BY id").fetchall()
        con.close()
        return rows, hashlib.sha256(path.read_bytes()).hexdigest()
    engine = create_engine(path)
    with engine.connect() as conn:
        rows = [(r[0], r[1], bytes(r[2])) for r in
                conn.execute(text("SELECT id, next_run_time, job_state FROM apscheduler_jobs ORDER BY id"))]
    engine.dispose()
    return rows


def invoke(args):
    from cutover.cli import cli
    from cutover.cli.app import run_main

    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        code = run_main(cli, list(args))
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_cutover", False):
            root.removeHandler(h)
    return code, out.getvalue().decode(), err.getvalue().decode()


def fires(trigger, n=25):
    t = copy.copy(trigger)
    t.jitter = None
    return sched.next_fire_times(t, START, n)


def _team_jobs(tmp_path):
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    return [
        {"id": "orders-eom", "trigger": CronTrigger(day="last", hour=23, minute=15, second=30, jitter=60,
                                                    timezone="Europe/Berlin"),
         "kwargs": {**_defn(tmp_path, "orders", key_columns=["id"], owner="team-a"),
                    "retry": RetryPolicy(3)}},  # unreadable, but not part of the definition
        {"id": "customers-6h", "trigger": IntervalTrigger(hours=6, start_date=datetime(2026, 1, 1, 0, 30),
                                                          timezone="America/New_York"),
         "kwargs": _defn(tmp_path, "customers"), "name": "Customers every 6 hours"},
        {"id": "events-nightly", "trigger": CronTrigger(hour=2, minute=5, timezone="UTC"),
         "kwargs": {**_defn(tmp_path, "events"), "ingestion_id": "events"}, "paused": True},
    ]


def test_import_brings_real_triggers_and_leaves_the_source_alone(home, tmp_path):
    src = tmp_path / "team.db"
    jobs = _team_jobs(tmp_path)
    url = build_source(src, jobs)
    before = snapshot(src)
    # the team's func refs are gone: APScheduler itself could not restore (and would delete) these jobs
    state = load_job_state(before[0][0][2])
    assert state["func"].startswith("zzz")

    code, out, err = invoke(["legacy", "import", "--jobstore", url])
    assert code == 0, out + err
    assert "create: orders-eom (cron(day=last, hour=23, minute=15, second=30, jitter=60) Europe/Berlin)" in out
    assert "create: customers-6h" in out
    assert "create: events (job events-nightly, cron(hour=2, minute=5) UTC, paused)" in out
    assert snapshot(src) == before, "the source job store changed"

    ws = Workspace(load_settings())
    got = {i.id: i for i in ws.ingestions.list()}
    assert sorted(got) == ["customers-6h", "events", "orders-eom"]
    for job, iid in zip(jobs, ["orders-eom", "customers-6h", "events"]):
        ing = got[iid]
        mine = sched.build_trigger(ing.schedule, ing.timezone)
        assert fires(mine) == fires(job["trigger"]), iid
        assert (mine.jitter or None) == (job["trigger"].jitter or None)
        assert str(mine.timezone) == str(job["trigger"].timezone)
    assert got["orders-eom"].owner == "team-a" and got["orders-eom"].key_columns == ("id",)
    assert got["customers-6h"].name == "Customers every 6 hours"
    assert got["events"].table == "team.events"

    # our APScheduler jobs mirror them; the paused one is paused on both legacy paths
    js = JobSync(ws.settings)
    ours = {j.ingestion_id: j for j in js.jobs()}
    assert {i: j.paused for i, j in ours.items()} == {"orders-eom": False, "customers-6h": False, "events": True}
    assert got["events"].batch_paused and not got["orders-eom"].batch_paused

    # again: nothing to do
    code, out, _ = invoke(["legacy", "import", "--jobstore", url])
    assert code == 0
    assert out.count("unchanged:") == 3
    assert snapshot(src) == before


def test_dry_run_writes_nothing(home, tmp_path):
    src = tmp_path / "team.db"
    url = build_source(src, _team_jobs(tmp_path))
    before = snapshot(src)
    code, out, err = invoke(["legacy", "import", "--jobstore", url, "--dry-run"])
    assert code == 0, err
    assert out.count("would create:") == 3 and "Dry run: 3 to create" in out
    assert not home.exists(), "a dry run created the workspace"
    assert snapshot(src) == before

    # on an existing workspace too
    Workspace(load_settings()).ingestions.list()
    code, out, _ = invoke(["legacy", "import", "--jobstore", url, "--dry-run"])
    assert code == 0 and out.count("would create:") == 3
    ws = Workspace(load_settings())
    assert ws.ingestions.list() == [] and JobSync(ws.settings).jobs() == []


def test_a_job_without_definition_fails_the_whole_import(home, tmp_path):
    from apscheduler.triggers.cron import CronTrigger

    src = tmp_path / "team.db"
    jobs = _team_jobs(tmp_path) + [{"id": "mystery", "trigger": CronTrigger(hour=1), "kwargs": {"batch": 5}}]
    url = build_source(src, jobs)
    before = snapshot(src)
    code, out, err = invoke(["legacy", "import", "--jobstore", url])
    assert code == 2
    problems = [line for line in out.splitlines() if line.startswith("problem:")]
    assert len(problems) == 1 and "job mystery" in problems[0] and "no ingestion 'mystery'" in problems[0]
    assert "nothing was written" in err
    ws = Workspace(load_settings())
    assert ws.ingestions.list() == [] and JobSync(ws.settings).jobs() == []
    assert snapshot(src) == before


def test_existing_ingestion_takes_the_real_schedule_only_with_replace(home, tmp_path):
    from apscheduler.triggers.cron import CronTrigger

    ws = Workspace(load_settings())
    ws.ingestions.upsert([
        validate({"id": "orders", **_defn(tmp_path, "orders"), "schedule": sched.parse_schedule_text("daily 02:00")}),
        validate({"id": "same", **_defn(tmp_path, "same"), "schedule": sched.parse_schedule_text("daily 04:30")}),
    ], replace_existing=False)
    src = tmp_path / "team.db"
    real = CronTrigger(day="last", hour=2, second=30, timezone="UTC")
    url = build_source(src, [
        {"id": "orders", "trigger": real, "kwargs": {}},  # no definition: ours is used
        {"id": "same", "trigger": CronTrigger(hour=4, minute=30, timezone="UTC"), "kwargs": {}, "paused": True},
    ])
    code, out, err = invoke(["legacy", "import", "--jobstore", url])
    assert code == 2
    assert "problem: job orders: ingestion orders exists with schedule daily 02:00 UTC" in out and "--replace" in out
    assert ws.ingestions.get("orders").schedule == {"frequency": "daily", "at": "02:00"}
    assert not ws.ingestions.get("same").batch_paused

    code, out, err = invoke(["legacy", "import", "--jobstore", url, "--replace"])
    assert code == 0, out + err
    assert "update: orders: schedule daily 02:00 UTC -> cron(day=last, hour=2, second=30) UTC" in out
    assert "update: same: pause (paused in the source)" in out
    orders = ws.ingestions.get("orders")
    assert fires(sched.build_trigger(orders.schedule, orders.timezone)) == fires(real)
    assert orders.source_uri.endswith("orders")
    same = ws.ingestions.get("same")
    assert same.schedule == {"frequency": "daily", "at": "04:30"}  # equivalent: our form is kept
    assert same.batch_paused and JobSync(ws.settings).is_paused("same") is True


def test_combined_triggers_and_unreadable_definitions_are_refused(home, tmp_path):
    from apscheduler.triggers.combining import OrTrigger
    from apscheduler.triggers.cron import CronTrigger

    src = tmp_path / "team.db"
    url = build_source(src, [
        {"id": "twice", "trigger": OrTrigger([CronTrigger(hour=1), CronTrigger(hour=13)]),
         "kwargs": _defn(tmp_path, "twice")},
        {"id": "opaque", "trigger": CronTrigger(hour=3), "kwargs": {**_defn(tmp_path, "opaque"),
                                                                    "source_uri": RetryPolicy(1)}},
    ])
    code, out, _ = invoke(["legacy", "import", "--jobstore", url, "--dry-run"])
    assert code == 2
    assert "problem: job twice: OrTrigger" in out and "split it into one job per trigger" in out
    assert "problem: job opaque: kwarg(s) source_uri" in out


def test_bad_source_is_a_clear_input_error(home, tmp_path):
    code, _, err = invoke(["legacy", "import", "--jobstore", f"sqlite:///{tmp_path / 'missing.db'}"])
    assert code == 2 and "does not exist" in err
    assert not (tmp_path / "missing.db").exists()
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    code, _, err = invoke(["legacy", "import", "--jobstore", f"sqlite:///{empty}", "--table", "jobs"])
    assert code == 2 and "has no table 'jobs'" in err
    code, _, err = invoke(["legacy", "import", "--jobstore", "postgresql+psycopg://u:s3cret@127.0.0.1:1/x"])
    assert code == 2 and "s3cret" not in err and "***" in err


@pytest.mark.postgres
def test_import_from_a_postgres_job_store(home, tmp_path, pg_url):
    url = build_source(pg_url, _team_jobs(tmp_path))  # a URL: the store lives in PostgreSQL
    before = snapshot(url)
    code, out, err = invoke(["legacy", "import", "--jobstore", url, "--dry-run"])
    assert code == 0 and out.count("would create:") == 3, out + err
    code, out, err = invoke(["legacy", "import", "--jobstore", url])
    assert code == 0 and out.count("create:") == 3, out + err
    assert snapshot(url) == before
    ws = Workspace(load_settings())
    assert sorted(i.id for i in ws.ingestions.list()) == ["customers-6h", "events", "orders-eom"]
    assert ws.ingestions.get("events").batch_paused
