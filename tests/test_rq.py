"""The Redis RQ legacy side (legacy/rq, flows/dag.py, `cutover rq`).

Pure logic (DAG rules, partitioning, config) runs without Redis. Everything else runs against
the session's real ``redis-server`` (password-protected) and two real RQ worker processes
(tests/rq_fixtures.py), each test under a key prefix of its own. The end-to-end tests add the
session's real Prefect server and worker.
"""

from __future__ import annotations

import json
import stat
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from cutover.core.errors import InputError
from tests.helpers import write_csv_files
from tests.helpers import invoke_cli as _cli

UTC = timezone.utc


def _ingestion(ws, iid: str, src: Path, *, schedule=None, n_files: int = 0, start: int = 0):
    from cutover.core.records.ingestions import validate

    files = write_csv_files(src, n_files, start=start) if n_files else {}
    ing = validate({"id": iid, "source_uri": str(src), "pattern": "*.csv", "format": "csv",
                    "table": f"rqt.{iid.replace('-', '_')}", "key_columns": ["id"],
                    "schedule": schedule or {"cron": "0 3 1 1 *"}})  # yearly: never fires in a test
    ws.ingestions.upsert([ing], replace_existing=True)
    return ws.ingestions.get(iid), files


def _with_workflows(rw, **workflows):
    from dataclasses import replace

    rw.config = replace(rw.config, workflows={**rw.config.workflows, **workflows})
    rw.config.save(rw.ws.settings)
    return rw.config


# -- the DAG model (pure) -------------------------------------------------------------------------


def test_default_dag_levels_and_description():
    from legacy.rq.model import Workflow, default_steps

    wf = Workflow("orders", default_steps(3))
    assert wf.describe() == "discover -> [ingest-0 | ingest-1 | ingest-2] -> publish"
    assert wf.levels() == [["discover"], ["ingest-0", "ingest-1", "ingest-2"], ["publish"]]
    assert wf.partitions == 3
    assert Workflow("x", default_steps(1)).describe() == "discover -> ingest -> publish"
    assert wf.upstream("publish") == {"discover", "ingest-0", "ingest-1", "ingest-2"}


def test_partitions_cover_every_file_exactly_once_and_are_stable():
    from legacy.rq.model import partition_of

    paths = [f"/data/orders/part-{i:05d}.csv" for i in range(200)]
    for n in (1, 2, 3, 7):
        buckets = [[p for p in paths if partition_of(p, n) == i] for i in range(n)]
        assert sorted(p for b in buckets for p in b) == sorted(paths)
        if n > 1:
            assert all(buckets), f"a partition of {n} got no file out of 200"
    # crc32: the same on every process and machine (Python's hash() is salted per process)
    assert partition_of("/data/orders/part-00000.csv", 4) == __import__("zlib").crc32(
        b"/data/orders/part-00000.csv") % 4


def test_workflow_round_trips_through_its_parameter_form():
    from legacy.rq.model import parse_workflow, workflow_from_steps

    wf = parse_workflow("orders", {"queue": "ingest", "steps": [
        {"name": "discover", "kind": "discover"},
        {"name": "big", "kind": "ingest", "depends_on": ["discover"], "partition": "0/2", "queue": "heavy",
         "timeout": 7200},
        {"name": "small", "kind": "ingest", "depends_on": ["discover"], "partition": [1, 2]},
        {"name": "publish", "kind": "publish", "depends_on": ["big", "small"]}]})
    again = workflow_from_steps("orders", wf.steps_dicts())
    assert [s.as_dict() for s in again.order()] == [s.as_dict() for s in wf.order()]
    assert again.step("big").queue == "heavy" and again.step("big").timeout == 7200


@pytest.mark.parametrize("steps, message", [
    ([{"name": "d", "kind": "discover"}, {"name": "i", "kind": "ingest", "depends_on": ["p"]},
      {"name": "p", "kind": "publish", "depends_on": ["i"]}], "cycle"),
    ([{"name": "d", "kind": "discover"}, {"name": "i", "kind": "ingest", "depends_on": ["nope"]},
      {"name": "p", "kind": "publish", "depends_on": ["i"]}], "unknown step"),
    ([{"name": "d", "kind": "discover"}, {"name": "e", "kind": "discover"}, {"name": "i", "kind": "ingest",
      "depends_on": ["d"]}, {"name": "p", "kind": "publish", "depends_on": ["i"]}], "exactly one discover"),
    ([{"name": "d", "kind": "discover"}, {"name": "i", "kind": "ingest", "depends_on": ["d"], "partition": [0, 2]},
      {"name": "p", "kind": "publish", "depends_on": ["i"]}], "do not cover 0..1"),
    ([{"name": "d", "kind": "discover"}, {"name": "a", "kind": "ingest", "depends_on": ["d"], "partition": [0, 2]},
      {"name": "b", "kind": "ingest", "depends_on": ["d"], "partition": [1, 3]},
      {"name": "p", "kind": "publish", "depends_on": ["a", "b"]}], "different partition counts"),
    ([{"name": "d", "kind": "discover"}, {"name": "a", "kind": "ingest", "depends_on": ["d"], "partition": [0, 2]},
      {"name": "b", "kind": "ingest", "depends_on": ["d"], "partition": [1, 2]},
      {"name": "p", "kind": "publish", "depends_on": ["a"]}], "publish does not wait for ingest step(s) b"),
    ([{"name": "d", "kind": "discover"}, {"name": "i", "kind": "ingest", "depends_on": ["d"], "partition": [0, 2]},
      {"name": "p", "kind": "publish", "depends_on": ["i"]},
      {"name": "z", "kind": "ingest", "depends_on": ["p"], "partition": [1, 2]}], "publish does not wait for ingest step(s) z"),
    ([{"name": "d", "kind": "discover"}, {"name": "i", "kind": "ingest", "depends_on": ["d"]},
      {"name": "x", "kind": "ingest"}, {"name": "p", "kind": "publish", "depends_on": ["i"]}], "depend on nothing"),
    ([{"name": "d", "kind": "discover"}, {"name": "d", "kind": "ingest", "depends_on": ["d"]}], "used twice"),
    ([{"name": "d", "kind": "discover"}, {"name": "i", "kind": "compact", "depends_on": ["d"]}], "kind 'compact'"),
    ([{"name": "D!", "kind": "discover"}], "not valid"),
])
def test_bad_dags_are_refused_with_one_clear_error(steps, message):
    from legacy.rq.model import parse_workflow

    with pytest.raises(InputError) as e:
        parse_workflow("orders", {"steps": steps})
    assert message in str(e.value), str(e.value)
    assert e.value.fix  # the error names the fix


def test_config_validation_redaction_and_file_mode(workspace_env, monkeypatch):
    from cutover.core.config import load_settings
    from legacy.rq.model import ENV_URL, RQConfig, managed_ids, steps_for

    settings = load_settings()
    with pytest.raises(InputError) as e:
        RQConfig.from_dict({"redis_url": "http://:hunter2@redis:6379/0"})
    assert "hunter2" not in str(e.value) and "***" in str(e.value)
    with pytest.raises(InputError, match="unknown key"):
        RQConfig.from_dict({"redis_url": "redis://h/0", "queues": ["x"]})
    with pytest.raises(InputError, match="run_ttl"):
        RQConfig.from_dict({"result_ttl": 100, "run_ttl": 10})
    with pytest.raises(InputError, match="queue"):
        RQConfig.from_dict({"queue": "bad queue"})
    cfg = RQConfig.from_dict({"redis_url": "redis://:hunter2@redis:6379/0",
                              "workflows": {"orders": {"partitions": 3, "queue": "ingest"}, "events": None}})
    assert cfg.queues() == ["cutover", "ingest"]
    assert cfg.public_url == "redis://:***@redis:6379/0"
    assert cfg.as_dict(public=True)["redis_url"] == "redis://:***@redis:6379/0"
    p = cfg.save(settings)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600  # it holds a password
    assert RQConfig.load(settings).workflow("orders").partitions == 3
    assert RQConfig.load(settings).workflow("events").partitions == 2  # default_partitions
    assert managed_ids(settings) == {"orders", "events"}
    assert [s["name"] for s in steps_for(settings, "orders")] == ["discover", "ingest-0", "ingest-1", "ingest-2",
                                                                  "publish"]
    assert steps_for(settings, "other") is None
    monkeypatch.setenv(ENV_URL, "redis://:other@elsewhere:6380/1")
    assert RQConfig.load(settings).url == "redis://:other@elsewhere:6380/1"


def test_cli_help_lists_rq_without_importing_redis():
    import subprocess
    import sys

    from tests.helpers import ROOT

    code = ("import sys; from cutover.cli import main\n"
            "try:\n    main(['rq', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('LOADED', [m for m in ('rq', 'redis', 'prefect', 'pyarrow') if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "pause" in r.stdout and "worker" in r.stdout, r.stdout + r.stderr
    assert "LOADED []" in r.stdout, r.stdout


# -- holds and kickoffs on a real Redis ----------------------------------------------------------------

def _registry(rw, queue=None):
    from rq import Queue
    from rq.registry import ScheduledJobRegistry

    return ScheduledJobRegistry(queue=Queue(queue or rw.config.queue, connection=rw.session.client()))


def _scheduled(rw, iid):
    """{job id: epoch} of the ingestion's kickoffs in RQ's ScheduledJobRegistry."""
    reg = _registry(rw)
    conn = rw.session.client()
    pat = f"{rw.config.job_ns}-start-{iid}-"
    return {j.decode(): int(s) for j, s in conn.zrange(reg.key, 0, -1, withscores=True)
            if j.decode().startswith(pat)}


@pytest.mark.rq
def test_hold_moves_the_kickoff_out_of_the_registry_and_back_exactly(rq_ws, tmp_path):
    from cutover.protocol import CREATED, UNCHANGED, UPDATED

    ws = rq_ws.ws
    ing, _ = _ingestion(ws, "orders", tmp_path / "src")
    a = rq_ws.adapter()
    assert a.ensure_job(ing) == CREATED
    assert a.ensure_job(ing) == UNCHANGED
    before = _scheduled(rq_ws, "orders")
    (jid, at), = before.items()
    fire = datetime.fromtimestamp(at, UTC)
    assert fire > datetime.now(UTC) and (fire.month, fire.day, fire.hour, fire.minute) == (1, 1, 3, 0)

    assert a.pause("orders") is True
    assert _scheduled(rq_ws, "orders") == {}  # out of the registry: the RQ scheduler cannot start it
    conn = rq_ws.session.client()
    held = {j.decode(): int(s) for j, s in conn.zrange(a.store.k_held("orders"), 0, -1, withscores=True)}
    assert held == before
    assert conn.exists(f"rq:job:{jid}")  # the job itself is kept, to be put back
    (job,) = a.list_jobs()
    assert job.paused and job.next_run_time is None
    assert a.pause("orders") is False  # idempotent
    assert a.ensure_job(ing) == UNCHANGED  # ensure_job never un-pauses
    assert a.is_paused("orders") is True

    assert a.resume("orders") is True
    assert _scheduled(rq_ws, "orders") == before  # the same job, at the same time
    assert a.resume("orders") is False
    assert not conn.exists(a.store.k_held("orders"))

    # a schedule change while held: the kickoff moves to the new time, and stays held
    a.pause("orders")
    from dataclasses import replace

    changed = replace(ing, schedule={"cron": "30 4 2 1 *"})
    assert a.ensure_job(changed) == UPDATED
    assert _scheduled(rq_ws, "orders") == {}
    (new_jid,) = [j.decode() for j in conn.zrange(a.store.k_held("orders"), 0, -1)]
    assert new_jid != jid and not conn.exists(f"rq:job:{jid}")
    assert a.resume("orders")
    assert list(_scheduled(rq_ws, "orders")) == [new_jid]


@pytest.mark.rq
def test_a_kickoff_whose_time_passed_while_held_is_replaced_by_the_next_fire_time(rq_ws, tmp_path):
    ws = rq_ws.ws
    ing, _ = _ingestion(ws, "orders", tmp_path / "src", schedule={"trigger": "cron", "minute": "*/5"})
    a = rq_ws.adapter()
    a.ensure_job(ing)
    a.pause("orders")
    conn = rq_ws.session.client()
    # as if the hold had lasted an hour: the held kickoff is one whose fire time is gone
    d = a.definition("orders")
    a.store.remove_kickoffs(d)
    past = datetime.fromtimestamp((int(time.time()) - 3600) // 300 * 300, UTC)
    jid = a.store.place_kickoff(d, past)
    assert [j.decode() for j in conn.zrange(a.store.k_held("orders"), 0, -1)] == [jid]
    assert a.resume("orders") is True
    (new_jid, at), = _scheduled(rq_ws, "orders").items()
    assert new_jid != jid and not conn.exists(f"rq:job:{jid}")
    assert time.time() < at <= time.time() + 300 and at % 300 == 0  # the next */5 from now, not a catch-up


@pytest.mark.rq
def test_a_kickoff_placed_while_held_lands_in_the_held_set(rq_ws, tmp_path):
    """The worker's kickoff places the next one in a transaction WATCHing the hold: never in the
    registry of a held ingestion."""
    ws = rq_ws.ws
    ing, _ = _ingestion(ws, "orders", tmp_path / "src")
    a = rq_ws.adapter()
    a.ensure_job(ing)
    a.pause("orders")
    d = a.definition("orders")
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    jid = a.store.place_kickoff(d, at)
    assert jid not in _scheduled(rq_ws, "orders")
    conn = rq_ws.session.client()
    assert conn.zscore(a.store.k_held("orders"), jid) == int(at.timestamp())
    assert a.store.place_kickoff(d, at) == jid  # idempotent by its id


@pytest.mark.rq
def test_trigger_is_refused_while_held_batch_paused_or_fenced(rq_ws, tmp_path):
    from cutover.core.state import fence
    from legacy.batch.orchestrator import IngestionPaused

    ws = rq_ws.ws
    ing, _ = _ingestion(ws, "orders", tmp_path / "src", n_files=1)
    a = rq_ws.adapter()
    a.ensure_job(ing)
    a.pause("orders")
    with pytest.raises(IngestionPaused, match="held"):
        a.trigger("orders")
    a.resume("orders")
    ws.ingestions.set_batch_paused("orders", True)
    with pytest.raises(IngestionPaused, match="paused on the legacy side"):
        a.trigger("orders")
    ws.ingestions.set_batch_paused("orders", False)
    fence.raise_fence(ws.state_engine, "snap1", reason="drill", ids=None)
    with pytest.raises(IngestionPaused, match="fenced"):
        a.trigger("orders")
    fence.lift(ws.state_engine, "snap1")
    assert a.store.run_ids("orders") == []  # nothing was enqueued


@pytest.mark.rq
def test_hold_and_schedule_survive_a_redis_restart_with_aof(workspace_env, tmp_path):
    """With appendonly (what docs/rq.md asks of a production Redis) the hold, the held kickoff and
    the definition are still there after Redis restarts."""
    from cutover.core.workspace import Workspace
    from legacy.rq.adapter import RQAdapter
    from legacy.rq.model import RQConfig
    from legacy.rq.server import RedisServer, RedisUnavailable

    try:
        srv = RedisServer(tmp_path / "redis", persistence=True).start()
    except RedisUnavailable as e:
        pytest.fail(f"Redis not available: {e} (run `sh scripts/ensure-redis`; `make test` does)", pytrace=False)
    try:
        ws = Workspace()
        ing, _ = _ingestion(ws, "orders", tmp_path / "src")
        cfg = RQConfig(redis_url=srv.url, queue="persist-test")
        a = RQAdapter(ws, cfg)
        a.ensure_job(ing)
        a.pause("orders", reason="maintenance window")
        held_before = a.store.kickoffs(a.definition("orders"))
        a.close()
        srv.stop(remove=False)
        srv.start()
        b = RQAdapter(ws, cfg)
        assert b.is_paused("orders") is True
        assert b.store.hold_info("orders")["reason"] == "maintenance window"
        assert b.store.kickoffs(b.definition("orders")) == held_before
        assert b.resume("orders") is True
        b.close()
    finally:
        srv.stop()


# -- workflow runs on the real workers ----------------------------------------------------------------


def _jobs(rw, run_id):
    from rq.job import Job

    a = rw.adapter()
    ids = a.run_state(run_id)["jobs"]
    return {n: Job.fetch(j, connection=rw.session.client()) for n, j in ids.items()}


@pytest.mark.rq
def test_workflow_run_ingests_every_file_once_with_parallel_partitions(rq_ws, tmp_path):
    from cutover.core.iceberg import P_ORCH, P_RUN

    ws = rq_ws.ws
    _with_workflows(rq_ws, orders={"partitions": 3})
    ing, files = _ingestion(ws, "orders", tmp_path / "src", n_files=6)
    a = rq_ws.adapter()
    a.ensure_job(ing)
    run_id = a.trigger("orders", wait=True, timeout=90)
    rec = ws.runs.get(run_id)
    assert (rec.status, rec.files_processed, rec.records_ingested) == ("SUCCESS", 6, sum(files.values()))
    assert rec.orchestrator == "legacy" and rec.mode == "live" and rec.trigger == "manual"
    assert rec.external_id == f"rq:{rq_ws.config.job_ns}-{run_id}-discover"
    entries = a.read_ledger("orders", "live")
    assert sorted(e.path for e in entries) == sorted(files) and {e.status for e in entries} == {"SUCCESS"}
    snaps = [s for s in ws.catalog.ancestry(ws.catalog.find(ing.table), "main")]
    tagged = [s.properties for s in snaps if s.properties.get(P_RUN) == run_id]
    # one batch commit per non-empty partition, each file its own data file recorded in the ledger
    assert 1 <= len(tagged) <= 3 and {p[P_ORCH] for p in tagged} == {"legacy"} and all("cutover.batch" in p for p in tagged)
    assert {e.batch_id for e in entries} == {p["cutover.batch"] for p in tagged}
    from tests.helpers import check_exactly_once

    check_exactly_once(ws, ing, files)
    # RQ ran the DAG: every job finished, the ingest partitions on both workers at the same time
    jobs = _jobs(rq_ws, run_id)
    assert {n: str(j.get_status().value) for n, j in jobs.items()} == {n: "finished" for n in jobs}
    ing_jobs = [jobs[f"ingest-{i}"] for i in range(3)]
    assert max(j.started_at for j in ing_jobs) >= jobs["discover"].ended_at
    assert jobs["publish"].started_at >= max(j.ended_at for j in ing_jobs)
    overlaps = [(x.worker_name, y.worker_name) for x in ing_jobs for y in ing_jobs
                if x is not y and x.started_at < y.ended_at and y.started_at < x.ended_at]
    assert overlaps and all(wx != wy for wx, wy in overlaps), "no two ingest partitions ran at the same time"
    # read_runs sees it; a second run finds nothing new; new files only are processed
    assert [r.id for r in a.read_runs(ingestion_id="orders")] == [run_id]
    again = a.trigger("orders", wait=True, timeout=60)
    assert ws.runs.get(again).files_processed == 0 and ws.runs.get(again).status == "SUCCESS"
    more = write_csv_files(tmp_path / "src", 2, start=100)
    third = a.trigger("orders", wait=True, timeout=60)
    assert ws.runs.get(third).files_processed == 2 and ws.runs.get(third).records_ingested == sum(more.values())
    assert len(a.read_ledger("orders", "live")) == 8


@pytest.mark.rq
def test_a_failing_step_fails_the_run_and_publish_still_closes_it(rq_ws, tmp_path):
    ws = rq_ws.ws
    ing, _ = _ingestion(ws, "orders", tmp_path / "missing-source")
    a = rq_ws.adapter()
    a.ensure_job(ing)
    run_id = a.trigger("orders", wait=True, timeout=60)
    rec = ws.runs.get(run_id)
    assert rec.status == "FAILED" and "does not exist" in rec.error
    state = a.run_state(run_id)
    assert state["step:discover"] == "failed"
    assert {state["step:ingest-0"], state["step:ingest-1"]} == {"upstream_failed"}
    jobs = _jobs(rq_ws, run_id)
    assert jobs["discover"].get_status().value == "failed"  # in RQ's FailedJobRegistry, with its traceback
    from rq.registry import FailedJobRegistry

    assert jobs["discover"].id in FailedJobRegistry(queue=__import__("rq").Queue(rq_ws.config.queue,
                                                                                   connection=a.conn))
    assert jobs["publish"].get_status().value == "finished"
    (seen,) = a.read_runs(ingestion_id="orders")
    assert seen.status == "FAILED"


@pytest.mark.rq
def test_cancel_is_cooperative_between_steps(rq_ws, tmp_path):
    """Runs on a queue no session worker listens to, driven by an in-process SimpleWorker job by job."""
    from rq import SimpleWorker

    ws = rq_ws.ws
    _with_workflows(rq_ws, orders={"partitions": 2, "queue": "cutover-test-manual"})
    ing, files = _ingestion(ws, "orders", tmp_path / "src", n_files=4)
    a = rq_ws.adapter()
    a.ensure_job(ing)
    w = SimpleWorker(["cutover-test-manual"], connection=a.conn)

    # cancelled before discover: no run record, RQ-only CANCELLED run
    first = a.trigger("orders")
    assert a.cancel_running("orders") == 1
    assert a.cancel_running("orders") == 0  # already flagged
    w.work(burst=True)
    assert ws.runs.find(first) is None
    (seen,) = [r for r in a.read_runs(ingestion_id="orders") if r.id == first]
    assert seen.status == "CANCELLED"

    # cancelled after discover: the partitions stop before their first file, publish closes CANCELLED
    second = a.trigger("orders")
    w.work(burst=True, max_jobs=1)  # discover only
    assert ws.runs.get(second).status == "RUNNING"
    assert a.cancel_running("orders") == 1
    w.work(burst=True)
    rec = ws.runs.get(second)
    assert rec.status == "CANCELLED" and rec.files_processed == 0
    assert a.read_ledger("orders", "live") == []  # nothing claimed, nothing left PROCESSING
    third = a.trigger("orders")
    w.work(burst=True)
    assert ws.runs.get(third).files_processed == 4


@pytest.mark.rq
@pytest.mark.slow
def test_the_rq_scheduler_fires_kickoffs_and_chains_the_next_one(rq_ws, tmp_path):
    ws = rq_ws.ws
    ing, files = _ingestion(ws, "ticker", tmp_path / "src", n_files=2,
                            schedule={"trigger": "interval", "seconds": 3})
    a = rq_ws.adapter()
    a.ensure_job(ing)
    deadline = time.monotonic() + 30
    recs = []
    while time.monotonic() < deadline:
        recs = [r for r in ws.runs.list(ingestion_id="ticker") if r.status != "RUNNING"]
        if recs:
            break
        time.sleep(0.3)
    assert recs, "no scheduled run within 30 s"
    assert recs[-1].trigger == "scheduled" and recs[-1].status == "SUCCESS" and recs[-1].files_processed == 2
    # the chain goes on: one kickoff, in the future; hold it, and no run starts any more
    ks = a.store.kickoffs(a.definition("ticker"))
    assert len(ks) == 1 and not ks[0].held
    assert a.pause("ticker")
    time.sleep(1.0)  # a kickoff already taken by a worker finishes (and is skipped by the hold)
    n = len(a.store.run_ids("ticker"))
    time.sleep(4.5)
    assert len(a.store.run_ids("ticker")) == n, "a held ingestion got a new run"


@pytest.mark.rq
def test_the_engine_legacy_side_routes_rq_workflows_to_rq(rq_ws, tmp_path):
    """LiveSides picks the RQ-aware legacy side when rq.json exists: RQ workflows are paused by the
    hold and the batch flag and run through RQ's workers; other ingestions stay on APScheduler/batch."""
    from cutover.registry.sides import LiveSides

    ws = rq_ws.ws
    _with_workflows(rq_ws, orders={"partitions": 2})
    ing, files = _ingestion(ws, "orders", tmp_path / "orders", n_files=2)
    _ingestion(ws, "plain", tmp_path / "plain", n_files=1)
    side = LiveSides(ws, start_prefect=False).legacy()
    assert type(side.base).__name__ == "RQLegacySide"  # under the generic-jobs wrapper (cutover.registry.jobsides)
    assert side.ensure_job(ing) == "created"
    assert side.rq.is_paused("orders") is False
    assert ws.runs.get(side.run_now("orders")).external_id.startswith("rq:")  # ran by the RQ workers
    assert ws.runs.get(side.run_now("plain")).external_id is None  # the batch orchestrator, in-process
    assert side.pause("orders") is True
    assert side.rq.is_paused("orders") is True and ws.ingestions.get("orders").batch_paused
    state = side.live_state()
    assert state["orders"] == {"live": False, "text": "paused (RQ hold)"}
    assert state["plain"]["live"] is True
    from legacy.batch.orchestrator import IngestionPaused

    with pytest.raises(IngestionPaused):
        side.run_now("orders")
    assert side.resume("orders") is True and side.resume("orders") is False
    assert side.live_state()["orders"] == {"live": True, "text": "RQ workflow scheduled"}
    assert side.rq.remove_job("orders")
    assert side.resume("orders") is True  # no definition any more: put back from the inventory
    assert side.rq.is_paused("orders") is False
    assert "apscheduler" not in {j.orchestrator for j in side.list_jobs() if j.ingestion_id == "orders"}


# -- the CLI ---------------------------------------------------------------------------------------


@pytest.mark.rq
def test_cli_import_sync_jobs_pause_resume_and_dry_runs_change_nothing(rq_ws, tmp_path, capsys):
    import yaml

    ws = rq_ws.ws
    pw = rq_ws.session.password
    src = tmp_path / "src"
    write_csv_files(src, 3)
    defs = tmp_path / "defs.yaml"
    defs.write_text(yaml.safe_dump({"ingestions": [
        {"id": "orders", "source_uri": str(src), "pattern": "*.csv", "format": "csv", "table": "rqt.orders",
         "schedule": {"cron": "0 3 1 1 *"}}]}))
    setup = tmp_path / "rq.yaml"
    setup.write_text(yaml.safe_dump({"queue": rq_ws.config.queue, "key_prefix": rq_ws.config.key_prefix,
                                     "workflows": {"orders": {"partitions": 2}}}))
    conn = rq_ws.session.client()

    def dump():
        return sorted(k.decode() for k in conn.scan_iter(match=f"{rq_ws.config.key_prefix}:*"))

    code, out, err = _cli(capsys, "rq", "import", "--config", str(setup), "--definitions", str(defs), "--dry-run")
    assert code == 0, err
    assert "would create: orders" in out and "Dry run" in out
    assert dump() == [] and ws.ingestions.find("orders") is None
    code, out, err = _cli(capsys, "rq", "import", "--config", str(setup), "--definitions", str(defs),
                          "--redis-url", rq_ws.session.url)
    assert code == 0, err
    assert "synced: orders create" in out
    assert pw not in out + err and "redis://:***@" in out
    code, out, err = _cli(capsys, "rq", "jobs", "--json")
    assert code == 0, err
    (job,) = json.loads(out)["jobs"]
    assert job["held"] is False and job["dag"] == "discover -> [ingest-0 | ingest-1] -> publish"
    before = dump()
    code, out, err = _cli(capsys, "rq", "pause", "orders", "--dry-run")
    assert code == 0 and "would hold" in out and dump() == before
    kick_before = _scheduled(rq_ws, "orders")
    code, out, err = _cli(capsys, "rq", "pause", "orders", "--reason", "drill")
    assert code == 0 and "orders: held" in out
    code, out, err = _cli(capsys, "rq", "run", "orders")
    assert code == 1 and "held" in err  # refused: exit 1 (a gate said no), one line
    assert len(err.strip().splitlines()) == 1
    code, out, err = _cli(capsys, "rq", "resume", "--all")
    assert code == 0 and "orders: resumed" in out
    assert _scheduled(rq_ws, "orders") == kick_before
    code, out, err = _cli(capsys, "rq", "run", "orders", "--dry-run")
    assert code == 0 and "would enqueue" in out and rq_ws.adapter().store.run_ids("orders") == []
    code, out, err = _cli(capsys, "rq", "run", "orders", "--timeout", "90s")
    assert code == 0, out + err
    assert "SUCCESS: 3 file(s)" in out
    code, out, err = _cli(capsys, "rq", "runs", "orders", "--json")
    assert code == 0 and json.loads(out)[0]["status"] == "SUCCESS"
    code, out, err = _cli(capsys, "rq", "status")
    assert code == 0, out + err
    assert "live worker(s)" in out and pw not in out + err
    code, out, err = _cli(capsys, "rq", "sync", "--dry-run")
    assert code == 0 and "unchanged: orders" in out


@pytest.mark.rq
@pytest.mark.parametrize("args, message", [
    (["rq", "pause"], "no ingestion named"),
    (["rq", "pause", "x", "--all"], "both ingestion ids and --all"),
    (["rq", "run", "nope"], "no RQ workflow definition"),
    (["rq", "sync", "nope"], "no RQ workflow in"),
    (["rq", "runs", "--since", "soon"], "--since"),
])
def test_cli_bad_input_is_one_line_exit_2(rq_ws, capsys, args, message):
    code, out, err = _cli(capsys, *args)
    assert code == 2, (code, out, err)
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_cli_without_rq_setup_says_how_to_make_one(workspace_env, capsys):
    code, out, err = _cli(capsys, "rq", "jobs")
    assert code == 2 and "cutover rq import --config" in err


def test_cli_import_refuses_a_password_in_a_bad_url_without_showing_it(workspace_env, tmp_path, capsys):
    setup = tmp_path / "rq.json"
    setup.write_text(json.dumps({"redis_url": "http://:s3cr3t-pw@h:1/0", "workflows": {"x": {}}}))
    code, out, err = _cli(capsys, "rq", "import", "--config", str(setup), "--dry-run")
    assert code == 2 and "s3cr3t-pw" not in out + err and "not a Redis URL" in err
