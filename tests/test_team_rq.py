"""Issue #15, RQ: the functions behind a team's scheduled and repeated RQ jobs become callable jobs
(RQ's own scheduler and Repeat, RQ's cron scheduler, rq-scheduler's keys read without the package),
and their runs come from RQ's finished/failed registries. A real redis-server and real RQ."""

from __future__ import annotations

import json
import pickle
import zlib
from datetime import datetime, timedelta, timezone

import pytest

from tests.test_team_import import invoke

UTC = timezone.utc
pytestmark = pytest.mark.rq


@pytest.fixture
def redis_url(tmp_path):
    from legacy.rq.server import RedisServer, RedisUnavailable

    try:
        srv = RedisServer(tmp_path / "redis").start()
    except RedisUnavailable as e:
        pytest.fail(f"redis-server not available: {e} (sh scripts/ensure-redis)", pytrace=False)
    yield srv.url
    srv.stop()


def _rq_scheduler_job(conn, job_id, func, args, kwargs, meta, when):
    """A job as rq-scheduler writes it (Scheduler.cron / .schedule): an RQ job hash with the schedule in
    its meta, and its id in rq:scheduler:scheduled_jobs scored by the next time."""
    data = zlib.compress(pickle.dumps((func, None, args, kwargs), pickle.HIGHEST_PROTOCOL))
    conn.hset(f"rq:job:{job_id}", mapping={"data": data, "origin": "default", "meta": pickle.dumps(meta),
                                           "description": f"{func}(...)", "timeout": "180"})
    conn.zadd("rq:scheduler:scheduled_jobs", {job_id: when.timestamp()})


def test_rq_schedules_become_callable_jobs_and_registries_become_runs(workspace_env, redis_url):
    import redis
    from rq import Queue, Repeat, SimpleWorker
    from rq.cron import CronScheduler

    from cutover.core.records.jobruns import JobRunStore
    from cutover.core.workspace import Workspace
    from tests import team_funcs

    conn = redis.Redis.from_url(redis_url)
    q = Queue("default", connection=conn)
    at = datetime(2027, 2, 1, 6, 0, tzinfo=UTC)
    once = q.enqueue_at(at, team_funcs.load_orders, "eu", full=True, job_id="orders-once")
    rep = q.enqueue_at(at, team_funcs.sync, 1, (2, 3), repeat=Repeat(times=3, interval=3600), job_id="repeated")
    q.enqueue_at(at, team_funcs.sync, repeat=Repeat(times=3, interval=[60, 600]), job_id="uneven")
    q.enqueue_at(at, team_funcs.Reporter("w").run, job_id="bound")
    q.enqueue_at(at, team_funcs.sync, limit=team_funcs.Threshold(2), job_id="opaque-arg")
    cron = CronScheduler(connection=conn, name="team-cron")
    cron.register(team_funcs.sync, "default", args=("c",), cron="*/20 6-18 * * 1-5", name="sync-cron")
    cron.register(team_funcs.load_orders, "default", kwargs={"region": "us"}, interval=900, name="orders-15m")
    cron.save()
    _rq_scheduler_job(conn, "legacy-cron", "tests.team_funcs.load_orders", ("apac",), {}, {"cron_string": "0 3 * * *"},
                      datetime(2026, 12, 4, 3, tzinfo=UTC))
    _rq_scheduler_job(conn, "legacy-every", "tests.team_funcs.sync", (), {"n": 1}, {"interval": 600, "repeat": 5},
                      datetime(2026, 12, 4, 3, tzinfo=UTC))
    before = {k: conn.dump(k) for k in conn.keys("*")}

    code, out, err = invoke("rq", "import-jobs", "--redis-url", redis_url, "--dry-run", "--json")
    assert code == 0, err
    assert redis_url.split("@")[0].split(":")[-1] not in out  # the password never shows
    ws = Workspace()
    assert ws.jobs.list() == [] and {k: conn.dump(k) for k in conn.keys("*")} == before
    code, out, err = invoke("rq", "import-jobs", "--redis-url", redis_url, "--shadow", "observe", "--json")
    assert code == 0, err
    res = json.loads(out)
    by = {(i["source"], i["rq_job_id"] or i["func"]): i for i in res["jobs"]}
    assert len(res["jobs"]) == 9, "every scheduled unit of work is listed"
    assert res["create"] == 6 and res["cannot_move"] == 3
    assert "intervals differ" in by[("rq-scheduled", "uneven")]["reason"]
    assert "method" in by[("rq-scheduled", "bound")]["reason"]
    assert "tests.team_funcs:Threshold" in by[("rq-scheduled", "opaque-arg")]["reason"]

    jobs = {j.legacy.get("rq_job_id") or j.legacy.get("name"): j for j in ws.jobs.list()}
    o = jobs["orders-once"]
    assert o.target == "tests.team_funcs:load_orders" and o.call_args() == (["eu"], {"full": True})
    assert o.schedule == {"trigger": "date", "run_date": at.isoformat()}
    r = jobs["repeated"]
    assert r.call_args() == ([1, (2, 3)], {}) and r.schedule["seconds"] == 3600
    # the next run + 3 repeats, one hour apart
    assert datetime.fromisoformat(r.schedule["end_date"]) - at == timedelta(hours=3)
    assert jobs["sync-cron"].schedule == {"crontab": "*/20 6-18 * * 1-5"}
    assert jobs["orders-15m"].schedule["seconds"] == 900 and jobs["orders-15m"].call_args()[1] == {"region": "us"}
    assert jobs["legacy-cron"].schedule == {"crontab": "0 3 * * *"} and jobs["legacy-cron"].timezone == "UTC"
    e = jobs["legacy-every"]
    assert e.schedule["seconds"] == 600 and datetime.fromisoformat(e.schedule["end_date"]) == \
        datetime(2026, 12, 4, 3, tzinfo=UTC) + timedelta(seconds=600 * 4)
    assert all(j.shadow == "observe" for j in jobs.values())
    code, out, _ = invoke("rq", "import-jobs", "--redis-url", redis_url, "--json")
    assert json.loads(out)["unchanged"] == 6  # idempotent

    # the generic RQ side pauses in place and resumes to the exact next time
    from cutover.registry import generic_side

    side = generic_side("rq", ws, redis_url)
    scores = {k: conn.zscore(k, m) for k, m in (("rq:scheduled:default", "orders-once"),
                                                ("rq:scheduler:scheduled_jobs", "legacy-cron"))}
    ids = [o.id, jobs["legacy-cron"].id]
    assert all(side.pause(i) for i in ids) and not any(side.pause(i) for i in ids)
    assert all(conn.zscore(k, m) is None for k, m in (("rq:scheduled:default", "orders-once"),
                                                      ("rq:scheduler:scheduled_jobs", "legacy-cron")))
    assert all(j.paused for j in side.list_jobs() if j.ingestion_id in ids)
    assert all(side.resume(i) for i in ids)
    assert {k: conn.zscore(k, m) for k, m in (("rq:scheduled:default", "orders-once"),
                                              ("rq:scheduler:scheduled_jobs", "legacy-cron"))} == scores
    with pytest.raises(Exception, match="cron config"):
        side.pause(jobs["sync-cron"].id)
    side.close()

    # runs: the team's worker runs the repeated job and a failing one; the registries become run records
    from rq.registry import ScheduledJobRegistry

    ScheduledJobRegistry(queue=q).remove(rep)
    q.enqueue_job(rep)
    failing = q.enqueue(team_funcs.fail, job_id="orders-once-fails")
    ws.jobs.upsert([__import__("dataclasses").replace(o, legacy={**o.legacy, "rq_job_id": "orders-once-fails"})],
                   replace_existing=True)
    SimpleWorker([q], connection=conn).work(burst=True)
    code, out, err = invoke("rq", "record-runs", "--redis-url", redis_url, "--json")
    assert code == 0, err
    runs = JobRunStore(ws.autoloader_engine).list()
    got = sorted((x.run.ingestion_id, x.run.status) for x in runs)
    assert got == [(o.id, "FAILED"), (r.id, "SUCCESS")]
    failed = next(x for x in runs if x.run.status == "FAILED")
    assert "upstream refused" in failed.run.error and "hunter2" not in (failed.output_tail or "") + failed.run.error
    invoke("rq", "record-runs", "--redis-url", redis_url)
    assert len(JobRunStore(ws.autoloader_engine).list()) == 2  # idempotent
    assert once.id == "orders-once" and failing.id
    conn.close()
