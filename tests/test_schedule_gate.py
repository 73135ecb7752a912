"""Schedule proofs that cannot mislead (issue #18 item 3): the default horizon, every difference
counted, APPROXIMATE never EQUIVALENT, many ids in one call, and the deploy gate
(`--accept-schedule-difference ID`, audited) on `shadow start`, `execute` and `prefect deploy`.

The gate's refusals need no Prefect server (the gate runs before any side is touched); the one
accepted deploy that really writes runs against the session's real Prefect server.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from cutover.core.schedule.translation import dst_transitions
from cutover.core.schedule.triggers import normalize_schedule
from cutover.core.schedule.verify import default_horizon, verify
from tests.helpers import add_ingestion, invoke_cli

UTC = timezone.utc


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def next_spring_forward(tz: str, after: datetime) -> datetime:
    return next(t for t, before, after_ in dst_transitions(tz, after.year, after.year + 3)
                if t > after and after_ > before)


# -- the proof itself ---------------------------------------------------------------------------


def test_default_horizon_covers_a_year_and_two_dst_changes():
    start = at("2026-12-03T00:00:00Z")
    assert default_horizon(["UTC"], start) == timedelta(days=366)
    # from just before the spring-forward of 2027 the second change (fall-back) is within the year
    assert default_horizon(["Europe/Berlin"], start) == timedelta(days=366)
    # Australia/Lord_Howe changes by 30 minutes, twice a year: still a year
    assert default_horizon(["Australia/Lord_Howe"], start) >= timedelta(days=366)
    # a start right after a change: the horizon still reaches one day past the second change ahead
    s = at("2026-10-25T01:00:01Z")  # just after the 2026 fall-back in Berlin
    ahead = [t for t, _, _ in dst_transitions("Europe/Berlin", 2026, 2029) if t > s][:2]
    assert default_horizon(["Europe/Berlin"], s) >= ahead[1] - s + timedelta(days=1) - timedelta(seconds=1)


def test_cli_default_verify_daily_0230_berlin_names_the_spring_forward_day(workspace_env, capsys):
    code, out, err = invoke_cli(capsys, "schedules", "verify", "--schedule", "daily 02:30", "--timezone",
                                "Europe/Berlin")
    assert code == 1, err
    spring = next_spring_forward("Europe/Berlin", datetime.now(UTC)).date().isoformat()
    assert "(--schedule): DIFFERENT" in out and "EQUIVALENT" not in out
    assert f"first difference: {spring}T00:30:00Z" in out and "fires on prefect only" in out
    assert f"difference 2: {spring}T01:30:00Z" in out  # legacy fires one hour later on that day
    assert "clocks go forward 1h" in out
    code, out, _ = invoke_cli(capsys, "schedules", "verify", "--schedule", "daily 02:30", "--timezone",
                              "Europe/Berlin", "--json")
    doc = json.loads(out)
    [r] = doc["results"]
    assert code == 1 and r["verdict"] == "different" and r["difference_count"] >= 2
    assert r["first_difference"]["at"].startswith(spring)
    assert at(r["end"]) - at(r["start"]) >= timedelta(days=366)


def test_every_difference_counted_first_ten_shown(workspace_env, capsys):
    spec = normalize_schedule({"trigger": "cron", "hour": 2, "minute": 0, "second": 30})  # 02:00:30 every day
    r = verify(spec, "UTC", start=at("2026-01-01T00:00:00Z"), horizon=timedelta(days=30), allow_approx=True)
    # every day: Prefect at 02:00:00 only, legacy at 02:00:30 only -> 2 per day
    assert r.verdict == "different" and r.difference_count == 60 and len(r.differences) == 10
    assert [d.at for d in r.differences[:2]] == [at("2026-01-01T02:00:00Z"), at("2026-01-01T02:00:30Z")]
    assert r.differences[9].at == at("2026-01-05T02:00:30Z")

    code, out, _ = invoke_cli(capsys, "schedules", "verify", "--schedule", json.dumps(dict(spec)),
                              "--start", "2026-01-01T00:00:00Z", "--horizon", "30d", "--allow-approx")
    assert code == 1
    assert "60 differing instant(s)" in out and "difference 10: 2026-01-05T02:00:30Z" in out
    assert "difference 11" not in out and "... and 50 more (the first 10 are shown)" in out


def test_jitter_is_never_equivalent(workspace_env, capsys):
    for spec in ({"trigger": "cron", "hour": 2, "jitter": 30},
                 {"trigger": "interval", "hours": 4, "jitter": 10, "start_date": "2025-06-01T00:00:00"}):
        code, out, _ = invoke_cli(capsys, "schedules", "verify", "--schedule", json.dumps(spec),
                                  "--allow-approx", "--horizon", "20d", "--json")
        [r] = json.loads(out)["results"]
        assert code == 1 and r["verdict"] == "approximate" and r["approximated"] == [f"jitter={spec['jitter']}"]
        code, out, _ = invoke_cli(capsys, "schedules", "verify", "--schedule", json.dumps(spec), "--horizon", "20d")
        assert code == 1 and "UNTRANSLATABLE" in out and "EQUIVALENT" not in out


def test_many_ids_in_one_call(workspace_env, tmp_path, capsys):
    from cutover.core.workspace import Workspace

    ws = Workspace()
    for i in range(12):
        add_ingestion(ws, f"job-{i:02d}", tmp_path, schedule={"frequency": "daily", "at": f"0{i % 10}:15"})
    add_ingestion(ws, "weekly-default", tmp_path, schedule="weekly 06:00")
    add_ingestion(ws, "jittery", tmp_path, schedule={"trigger": "cron", "hour": 3, "jitter": 5})

    code, out, err = invoke_cli(capsys, "schedules", "translate", "--all", "--json")
    doc = json.loads(out)
    by_id = {r["ingestion"]: r for r in doc["results"]}
    assert code == 1 and len(by_id) == 14 and doc["ok"] is False  # jittery cannot be translated exactly
    assert by_id["job-03"]["prefect_schedule"]["cron"] == "15 3 * * *"
    assert "jitter=5" in by_id["jittery"]["error"] and by_id["jittery"]["prefect_schedule"] is None
    # weekly without a day: Monday, and the output says so
    assert by_id["weekly-default"]["legacy_text"] == "weekly mon 06:00"
    assert by_id["weekly-default"]["prefect_schedule"]["cron"] == "0 6 * * 1"

    code, out, _ = invoke_cli(capsys, "schedules", "translate", "job-01", "job-02", "weekly-default")
    assert code == 0 and out.count("prefect cron") == 3 and "legacy weekly mon 06:00" in out

    code, out, _ = invoke_cli(capsys, "schedules", "verify", *[f"job-{i:02d}" for i in range(12)],
                              "--start", "2026-01-01T00:00:00Z", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["counts"]["equivalent"] == 12 and len(doc["results"]) == 12


def test_weekly_default_day_is_monday():
    from cutover.core.schedule.triggers import describe, parse_schedule_text

    assert parse_schedule_text("weekly 06:00") == {"frequency": "weekly", "at": "06:00", "day": "mon"}
    assert describe(normalize_schedule({"frequency": "weekly", "at": "06:00"})) == "weekly mon 06:00"


# -- the deploy gate ------------------------------------------------------------------------------


@pytest.fixture
def berlin(workspace_env, tmp_path):
    from cutover.core.workspace import Workspace

    ws = Workspace()
    add_ingestion(ws, "berlin", tmp_path, schedule={"frequency": "daily", "at": "02:30"}, timezone="Europe/Berlin")
    add_ingestion(ws, "utc", tmp_path, schedule={"frequency": "daily", "at": "02:30"})
    return ws


def _audit(ws):
    from cutover.core.state import audit

    return audit.entries(ws.state_engine, 50)


def test_shadow_start_refused_without_the_flag(berlin, capsys):
    from cutover.core.state import states

    code, out, err = invoke_cli(capsys, "shadow", "start", "berlin")
    assert code == 1
    assert "`cutover shadow start` refused: berlin: schedule DIFFERENT" in err
    assert "--accept-schedule-difference berlin" in err and "nothing was changed" in err
    assert states.get_states(berlin.state_engine).get("berlin", states.LEGACY) == states.LEGACY
    assert _audit(berlin) == []
    # the flag must name an ingestion of the command
    code, _, err = invoke_cli(capsys, "shadow", "start", "berlin", "--accept-schedule-difference", "nope")
    assert code == 2 and "nope" in err


def test_prefect_deploy_refused_before_any_server_start(berlin, capsys):
    code, _, err = invoke_cli(capsys, "prefect", "deploy", "berlin", "--mode", "live")
    assert code == 1 and "`cutover prefect deploy` refused: berlin" in err
    assert not (berlin.settings.home / "prefect").exists()  # no local server was started
    code, _, err = invoke_cli(capsys, "prefect", "deploy", "utc", "berlin", "--mode", "live", "--dry-run",
                              "--allow-approx")
    assert code == 1 and "refused: berlin" in err
    assert _audit(berlin) == []


def test_execute_holds_the_move_unless_accepted(berlin, tmp_path, capsys):
    plan = tmp_path / "plan.json"
    code, _, err = invoke_cli(capsys, "plan", "--waves", "all=100%", "--gate", "no_open_waiver", "--out", str(plan))
    assert code == 0, err
    code, out, _ = invoke_cli(capsys, "execute", str(plan), "--yes")
    assert code == 1 and "gate NOT met for berlin: schedule DIFFERENT" in out and "nothing was changed" in out
    assert "gate NOT met for utc" not in out
    code, out, err = invoke_cli(capsys, "execute", str(plan), "--dry-run", "--json",
                                "--accept-schedule-difference", "berlin")
    doc = json.loads(out)
    assert code == 0 and doc["gate_reasons"] == {} and doc["dry_run"] is True
    assert doc["schedules"]["berlin"] == {"verdict": "different", "accepted": True}
    assert any(s.startswith("berlin: deploy Prefect deployment shadow") for s in doc["would_apply"])
    assert _audit(berlin) == []  # a dry run records nothing


@pytest.mark.slow
@pytest.mark.prefect
def test_prefect_deploy_accepted_and_audited(prefect_server, prefect_env, prefect_cleanup, tmp_path, capsys):
    from cutover.core.workspace import Workspace

    ws = Workspace()
    prefect_cleanup("gate-berlin")
    add_ingestion(ws, "gate-berlin", tmp_path, schedule={"frequency": "daily", "at": "02:30"},
                  timezone="Europe/Berlin")
    code, _, err = invoke_cli(capsys, "prefect", "deploy", "gate-berlin", "--mode", "live")
    assert code == 1 and "refused" in err and ws.ingestions.get("gate-berlin").prefect_deployment_id is None
    assert [e for e in _audit(ws) if e["action"] == "accept-schedule-difference"] == []

    code, out, err = invoke_cli(capsys, "prefect", "deploy", "gate-berlin", "--mode", "live",
                                "--accept-schedule-difference", "gate-berlin")
    assert code == 0 and "create: gate-berlin" in out, err
    dep_id = ws.ingestions.get("gate-berlin").prefect_deployment_id
    with prefect_server.client() as c:
        dep = c.read_deployment(dep_id)
    assert dep.schedules[0].schedule.cron == "30 2 * * *"
    [row] = [e for e in _audit(ws) if e["action"] == "accept-schedule-difference"]
    spring = next_spring_forward("Europe/Berlin", datetime.now(UTC)).date().isoformat()
    assert row["target"] == "gate-berlin" and row["detail"]["verdict"] == "different"
    assert row["detail"]["command"] == "prefect deploy --mode live" and row["detail"]["difference_count"] >= 2
    assert row["detail"]["first_difference"].startswith(spring)


from tests.prefect_fixtures import prefect_cleanup, prefect_env, prefect_server  # noqa: E402,F401
