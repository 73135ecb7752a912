"""`cutover pause` / `cutover resume` against the real parts: APScheduler job store, the batch flags,
a real Prefect server and process worker (the session's).

(c) 10 ingestions with some schedules paused before the incident (a deployment paused, a schedule
    inactive, an APScheduler job paused, a batch flag set, a work queue paused): after
    pause --all and resume --snapshot exactly those stay paused, everything else is active again;
    while paused, `cutover status` reports what is un-paused behind the snapshot's back (exit 1);
(d) runs that became due behind the pool fence: --late-runs skip lets none start, run-once exactly one;
(e) --dry-run of pause and resume changes nothing (full store dumps);
(f) with the Prefect API down, pause fences and pauses the legacy side, exits 3, and the same
    command completes the same snapshot once the API answers;
plus the legacy fence itself, without Prefect.
"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.prefect_fixtures import prefect_cleanup, prefect_env, prefect_server  # noqa: F401
from tests.helpers import dump_stores as dump
from tests.helpers import cutover_cli as cli

prefect_marks = [pytest.mark.slow, pytest.mark.prefect]


def setup_shadow(tmp_path: Path, ids: list[str], cleanup, *, schedule=True) -> None:
    """Ingestions (daily at 03:17, or manual), their APScheduler jobs, one legacy run, shadow deployments active."""
    import yaml

    items = []
    for n, iid in enumerate(ids):
        src = tmp_path / "src" / iid
        src.mkdir(parents=True, exist_ok=True)
        (src / "a.csv").write_text("id,v\n" + "".join(f"{n * 100 + i},{i}\n" for i in range(3)))
        item = {"id": iid, "source_uri": str(src), "pattern": "*.csv", "format": "csv",
                "table": f"t.{iid.replace('-', '_')}", "timezone": "UTC"}
        if schedule:
            item["schedule"] = {"frequency": "daily", "at": "03:17"}
        items.append(item)
        cleanup(iid)
    (tmp_path / "defs.yaml").write_text(yaml.safe_dump({"ingestions": items}))
    cli("ingestion", "add", "--from-file", str(tmp_path / "defs.yaml"), check=0)
    if schedule:
        cli("legacy", "sync", check=0)
    cli("legacy", "run", "--all", check=0)
    cli("shadow", "start", "--all", check=0)


@pytest.fixture
def pool_guard(prefect_server):
    """The session's work pool and queues are shared: whatever a test does, they end un-paused."""
    yield
    with prefect_server.client() as c:
        from prefect.client.schemas.actions import WorkPoolUpdate

        c.update_work_pool("cutover", WorkPoolUpdate(is_paused=False))
        for q in ("default", "high-memory", "priority"):
            wq = c.read_work_queue_by_name(q, work_pool_name="cutover")
            if wq.is_paused:
                c.update_work_queue(wq.id, is_paused=False)
    from cutover.core.state import fence
    from cutover.core.workspace import Workspace

    f = fence.read(Workspace().state_engine)
    if f:
        fence.lift(Workspace().state_engine, f["snapshot"])


def states_now(url: str, ids: list[str]) -> dict:
    """Every schedule state this test cares about, on both sides."""
    from prefect.client.schemas.sorting import DeploymentSort

    from flows.http import client
    from cutover.core.workspace import Workspace
    from legacy.apscheduler.scheduler import JobSync

    ws = Workspace()
    out = {"deployments": {}, "schedules": {}}
    with client(url) as c:
        for d in c.read_deployments(limit=200, sort=DeploymentSort.NAME_ASC):
            if any(t in d.tags for t in (f"ingestion:{i}" for i in ids)):
                out["deployments"][d.name] = d.paused
                out["schedules"][d.name] = [s.active for s in d.schedules]
        pool = c.read_work_pool("cutover")
        out["pool"] = pool.is_paused
        from prefect.client.schemas.filters import WorkQueueFilter

        out["queues"] = {q.name: q.is_paused for q in c.read_work_queues(
            work_pool_name="cutover", work_queue_filter=WorkQueueFilter(), limit=200, offset=0)}
    out["jobs"] = {j.ingestion_id: j.paused for j in JobSync(ws.settings).jobs() if j.ingestion_id in ids}
    out["batch"] = {i.id: i.batch_paused for i in ws.ingestions.list() if i.id in ids}
    return out


# -- the fence alone ----------------------------------------------------------------------------

def test_legacy_fence_stops_scheduled_and_batch_runs(workspace_env, tmp_path):
    from cutover.core.state import fence
    from cutover.core.workspace import Workspace
    from legacy.batch.orchestrator import BatchOrchestrator, IngestionPaused
    from legacy.apscheduler.scheduler import run_scheduled

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.csv").write_text("id\n1\n")
    cli("ingestion", "add", "f-a", "--source", str(src), "--pattern", "*.csv", "--format", "csv", "--table", "t.f_a",
        check=0)
    cli("ingestion", "add", "f-b", "--source", str(src), "--pattern", "*.csv", "--format", "csv", "--table", "t.f_b",
        check=0)
    ws = Workspace()
    assert fence.raise_fence(ws.state_engine, "snap1", reason="drill", ids=["f-a"]) is True
    assert fence.raise_fence(ws.state_engine, "snap1", reason="drill", ids=["f-a"]) is False  # idempotent
    with pytest.raises(ValueError):
        fence.raise_fence(ws.state_engine, "snap2", reason="other", ids=None)
    assert run_scheduled("f-a") is None  # the APScheduler job body skips
    with pytest.raises(IngestionPaused, match="fenced by pause snapshot snap1"):
        BatchOrchestrator(ws).run_ingestion("f-a")
    res = cli("legacy", "run", "f-a")
    assert res.returncode == 1 and "fenced by pause snapshot snap1 (drill)" in res.stderr
    assert BatchOrchestrator(ws).run_ingestion("f-b").status == "SUCCESS"  # not in the fence's scope
    assert ws.runs.list(ingestion_id="f-a") == []
    assert fence.lift(ws.state_engine, "snap1") is True
    assert run_scheduled("f-a") is not None
    assert ws.runs.list(ingestion_id="f-a")[0].status == "SUCCESS"


# -- (c) + (e) ---------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.prefect
def test_pause_all_then_resume_restores_exactly(prefect_server, prefect_env, prefect_cleanup, pool_guard, tmp_path):
    home = prefect_env
    ids = [f"pz-{k}" for k in range(10)]
    setup_shadow(tmp_path, ids, prefect_cleanup)
    from cutover.core.workspace import Workspace
    from legacy.apscheduler.scheduler import JobSync

    ws = Workspace()
    url = prefect_server.url
    # 10% paused before the incident, on each side
    with prefect_server.client() as c:
        d0 = c.read_deployment_by_name("cutover-ingest/pz-0-shadow")
        c.pause_deployment(d0.id)
        d1 = c.read_deployment_by_name("cutover-ingest/pz-1-shadow")
        c.update_deployment_schedule(d1.id, d1.schedules[0].id, active=False)
        hm = c.read_work_queue_by_name("high-memory", work_pool_name="cutover")
        c.update_work_queue(hm.id, is_paused=True)
    assert JobSync(ws.settings).pause("pz-2") is True
    ws.ingestions.set_batch_paused("pz-3", True)
    before = states_now(url, ids)
    assert before["deployments"]["pz-0-shadow"] is True and before["schedules"]["pz-1-shadow"] == [False]
    assert before["jobs"]["pz-2"] is True and before["batch"]["pz-3"] is True and before["queues"]["high-memory"]
    assert before["pool"] is False and sum(before["deployments"].values()) == 1

    # (e) --dry-run: counts, nothing changed
    d_before = dump(home, url)
    res = cli("pause", "--all", "--dry-run", check=0)
    assert "would snapshot and pause 10 ingestion(s)" in res.stdout
    assert "10 deployment(s), 9 to pause (1 already paused" in res.stdout
    assert "10 job(s), 9 to pause" in res.stdout and "9 flag(s) to set" in res.stdout
    assert dump(home, url) == d_before

    res = cli("pause", "--all", "--reason", "catalog outage", check=0)
    snap = res.stdout.strip().splitlines()[-1]
    assert len(snap) == 12 and "fenced" in res.stderr and "durable" in res.stderr
    during = states_now(url, ids)
    assert during["pool"] is True and all(during["deployments"].values()) and all(during["jobs"].values())
    assert all(during["batch"].values())
    assert during["schedules"] == before["schedules"] and during["queues"] == before["queues"]
    res = cli("legacy", "run", "pz-5")
    assert res.returncode == 1
    st = json.loads(cli("status", "--json", check=0).stdout)
    assert st["active_pause"]["id"] == snap and st["unpaused_behind_snapshot"] == []
    lst = json.loads(cli("pause", "list", "--json", check=0).stdout)
    assert lst[0]["id"] == snap and lst[0]["status"] == "ACTIVE" and lst[0]["durable_at"] and lst[0]["safe_at"]

    # un-paused behind the snapshot's back: `cutover status` says so, exit 1
    with prefect_server.client() as c:
        c.resume_deployment(c.read_deployment_by_name("cutover-ingest/pz-4-shadow").id)
    assert JobSync(ws.settings).resume("pz-6") is True
    res = cli("status", "--json")
    assert res.returncode == 1
    st = json.loads(res.stdout)
    items = {(d["kind"], d["item"]) for d in st["unpaused_behind_snapshot"]}
    assert items == {("prefect deployment", "pz-4-shadow"), ("apscheduler job", "pz-6")}
    rows = {r["id"]: r for r in st["ingestions"]}
    assert "un-paused behind pause snapshot" in rows["pz-4"]["problem"] and rows["pz-5"]["invariant_ok"]
    # the same pause again re-asserts it (same snapshot)
    res = cli("pause", "--all", "--reason", "catalog outage", check=0)
    assert res.stdout.strip().splitlines()[-1] == snap and "re-asserted: 2 item(s)" in res.stderr
    assert cli("status").returncode == 0

    # (e) resume --dry-run changes nothing
    d_before = dump(home, url)
    res = cli("resume", "--snapshot", snap, "--dry-run", check=0)
    assert "9 deployment(s) to resume" in res.stdout and "9 job(s) to resume" in res.stdout
    assert dump(home, url) == d_before

    t_resume = datetime.now(timezone.utc)
    res = cli("resume", "--snapshot", snap, check=0)
    assert "9 deployment(s) resumed" in res.stdout
    after = states_now(url, ids)
    assert after == before
    # resumed jobs fire at their next correct time from now (daily 03:17 UTC), not at a stale one
    jobs = {j.ingestion_id: j for j in JobSync(ws.settings).jobs()}
    nxt = t_resume.replace(hour=3, minute=17, second=0, microsecond=0)
    if nxt <= t_resume:
        nxt += timedelta(days=1)
    assert {jobs[i].next_run_time for i in ids if i != "pz-2"} == {nxt}
    res = cli("resume", "--snapshot", snap, check=0)  # a second resume is a no-op
    assert "already resumed" in res.stdout
    assert states_now(url, ids) == before
    lst = json.loads(cli("pause", "list", "--json", check=0).stdout)
    assert lst[0]["status"] == "RESUMED" and lst[0]["resumed_at"]
    con = sqlite3.connect(home / "state.db")
    assert con.execute("select count(*) from locks").fetchone()[0] == 0  # no fence, no lock left
    con.close()


# -- (d) ---------------------------------------------------------------------------------------

def _late_runs(client, dep_id, safe_at: datetime, n: int = 3) -> list:
    """n flow runs of the deployment that became due behind the fence (start times after it, in the past)."""
    from prefect.states import Scheduled

    now = datetime.now(timezone.utc)
    assert now - safe_at > timedelta(seconds=0.5)
    step = (now - safe_at) / (n + 1)
    return [client.create_flow_run_from_deployment(dep_id, state=Scheduled(scheduled_time=safe_at + step * (k + 1)))
            for k in range(n)]


def _wait_final(client, ids, timeout=120.0):
    deadline = time.monotonic() + timeout
    while True:
        runs = {str(i): client.read_flow_run(i) for i in ids}
        if all(r.state and r.state.is_final() for r in runs.values()) or time.monotonic() > deadline:
            return {k: r.state.type.value for k, r in runs.items()}
        time.sleep(1)


@pytest.mark.slow
@pytest.mark.prefect
def test_late_runs_skip_and_run_once(prefect_server, prefect_env, prefect_cleanup, pool_guard, tmp_path):
    setup_shadow(tmp_path, ["late-a"], prefect_cleanup, schedule=False)  # manual: no auto-scheduled runs
    with prefect_server.client() as c:
        dep = c.read_deployment_by_name("cutover-ingest/late-a-shadow")
    for policy, expect_started in (("skip", 0), ("run-once", 1)):
        res = cli("pause", "--all", "--reason", f"late runs {policy}", "--json", check=0)
        snap = json.loads(res.stdout)
        safe_at = datetime.fromisoformat(snap["snapshot"]["safe_at"])
        time.sleep(1.5)
        with prefect_server.client() as c:
            runs = _late_runs(c, dep.id, safe_at)
            time.sleep(4)  # a worker polls every 2 s: nothing may start behind the fence
            assert {c.read_flow_run(r.id).state.type.value for r in runs} == {"SCHEDULED"}
        args = ["resume", "--snapshot", snap["snapshot_id"], "--json"] + (["--late-runs", policy] if policy != "skip" else [])
        out = json.loads(cli(*args, check=0).stdout)
        newest = str(runs[-1].id)
        if policy == "skip":
            assert sorted(out["late_runs"]["cancelled"]) == sorted(str(r.id) for r in runs)
            assert out["late_runs"]["kept"] == []
        else:
            assert out["late_runs"]["kept"] == [newest]
            assert sorted(out["late_runs"]["cancelled"]) == sorted(str(r.id) for r in runs[:-1])
        with prefect_server.client() as c:
            assert c.read_work_pool("cutover").is_paused is False
            if expect_started:
                final = _wait_final(c, [r.id for r in runs])
            else:
                time.sleep(6)  # the pool is un-paused: give the worker time to (not) pick anything up
                final = {str(r.id): c.read_flow_run(r.id).state.type.value for r in runs}
            for r in runs:  # whatever was cancelled never went Pending or Running
                if final[str(r.id)] == "CANCELLED":
                    history = {st.type.value for st in c.read_flow_run_states(r.id)}
                    assert history <= {"SCHEDULED", "CANCELLED"}, history
                    assert c.read_flow_run(r.id).run_count == 0
        started = [k for k, v in final.items() if v != "CANCELLED"]
        assert len(started) == expect_started, final
        if expect_started:
            assert started == [newest] and final[newest] in ("COMPLETED", "FAILED")


# -- (f) ---------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.prefect
def test_pause_with_prefect_down_then_completed(prefect_server, prefect_env, prefect_cleanup, pool_guard, tmp_path):
    ids = ["dw-a", "dw-b"]
    setup_shadow(tmp_path, ids, prefect_cleanup)
    before = states_now(prefect_server.url, ids)
    dead = {"PREFECT_API_URL": "http://127.0.0.1:9/api"}
    res = cli("pause", "--all", "--reason", "prefect outage", env_extra=dead)
    assert res.returncode == 3, (res.stdout, res.stderr)
    snap = res.stdout.strip().splitlines()[-1]
    assert "NOT DONE" in res.stderr and "unreachable" in res.stderr
    mid = states_now(prefect_server.url, ids)
    assert all(mid["jobs"].values()) and all(mid["batch"].values())  # the legacy side is paused ...
    assert cli("legacy", "run", "dw-a").returncode == 1  # ... and fenced
    assert mid["pool"] is False and not any(mid["deployments"].values())  # Prefect untouched
    lst = json.loads(cli("pause", "list", "--json", check=0).stdout)[0]
    assert lst["id"] == snap and lst["durable_at"] is None and lst["deployments"] is None
    res = cli("pause", "--all", "--reason", "prefect outage", check=0)  # the API is back
    assert res.stdout.strip().splitlines()[-1] == snap and "completing pause snapshot" in res.stderr
    done = states_now(prefect_server.url, ids)
    assert done["pool"] is True and all(done["deployments"].values())
    # resume with the API down: legacy restored and unfenced, the pool stays paused, exit 3
    res = cli("resume", "--snapshot", snap, env_extra=dead)
    assert res.returncode == 3
    mid = states_now(prefect_server.url, ids)
    assert mid["jobs"] == before["jobs"] and mid["batch"] == before["batch"] and mid["pool"] is True
    assert cli("legacy", "run", "dw-a").returncode == 0
    cli("resume", "--snapshot", snap, check=0)
    assert states_now(prefect_server.url, ids) == before
