"""`cutover pause --all` / `cutover resume --snapshot` stop and restore a team's own jobs (issue #15):
the callables of a team's APScheduler job store (SQLAlchemyJobStore on SQLite) and the command lines of
a crontab file, through the incident controls ``legacy.apscheduler.teamincident`` and
``legacy.cron.jobincident``. No server: the Prefect control is left out of the registry's name table
here (its part of the pause is tested in tests/test_pause.py with a real server).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from cutover import registry
from tests.test_team_import import invoke

UTC = timezone.utc
KILLED = 137
SIDES = ("legacy", "apscheduler-jobs", "cron-jobs", "rq-jobs")
CRONTAB = r"""# the team's crontab
SHELL=/bin/bash
MAILTO=data-ops@example.com

@daily /opt/etl/bin/sync_customers.sh --full >> /tmp/sync.log 2>&1
30 1 * * * echo "report #1 'done'" # a comment for the shell
0 9 * JAN-MAR MON-FRI cat % line one%line two \% literal
*/20 6-22/2 1,15 * * printf 'x\%sy'  \%s
@reboot /opt/etl/bin/warm_cache.sh
"""


@pytest.fixture(autouse=True)
def no_prefect(monkeypatch):
    """The incident controls of this workspace without Prefect's (no server in these tests)."""
    monkeypatch.setattr(registry, "INCIDENT_SIDES", {k: v for k, v in registry.INCIDENT_SIDES.items() if k in SIDES})


def build_store(path: Path) -> str:
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    url = f"sqlite:///{path}"
    s = BackgroundScheduler(jobstores={"default": SQLAlchemyJobStore(url=url)}, timezone=UTC)
    s.start(paused=True)
    try:
        s.add_job("tests.team_funcs:load_orders", CronTrigger(hour=5, minute=30, timezone="Europe/Berlin"),
                  id="orders-eu", args=["eu"], kwargs={"full": True})
        s.add_job("tests.team_funcs:sync", IntervalTrigger(hours=6, start_date=datetime(2026, 1, 1, 0, 30),
                                                            timezone="America/New_York"), id="sync-6h", args=[1, "x"])
        s.add_job("tests.team_funcs:sync", CronTrigger(day_of_week="mon-fri", hour="*/3", minute=10, timezone="UTC"),
                  id="names", misfire_grace_time=300, coalesce=False, max_instances=3)
        s.add_job("tests.team_funcs:load_orders", CronTrigger(hour=4, timezone="UTC"), id="paused-nightly",
                  args=["us"])
        s.pause_job("paused-nightly")  # paused in the team's scheduler before anything
    finally:
        s.shutdown(wait=False)
    return url


def store_rows(url: str) -> dict:
    """{store id: (next_run_time column, the state without its pickling details)}."""
    from legacy.apscheduler.jobstore import trigger_fingerprint
    from legacy.apscheduler.teamside import TeamStore

    st = TeamStore(url)
    try:
        out = {}
        for r in st.rows():
            state = dict(r.state)
            state["trigger"] = trigger_fingerprint(state["trigger"])
            out[r.id] = (r.next_run_time, state)
        return out
    finally:
        st.close()


def digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture
def team(workspace_env, tmp_path):
    """A team job store and a crontab, imported as jobs; one crontab line paused by hand afterwards."""
    from cutover.core.workspace import Workspace
    from legacy.cron.jobside import CronJobsAdapter

    url = build_store(tmp_path / "team.db")
    crontab = tmp_path / "team.crontab"
    crontab.write_text(CRONTAB)
    code, _, err = invoke("legacy", "import", "--jobstore", url, "--jobs", "--json", "--verify-days", "0")
    assert code == 0, err
    code, _, err = invoke("cron", "import", "--crontab", str(crontab), "--jobs", "--timezone", "UTC")
    assert code == 0, err
    ws = Workspace()
    cron_ids = sorted(j.id for j in ws.jobs.list() if j.legacy.get("orchestrator") == "cron")
    assert len(cron_ids) == 4
    held = cron_ids[0]
    assert CronJobsAdapter(ws, crontab).pause(held) is True  # paused by hand before the incident
    return {"home": Path(workspace_env), "url": url, "crontab": crontab, "cron_ids": cron_ids, "held": held,
            "db": tmp_path / "team.db", "rows": store_rows(url), "tab": crontab.read_bytes()}


def cron_paused(crontab: Path) -> dict[str, bool]:
    from legacy.cron.generic import read_lines

    return {ln.job_id: ln.paused for ln in read_lines(crontab.read_text()) if ln.kind == "wrapped"}


def assert_paused(team) -> None:
    rows = store_rows(team["url"])
    assert {k: v[0] for k, v in rows.items()} == {k: None for k in team["rows"]}  # every job: next_run_time NULL
    assert all(v[1]["next_run_time"] is None for v in rows.values())  # ... and in its state, as APScheduler pauses
    assert cron_paused(team["crontab"]) == {j: True for j in team["cron_ids"]}
    from legacy.cron.generic import read_lines

    crontab_jobs = [ln for ln in read_lines(team["crontab"].read_text()) if ln.kind == "job"]
    assert [ln.text for ln in crontab_jobs] == []  # cron has no job line left to run (the @reboot line is not a job)


def assert_restored(team) -> None:
    assert team["crontab"].read_bytes() == team["tab"]  # byte for byte, the hand-paused line still paused
    assert cron_paused(team["crontab"])[team["held"]] is True
    assert store_rows(team["url"]) == team["rows"]  # every next_run_time exactly; the paused job stays paused
    assert team["rows"]["paused-nightly"][0] is None


def test_the_team_controls_are_available_only_with_imported_jobs(workspace_env, tmp_path):
    from cutover.core.workspace import Workspace
    from cutover.protocol import IncidentWriter
    from legacy.apscheduler.teamincident import ORCHESTRATOR as APS
    from legacy.apscheduler.teamstore import ORCHESTRATOR as APS_SIDE
    from legacy.cron.generic import PAUSED as CRON_PAUSED
    from legacy.cron.jobimport import ORCHESTRATOR as CRON_SIDE
    from legacy.cron.jobincident import ORCHESTRATOR as CRON, PAUSED

    assert (APS, CRON, PAUSED) == (APS_SIDE, CRON_SIDE, CRON_PAUSED)
    ws = Workspace()
    assert [c.name for c in registry.incident_controls(ws, start_prefect=False)] == ["legacy"]
    crontab = tmp_path / "c"
    crontab.write_text("5 4 * * * echo hi\n")
    assert invoke("cron", "import", "--crontab", str(crontab), "--jobs", "--timezone", "UTC")[0] == 0
    controls = registry.incident_controls(Workspace(), start_prefect=False)
    assert [c.name for c in controls] == ["legacy", "cron-jobs"]
    for name in ("apscheduler-jobs", "cron-jobs", "rq-jobs"):  # every team control speaks the protocol
        module, _, cls = registry.INCIDENT_SIDES[name].partition(":")
        c = getattr(importlib.import_module(module), cls)(ws)
        assert isinstance(c, IncidentWriter) and c.name == name and c.fence_label is None
        c.close()


def test_pause_all_stops_every_team_job_and_resume_restores_exactly(team):
    import json

    files = (team["db"], team["crontab"])
    before, listing = digest(*files), sorted(p.name for p in team["crontab"].parent.iterdir())
    code, out, err = invoke("pause", "--all", "--dry-run")
    assert code == 0, err
    out += err
    assert "team APScheduler: 4 job(s), 3 to pause" in out and "team crontab: 4 line(s), 3 to comment out" in out
    assert digest(*files) == before and sorted(p.name for p in team["crontab"].parent.iterdir()) == listing

    code, out, err = invoke("pause", "--all", "--reason", "drill", "--json")
    assert code == 0, out + err
    res = json.loads(out[out.index("{"):])
    snap = res["snapshot_id"]
    assert res["counts"]["team_apscheduler_jobs"] == 4 and res["counts"]["team_apscheduler_jobs_already_paused"] == 1
    assert res["counts"]["team_crontab_lines"] == 4 and res["counts"]["team_crontab_lines_already_paused"] == 1
    assert res["problems"] == [] and res["safe_after_s"] is not None  # safe once the team's jobs are paused
    assert_paused(team)

    paused = digest(*files)
    code, out, err = invoke("resume", "--snapshot", snap, "--dry-run")
    assert code == 0, err
    out += err
    assert "team APScheduler: 3 job(s) to resume" in out and "team crontab: 3 line(s) to un-comment" in out
    assert digest(*files) == paused

    code, out, err = invoke("resume", "--snapshot", snap)
    assert code == 0, out + err
    assert ("team jobs: 3 apscheduler jobs resumed, 1 apscheduler jobs kept paused, 3 crontab lines restored, "
            "1 crontab lines kept paused") in out, out
    assert_restored(team)
    code, out, err = invoke("resume", "--snapshot", snap)  # a second resume: a no-op
    assert code == 0 and "already resumed" in out + err
    assert_restored(team)


def test_a_job_changed_or_removed_during_the_pause_is_reported_not_clobbered(team):
    import json

    from legacy.apscheduler.teamside import TeamStore
    from legacy.cron.generic import PAUSED

    code, out, err = invoke("pause", "--all", "--reason", "drill", "--json")
    assert code == 0, out + err
    snap = json.loads(out[out.index("{"):])["snapshot_id"]
    # during the incident: someone edits a commented-out crontab line, removes a job from the store,
    # and resumes another one in the team's scheduler
    edited = team["cron_ids"][1]
    text = team["crontab"].read_text().split("\n")
    i = next(k for k, line in enumerate(text) if f"--job {edited} " in line)
    assert text[i].startswith(PAUSED)
    text[i] += " #edited"
    team["crontab"].write_text("\n".join(text))
    st = TeamStore(team["url"])
    st.delete("names")
    st.set_next_run_time("sync-6h", datetime(2031, 1, 1, tzinfo=UTC))
    st.close()

    code, out, err = invoke("status", "--json")  # the drift is shown while the pause is in force
    behind = json.loads(out[out.index("{"):])["unpaused_behind_snapshot"]
    assert [(d["kind"], d["ingestion_id"]) for d in behind] == [("team apscheduler job", "sync-6h")], behind

    code, out, err = invoke("resume", "--snapshot", snap, "--json")
    assert code == 0, out + err
    notes = json.loads(out[out.index("{"):])["notes"]
    assert any(f"job {edited} was changed during the pause" in n for n in notes), notes
    assert any("job names was removed from its job store" in n for n in notes), notes
    rows = store_rows(team["url"])
    assert rows["sync-6h"][0] == datetime(2031, 1, 1, tzinfo=UTC).timestamp()  # what the person did stands
    assert rows["orders-eu"] == team["rows"]["orders-eu"]
    assert cron_paused(team["crontab"])[edited] is True  # left as it is now: commented out, edited
    assert sum(cron_paused(team["crontab"]).values()) == 2  # the hand-paused line and the edited one


# -- killed after every side effect, then run again ---------------------------------------------------

def _effects(monkeypatch, kill_after: int | None) -> list:
    """Count the side effects of the team controls (a part handed to the engine's store, a store's pause
    transaction, a store's resume transaction, a crontab file written); ``os._exit`` right after the k-th one."""
    from legacy.apscheduler import teamincident
    from legacy.cron import crontab as crontab_mod

    seen: list = []

    def effect(what):
        seen.append(what)
        if kill_after is not None and len(seen) == kill_after:
            sys.stdout.flush()
            os._exit(KILLED)

    def wrap(fn, what):
        def inner(*a, **kw):
            out = fn(*a, **kw)
            if what != "crontab edit" or out[0]:  # a crontab edit that wrote nothing is no side effect
                effect(what)
            return out
        return inner

    monkeypatch.setattr(teamincident, "_pause_rows", wrap(teamincident._pause_rows, "store pause"))
    monkeypatch.setattr(teamincident, "_resume_rows", wrap(teamincident._resume_rows, "store resume"))
    monkeypatch.setattr(crontab_mod.CrontabFile, "edit", wrap(crontab_mod.CrontabFile.edit, "crontab edit"))
    for cls in (teamincident.TeamAPSchedulerIncident, __import__("legacy.cron.jobincident",
                                                                 fromlist=["x"]).CronJobsIncident):
        orig = cls.pause_many

        def pause_many(self, ids, state, *, store, progress_stream=None, _orig=orig):
            def counted(part):
                store(part)
                effect("part stored")
            return _orig(self, ids, state, store=counted, progress_stream=progress_stream)

        monkeypatch.setattr(cls, "pause_many", pause_many)
    return seen


def in_child(home: Path, args: list[str], monkeypatch, kill_after: int | None) -> tuple[int, int]:
    """(exit code, side effects) of ``cutover ARGS`` in a forked child, killed after its k-th side effect."""
    import json

    count = home / "effects.json"
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            seen = _effects(monkeypatch, kill_after)
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 1)
                os.dup2(null.fileno(), 2)
                code = invoke(*args)[0]
            count.write_text(json.dumps(len(seen)))
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    n = json.loads(count.read_text()) if count.exists() else None
    count.unlink(missing_ok=True)
    return os.waitstatus_to_exitcode(status), n


def test_pause_and_resume_killed_after_every_side_effect_converge(team, monkeypatch):
    from cutover.core.state.snapshots import active
    from cutover.core.workspace import Workspace

    home = team["home"]
    db, tab = team["db"].read_bytes(), team["crontab"].read_bytes()

    def reset():
        team["db"].write_bytes(db)
        team["crontab"].write_bytes(tab)

    code, n_pause = in_child(home, ["pause", "--all", "--reason", "drill"], monkeypatch, None)
    assert code == 0 and n_pause == 4  # 2 parts stored, 1 store transaction, 1 crontab write
    snap = active(Workspace().state_engine).id
    code, n_resume = in_child(home, ["resume", "--snapshot", snap], monkeypatch, None)
    assert code == 0 and n_resume == 2  # 1 store transaction (3 jobs resumed), 1 crontab write
    assert_restored(team)
    for k in range(1, n_pause + 1):
        reset()
        code, _ = in_child(home, ["pause", "--all", "--reason", "drill"], monkeypatch, k)
        assert code == KILLED, k
        code, _ = in_child(home, ["pause", "--all", "--reason", "drill"], monkeypatch, None)  # completes the same snapshot
        assert code == 0, k
        assert_paused(team)
        snap = active(Workspace().state_engine).id
        code, _ = in_child(home, ["resume", "--snapshot", snap], monkeypatch, None)
        assert code == 0, k
        assert_restored(team)
    for k in range(1, n_resume + 1):
        reset()
        assert in_child(home, ["pause", "--all", "--reason", "drill"], monkeypatch, None)[0] == 0
        snap = active(Workspace().state_engine).id
        code, _ = in_child(home, ["resume", "--snapshot", snap], monkeypatch, k)
        assert code == KILLED, k
        code, _ = in_child(home, ["resume", "--snapshot", snap], monkeypatch, None)
        assert code == 0, k
        assert_restored(team)


# -- a team's RQ schedules (a real redis-server) -------------------------------------------------------

@pytest.mark.rq
def test_pause_all_holds_the_team_rq_schedules_and_resume_puts_back_the_exact_scores(workspace_env, tmp_path,
                                                                                     monkeypatch):
    import json

    import redis
    from rq import Queue
    from rq.cron import CronScheduler

    from legacy.rq.server import RedisServer, RedisUnavailable
    from legacy.rq.teamincident import HOLD, ORCHESTRATOR
    from legacy.rq.teamjobs import ORCHESTRATOR as RQ_SIDE
    from legacy.rq.teamside import HOLD as SIDE_HOLD
    from tests import team_funcs
    from tests.test_team_rq import _rq_scheduler_job

    assert (HOLD, ORCHESTRATOR) == (SIDE_HOLD, RQ_SIDE)
    try:
        srv = RedisServer(tmp_path / "redis").start()
    except RedisUnavailable as e:
        pytest.fail(f"redis-server not available: {e} (sh scripts/ensure-redis)", pytrace=False)
    try:
        url = srv.url
        conn = redis.Redis.from_url(url)
        at = datetime(2031, 2, 1, 6, 0, tzinfo=UTC)
        Queue("default", connection=conn).enqueue_at(at, team_funcs.load_orders, "eu", job_id="orders-once")
        _rq_scheduler_job(conn, "legacy-cron", "tests.team_funcs.load_orders", ("apac",), {},
                          {"cron_string": "0 3 * * *"}, datetime(2031, 12, 4, 3, tzinfo=UTC))
        _rq_scheduler_job(conn, "held-before", "tests.team_funcs.sync", (), {}, {"cron_string": "0 4 * * *"},
                          datetime(2031, 12, 4, 4, tzinfo=UTC))
        code, out, err = invoke("rq", "import-jobs", "--redis-url", url, "--shadow", "observe", "--json")
        assert code == 0, err
        monkeypatch.setenv("CUTOVER_RQ_REDIS_URL", url)
        from cutover.core.workspace import Workspace
        from cutover.registry import generic_side

        ws = Workspace()
        held = next(j.id for j in ws.jobs.list() if j.legacy.get("rq_job_id") == "held-before")
        side = generic_side("rq", ws, url)
        assert side.pause(held) is True  # held by hand before the incident
        side.close()
        keys = ("rq:scheduled:default", "rq:scheduler:scheduled_jobs", HOLD + "rq:scheduled:default",
                HOLD + "rq:scheduler:scheduled_jobs")

        def sets():
            return {k: conn.zrange(k, 0, -1, withscores=True) for k in keys}

        before = sets()
        assert invoke("pause", "--all", "--dry-run")[0] == 0 and sets() == before
        code, out, err = invoke("pause", "--all", "--reason", "drill", "--json")
        assert code == 0, out + err
        res = json.loads(out[out.index("{"):])
        assert url.split("@")[0].split(":")[-1] not in out + err  # the password never shows
        assert (res["counts"]["team_rq_jobs"], res["counts"]["team_rq_jobs_already_paused"]) == (3, 1)
        now = sets()
        assert now[keys[0]] == [] and now[keys[1]] == []  # no scheduler sees any of them
        assert sorted(now[keys[2]] + now[keys[3]]) == sorted(before[keys[1]] + before[keys[0]] + before[keys[3]])
        code, out, err = invoke("resume", "--snapshot", res["snapshot_id"], "--json")
        assert code == 0, out + err
        assert sets() == before  # the exact scores back; the entry held before is still held

        # an RQ cron job cannot be paused by cutover: the pause says so and exits 3 (NOT DONE)
        cron = CronScheduler(connection=conn, name="team-cron")
        cron.register(team_funcs.sync, "default", args=("c",), cron="*/20 6-18 * * 1-5", name="sync-cron")
        cron.save()
        assert invoke("rq", "import-jobs", "--redis-url", url, "--shadow", "observe", "--json")[0] == 0
        code, out, err = invoke("pause", "--all", "--reason", "drill 2")
        assert code == 3 and "RQ cron job(s) not paused (sync-cron)" in out + err, out + err
        conn.close()
    finally:
        srv.stop()
