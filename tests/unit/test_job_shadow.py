"""Shadow safety of a team's own jobs (issue #15 item 4), without Prefect:

- a job that declares no shadow mode is refused at `shadow start` with exit 2, naming the three
  choices, and nothing changes (state, audit log, journal);
- `shadow declare` sets the declaration (dry run changes nothing) and refuses a job past LEGACY;
- the observe-only parity check: legacy runs at the translated schedule's fire times pass, a run
  off schedule and a fire time without a run are findings.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select

from checks.jobparity import check_fire_times
from cutover.core.records.jobs import validate_job
from cutover.core.records.runs import RunRecord
from cutover.core.state import states
from cutover.core.state.models import audit_log, journal
from cutover.core.workspace import Workspace
from tests.helpers import invoke_cli


def _jobs(ws):
    ws.jobs.upsert([
        validate_job({"id": "j-plain", "kind": "command", "shell": "echo hi", "schedule": {"cron": "5 * * * *"}}),
        validate_job({"id": "j-env", "kind": "command", "shell": "echo hi", "schedule": {"cron": "5 * * * *"},
                      "shadow": "env"}),
    ], replace_existing=False)


def _counts(ws):
    with ws.state_engine.connect() as conn:
        return (conn.execute(select(func.count()).select_from(audit_log)).scalar(),
                conn.execute(select(func.count()).select_from(journal)).scalar())


def test_undeclared_job_is_refused_at_shadow_start(workspace_env, capsys):
    ws = Workspace()
    _jobs(ws)
    before = _counts(ws)
    for args in (("shadow", "start", "j-plain"), ("shadow", "start", "j-env", "j-plain"), ("shadow", "start", "--all"),
                 ("shadow", "start", "j-plain", "--dry-run")):
        code, out, err = invoke_cli(capsys, *args)
        assert code == 2, (args, out, err)
        assert "j-plain" in err and "observe" in err and "env" in err and "sdk" in err
        assert "j-env" not in err.split("declare no shadow")[0]
    assert states.get_states(ws.state_engine) == {}
    assert _counts(ws) == before


def test_shadow_declare(workspace_env, capsys):
    ws = Workspace()
    _jobs(ws)
    code, out, _ = invoke_cli(capsys, "shadow", "declare", "j-plain", "--as", "sdk", "--table", "acme.t", "--dry-run")
    assert code == 0 and "would declare j-plain: shadow (undeclared) -> sdk, table acme.t" in out
    assert ws.jobs.get("j-plain").shadow is None
    code, out, _ = invoke_cli(capsys, "shadow", "declare", "j-plain", "--as", "sdk", "--table", "acme.t")
    assert code == 0
    j = ws.jobs.get("j-plain")
    assert (j.shadow, j.table) == ("sdk", "acme.t")
    code, _, err = invoke_cli(capsys, "shadow", "declare", "j-env", "--as", "observe", "--table", "acme.t")
    assert code == 2 and "sdk jobs only" in err
    states.set_state(ws.state_engine, "j-env", states.SHADOW, force=True)
    code, _, err = invoke_cli(capsys, "shadow", "declare", "j-env", "--as", "observe")
    assert code == 2 and "stop the shadow first" in err
    assert ws.jobs.get("j-env").shadow == "env"


def _run(i: int, at: datetime, status: str = "SUCCESS", trigger: str = "scheduled") -> RunRecord:
    return RunRecord(id=f"r{i}", ingestion_id="j", orchestrator="legacy", mode="live", trigger=trigger,
                     status=status, started_at=at, ended_at=at + timedelta(seconds=3), heartbeat_at=at,
                     files_processed=0, files_failed=0, files_skipped=0, records_ingested=0, bytes_read=0,
                     duration_s=3.0, error=None, external_id=None, prefect_deployment_id=None, host="h", pid=1)


def test_observe_fire_times():
    job = validate_job({"id": "j", "kind": "command", "shell": "true", "shadow": "observe",
                        "schedule": {"cron": "5 * * * *"}, "timezone": "UTC"})
    t0 = datetime(2026, 11, 2, 0, 0, tzinfo=timezone.utc)
    until = t0 + timedelta(hours=3, minutes=8)  # 03:05 is a fire time too recent to judge
    on_time = [_run(h, t0 + timedelta(hours=h, minutes=5, seconds=20)) for h in range(3)]
    on_time.append(_run(9, t0 + timedelta(hours=1, minutes=40), trigger="manual"))  # manual runs are not judged
    res = check_fire_times(job, on_time, since=t0, until=until, thresholds={})
    assert res.verdict == "pass", res.findings
    assert res.metrics["matched"] == 3 and res.metrics["fire_times"] == 4

    off = on_time[:2] + [_run(7, t0 + timedelta(hours=2, minutes=30))]  # 02:30 instead of 02:05
    res = check_fire_times(job, off, since=t0, until=until, thresholds={})
    kinds = sorted(f.kind for f in res.findings)
    assert res.verdict == "fail" and kinds == ["fire_time_mismatch", "run_missing"]
    failed = on_time[:3] + [_run(8, t0 + timedelta(hours=3, minutes=5), status="FAILED")]
    res = check_fire_times(job, failed, since=t0, until=until, thresholds={})
    assert [f.kind for f in res.findings] == ["run_failed"]


def test_a_plan_never_moves_an_undeclared_job_into_shadow(workspace_env, capsys, tmp_path):
    ws = Workspace()
    _jobs(ws)
    code, _, err = invoke_cli(capsys, "plan", "--waves", "rest", "--out", str(tmp_path / "p.json"))
    assert code == 2 and "j-plain" in err and "observe|env|sdk" in err
    assert not (tmp_path / "p.json").exists()


def test_the_shadow_variables_are_known_cutover_variables():
    """A run of a team's job carries them; every cutover process in it (cutover.sdk's workspace, cron exec)
    must accept them while it refuses misspelt CUTOVER_* names."""
    from cutover.core import config, jobenv

    env = {**jobenv.env_for("shadow", job_id="j", output_prefix="/tmp/x", run_id="r", orchestrator="prefect"),
           jobenv.RECORDER: "apscheduler"}
    config.check_env(env)
