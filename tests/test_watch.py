"""`cutover watch`: rollback triggers against a real workspace with injected run records.

No Prefect server: health is injected for the library tests, and the CLI tests point
PREFECT_API_URL at a closed port (the unreachable trigger is about exactly that).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import insert, update

from cutover.core.state import audit
from cutover.core.state import states
from cutover.cli import cli
from cutover.cli.app import run_main
from cutover.core.errors import InputError
from tests.prefect_fixtures import prefect_cleanup, prefect_env, prefect_server  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime.now(timezone.utc)
HEALTHY = lambda ws: (True, "HTTP 200 true")  # noqa: E731
DOWN = lambda ws: (False, "unreachable (connection refused)")  # noqa: E731


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/api"  # nothing listens once the socket is closed


@pytest.fixture
def ws(workspace_env):
    from cutover.core.workspace import Workspace

    return Workspace()


def cut_over(ws, iid: str, at: datetime = NOW - timedelta(hours=12)) -> None:
    """Bring an ingestion to CUTOVER, the cutover moment at ``at``."""
    from cutover.core.state.models import cutover_states as t

    states.set_state(ws.state_engine, iid, states.SHADOW)
    states.set_state(ws.state_engine, iid, states.CUTOVER)
    with ws.state_engine.begin() as c:
        c.execute(update(t).where(t.c.ingestion_id == iid).values(updated_at=at))


def run(ws, iid: str, orchestrator: str, mode: str, status: str, *, duration: float = 1.0,
        started: datetime = NOW - timedelta(hours=1)) -> str:
    """A finished run record as the orchestrators leave it, then moved to ``started``."""
    from cutover.core.records.tables import runs as t

    rid = ws.runs.start(iid, orchestrator=orchestrator, mode=mode, trigger="scheduled")
    if status != "RUNNING":
        ws.runs.finish(rid, status, error=None if status in ("SUCCESS", "PARTIAL") else "boom")
    with ws.autoloader_engine.begin() as c:
        c.execute(update(t).where(t.c.id == rid).values(
            started_at=started, heartbeat_at=started + timedelta(seconds=duration),
            ended_at=None if status == "RUNNING" else started + timedelta(seconds=duration),
            duration_s=None if status == "RUNNING" else duration))
    return rid


def parity_verdict(ws, iid: str, verdict: str, at: datetime) -> None:
    from cutover.core.state.models import parity_results as t

    with ws.state_engine.begin() as c:
        c.execute(insert(t).values(parity_run_id=f"p-{iid}-{at.timestamp():.0f}", ingestion_id=iid, run_at=at,
                                   verdict=verdict, report={"checks": [{"findings": [{"kind": "x"}]}]}))


def evaluate(ws, **kw):
    from cutover.engine.watch import evaluate as ev

    kw.setdefault("health", HEALTHY)
    return ev(ws, **kw)


def trig(ev, iid: str, name: str):
    ie = next(i for i in ev.ingestions if i.id == iid)
    return next(t for t in ie.triggers if t.name == name)


def actions(ws, prefix: str = "watch-") -> list[dict]:
    return [e for e in reversed(audit.entries(ws.state_engine, 500)) if e["action"].startswith(prefix)]


# -- configuration -----------------------------------------------------------------------------

def test_thresholds_defaults_file_and_env(workspace_env, monkeypatch):
    from cutover.core.config import load_settings
    from cutover.engine.watch import Thresholds

    th = Thresholds.from_settings(load_settings())
    assert (th.failure_rate, th.window, th.unreachable_after, th.duration_regression, th.auto_rollback,
            th.min_runs) == (0.05, 86400.0, 900.0, 0.5, False, 3)
    workspace_env.mkdir(parents=True)
    (workspace_env / "cutover.toml").write_text(
        '[watch]\nfailure_rate = 0.1\nwindow = "6h"\nunreachable_after = "5m"\nauto_rollback = true\nmin_runs = 5\n')
    monkeypatch.setenv("CUTOVER_WATCH_DURATION_REGRESSION", "0.25")
    s = load_settings()
    th = Thresholds.from_settings(s)
    assert (th.failure_rate, th.window, th.unreachable_after, th.duration_regression, th.auto_rollback,
            th.min_runs) == (0.1, 21600.0, 300.0, 0.25, True, 5)
    assert s.public_dict()["watch"]["auto_rollback"] is True
    assert s.sources["watch.duration_regression"] == "env CUTOVER_WATCH_DURATION_REGRESSION"
    monkeypatch.setenv("CUTOVER_WATCH_FAILURE_RATE", "1.5")
    with pytest.raises(InputError, match="failure_rate"):
        Thresholds.from_settings(load_settings())


def test_bad_threshold_is_a_usage_error(workspace_env, monkeypatch, capsys):
    monkeypatch.setenv("CUTOVER_WATCH_WINDOW", "soon")
    assert run_main(cli, ["watch", "--once"]) == 2
    assert "watch.window" in capsys.readouterr().err


# -- the triggers ------------------------------------------------------------------------------

def test_nothing_in_cutover_nothing_checked(ws):
    calls = []
    ev = evaluate(ws, health=lambda w: calls.append(1) or (False, "down"))
    assert ev.ingestions == [] and calls == [] and ev.prefect == {"checked": False}
    # ingestions in other states are not watched
    states.set_state(ws.state_engine, "shadowed", states.SHADOW)
    run(ws, "shadowed", "prefect", "live", "FAILED")
    assert evaluate(ws).ingestions == []


def test_failure_rate_min_runs_window_and_sides(ws):
    from cutover.engine.watch import act

    cut_over(ws, "a")
    run(ws, "a", "prefect", "live", "SUCCESS")
    run(ws, "a", "prefect", "live", "FAILED")
    t = trig(evaluate(ws), "a", "failure_rate")
    assert not t.judged and not t.fired and "< min_runs 3" in t.detail  # 50% of 2 runs: no false alarm
    # what does not count: shadow and legacy runs, runs in flight or cancelled, runs before the cutover
    # or outside the window
    run(ws, "a", "prefect", "shadow", "FAILED")
    run(ws, "a", "legacy", "live", "CRASHED")
    run(ws, "a", "prefect", "live", "RUNNING")
    run(ws, "a", "prefect", "live", "CANCELLED")
    run(ws, "a", "prefect", "live", "FAILED", started=NOW - timedelta(hours=13))  # before the cutover
    assert not trig(evaluate(ws), "a", "failure_rate").judged
    run(ws, "a", "prefect", "live", "SUCCESS")
    run(ws, "a", "prefect", "live", "PARTIAL")
    run(ws, "a", "prefect", "live", "SUCCESS")
    ev = evaluate(ws)
    t = trig(ev, "a", "failure_rate")
    assert t.judged and t.fired and t.value == 0.2, t  # 1 FAILED of 5 finished
    assert "1/5 Prefect live runs FAILED/CRASHED" in t.detail
    assert act(ws, ev) == 1
    assert next(i for i in ev.ingestions if i.id == "a").action == "alerted"
    # a wider tolerance: not fired
    from cutover.engine.watch import Thresholds

    t = trig(evaluate(ws, th=Thresholds(failure_rate=0.25)), "a", "failure_rate")
    assert t.judged and not t.fired
    # a narrower window: the failure is 1h old
    t = trig(evaluate(ws, th=Thresholds(window=1800)), "a", "failure_rate")
    assert not t.judged


def test_crashed_counts_as_failure(ws):
    cut_over(ws, "a")
    for _ in range(3):
        run(ws, "a", "prefect", "live", "SUCCESS")
    run(ws, "a", "prefect", "live", "CRASHED")
    assert trig(evaluate(ws), "a", "failure_rate").fired


def test_parity_last_verdict_since_the_cutover(ws):
    cut_over(ws, "a")
    assert "no parity verdict" in trig(evaluate(ws), "a", "parity").detail
    parity_verdict(ws, "a", "fail", NOW - timedelta(hours=20))  # before the cutover: the gate's business
    t = trig(evaluate(ws), "a", "parity")
    assert not t.judged and not t.fired and "before the cutover" in t.detail
    parity_verdict(ws, "a", "fail", NOW - timedelta(hours=2))
    t = trig(evaluate(ws), "a", "parity")
    assert t.fired and "last parity verdict fail" in t.detail
    parity_verdict(ws, "a", "pass", NOW - timedelta(hours=1))  # the last one counts
    assert not trig(evaluate(ws), "a", "parity").fired
    parity_verdict(ws, "a", "error", NOW - timedelta(minutes=30))
    assert not trig(evaluate(ws), "a", "parity").fired  # error is not a parity failure


def test_duration_regression(ws):
    from cutover.engine.watch import Thresholds

    cut_over(ws, "a")
    for k in range(4):  # the baseline: legacy live runs before the cutover
        run(ws, "a", "legacy", "live", "SUCCESS", duration=10.0 + k, started=NOW - timedelta(hours=20 + k))
    run(ws, "a", "legacy", "live", "FAILED", duration=500.0, started=NOW - timedelta(hours=19))  # not in the baseline
    run(ws, "a", "legacy", "live", "SUCCESS", duration=900.0, started=NOW - timedelta(hours=2))  # after: not either
    for _ in range(2):
        run(ws, "a", "prefect", "live", "SUCCESS", duration=30.0)
    t = trig(evaluate(ws), "a", "duration_regression")
    assert not t.judged and "min_runs 3" in t.detail
    run(ws, "a", "prefect", "live", "SUCCESS", duration=14.0)
    run(ws, "a", "prefect", "live", "FAILED", duration=1.0)  # failed runs do not make the median
    t = trig(evaluate(ws), "a", "duration_regression")
    # median prefect 30s vs median legacy 11.5s: +161%
    assert t.judged and t.fired and t.value == pytest.approx(30 / 11.5 - 1, abs=1e-3), t
    assert "vs legacy 11.5s over 4 run(s)" in t.detail
    assert not trig(evaluate(ws, th=Thresholds(duration_regression=2.0)), "a", "duration_regression").fired
    # sub-second legacy runs are noise: never judged
    cut_over(ws, "b")
    for k in range(3):
        run(ws, "b", "legacy", "live", "SUCCESS", duration=0.2, started=NOW - timedelta(hours=20 + k))
        run(ws, "b", "prefect", "live", "SUCCESS", duration=0.9)
    t = trig(evaluate(ws), "b", "duration_regression")
    assert not t.judged and not t.fired and "min_duration" in t.detail


def test_unreachable_accumulates_and_clears(ws):
    from cutover.engine.watch import unreachable_since

    cut_over(ws, "a")
    ev = evaluate(ws, health=DOWN, now=NOW)
    t = trig(ev, "a", "prefect_unreachable")
    assert not t.fired and t.value == 0 and ev.prefect["unreachable_since"] == NOW.isoformat()
    # a later round (cron) sees the same outage start: it adds up
    ev = evaluate(ws, health=DOWN, now=NOW + timedelta(minutes=10))
    assert not trig(ev, "a", "prefect_unreachable").fired
    assert trig(ev, "a", "prefect_unreachable").value == 600
    ev = evaluate(ws, health=DOWN, now=NOW + timedelta(minutes=16))
    t = trig(ev, "a", "prefect_unreachable")
    assert t.fired and "16m > 15m" in t.detail, t.detail
    assert [e["action"] for e in actions(ws, "watch-prefect")] == ["watch-prefect-down"]  # recorded once
    # healthy again: cleared, and a new outage starts from zero
    ev = evaluate(ws, health=HEALTHY, now=NOW + timedelta(minutes=17))
    assert not trig(ev, "a", "prefect_unreachable").fired and unreachable_since(ws.state_engine) is None
    ev = evaluate(ws, health=DOWN, now=NOW + timedelta(minutes=30))
    assert trig(ev, "a", "prefect_unreachable").value == 0
    assert [e["action"] for e in actions(ws, "watch-prefect")] == [
        "watch-prefect-down", "watch-prefect-up", "watch-prefect-down"]


# -- acting ----------------------------------------------------------------------------------------

def _failing(ws, iid: str) -> None:
    cut_over(ws, iid)
    for status in ("SUCCESS", "FAILED", "FAILED"):
        run(ws, iid, "prefect", "live", status)


def test_firing_is_audited_once_per_episode(ws):
    from cutover.engine.watch import act

    _failing(ws, "a")
    cut_over(ws, "quiet")
    assert act(ws, evaluate(ws)) == 1
    assert act(ws, evaluate(ws)) == 1  # still firing: alerted again, audited once
    fired = actions(ws, "watch-fired")
    assert [(e["target"], e["detail"]["trigger"]) for e in fired] == [("a", "failure_rate")]
    assert fired[0]["reason"].startswith("failure_rate: 2/3 Prefect live runs")
    for _ in range(40):  # the failures are diluted: the episode ends
        run(ws, "a", "prefect", "live", "SUCCESS")
    assert act(ws, evaluate(ws)) == 0
    assert [e["action"] for e in actions(ws)] == ["watch-fired", "watch-cleared"]
    # a new cutover of the same ingestion starts a new episode
    from cutover.core.state.models import cutover_states as t

    with ws.state_engine.begin() as c:
        c.execute(update(t).where(t.c.ingestion_id == "a").values(updated_at=datetime.now(timezone.utc)))
    for status in ("FAILED", "FAILED", "FAILED"):
        run(ws, "a", "prefect", "live", status, started=datetime.now(timezone.utc) + timedelta(seconds=1))
    assert act(ws, evaluate(ws, now=datetime.now(timezone.utc) + timedelta(seconds=5))) == 1
    assert [e["action"] for e in actions(ws)] == ["watch-fired", "watch-cleared", "watch-fired"]


def test_auto_rollback_ok_and_failed(ws):
    from cutover.engine.watch import Thresholds, act, evaluate as ev_

    _failing(ws, "a")
    _failing(ws, "b")
    calls = []

    def rollback(iid, reason):
        calls.append((iid, reason))
        if iid == "a":
            states.set_state(ws.state_engine, iid, states.ROLLED_BACK)
            return 0, f"cutover rollback {iid}"
        return 3, f"cutover rollback {iid}"

    th = Thresholds(auto_rollback=True)
    ev = ev_(ws, th, health=HEALTHY)
    assert act(ws, ev, rollback=rollback) == 3
    assert calls == [("a", "watch: failure_rate"), ("b", "watch: failure_rate")]
    by = {i.id: i for i in ev.ingestions}
    assert (by["a"].action, by["b"].action) == ("rolled_back", "rollback_failed")
    rb = [e for e in actions(ws) if e["action"] == "watch-rollback"]
    assert [(e["target"], e["detail"]["ok"], e["detail"]["exit_code"]) for e in rb] == [("a", True, 0), ("b", False, 3)]
    # the rolled-back one is no longer watched; the other is retried next round
    calls.clear()
    ev = ev_(ws, th, health=HEALTHY)
    assert [i.id for i in ev.ingestions] == ["b"]
    act(ws, ev, rollback=rollback)
    assert calls == [("b", "watch: failure_rate")]
    # --no-auto-rollback: alert only
    calls.clear()
    assert act(ws, ev_(ws, th, health=HEALTHY), rollback=rollback, auto_rollback=False) == 1 and calls == []


def test_no_auto_rollback_during_an_operator_pause(ws):
    from cutover.core.state.models import pause_snapshots as t
    from cutover.engine.watch import Thresholds, act, evaluate as ev_

    _failing(ws, "a")
    with ws.state_engine.begin() as c:
        c.execute(insert(t).values(id="snap1", created_at=NOW, created_by="op", reason="catalog outage",
                                   status="ACTIVE", body={}))
    calls = []
    ev = ev_(ws, Thresholds(auto_rollback=True), health=HEALTHY)
    assert act(ws, ev, rollback=lambda i, r: calls.append(i) or (0, "x")) == 1
    assert calls == [] and "operator pause snap1" in ev.ingestions[0].action_detail


def test_rollback_argv_follows_the_rollback_command():
    """The in-process rollback uses the rollback command's real options (it must exist)."""
    from cutover.engine.watch import rollback_argv

    argv = rollback_argv("orders", "watch: parity")
    assert argv[:4] == ["rollback", "orders", "--reason", "watch: parity"]


# -- the command -----------------------------------------------------------------------------------

def cli_env(**extra) -> dict:
    env = dict(os.environ)
    env["PREFECT_API_URL"] = closed_port_url()
    env.update(extra)
    return env


def watch_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "cutover", "watch", *args], cwd=ROOT, env=env or cli_env(),
                          capture_output=True, text=True, timeout=60)


def test_cli_once_exit_codes_warning_json(ws):
    cut_over(ws, "quiet")
    res = watch_cli("--once")
    assert res.returncode == 0, res.stderr
    assert "quiet" in res.stdout and "down 0s" in res.stdout and "WARNING" not in res.stderr
    _failing(ws, "a")
    parity_verdict(ws, "a", "fail", NOW - timedelta(minutes=5))
    res = watch_cli("--once")
    assert res.returncode == 1, res.stderr
    warnings = [line for line in res.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 2, res.stderr  # one per fired trigger
    assert "a: trigger failure_rate fired: 2/3" in warnings[0] and "a: trigger parity fired" in warnings[1]
    res = watch_cli("--once", "--json")
    assert res.returncode == 1
    doc = json.loads(res.stdout)
    by = {i["id"]: i for i in doc["ingestions"]}
    assert by["a"]["fired"] == ["failure_rate", "parity"] and by["a"]["action"] == "alerted"
    assert by["quiet"]["fired"] == [] and by["quiet"]["triggers"]["failure_rate"]["judged"] is False
    assert doc["prefect"]["healthy"] is False and doc["exit_code"] == 1
    log = subprocess.run([sys.executable, "-m", "cutover", "log"], cwd=ROOT, env=cli_env(), capture_output=True,
                         text=True).stdout
    assert "watch-fired" in log and "watch-prefect-down" in log


def test_cli_unreachable_from_cron_adds_up(ws):
    """Successive `watch --once` processes, Prefect at a closed port: fires once past unreachable_after."""
    cut_over(ws, "a")
    env = cli_env(CUTOVER_WATCH_UNREACHABLE_AFTER="2s")
    assert watch_cli("--once", env=env).returncode == 0
    time.sleep(2.2)
    res = watch_cli("--once", env=env)
    assert res.returncode == 1, res.stderr
    assert "a: trigger prefect_unreachable fired: Prefect API unreachable since" in res.stderr


def add_ingestion(tmp_path: Path, iid: str) -> None:
    """A real (manual, unscheduled) ingestion, so that `cutover rollback` has something to act on."""
    import yaml

    src = tmp_path / "src" / iid
    src.mkdir(parents=True, exist_ok=True)
    (src / "a.csv").write_text("id,v\n1,2\n")
    defs = tmp_path / f"{iid}.yaml"
    defs.write_text(yaml.safe_dump({"ingestions": [{"id": iid, "source_uri": str(src), "pattern": "*.csv",
                                                    "format": "csv", "table": f"t.{iid.replace('-', '_')}",
                                                    "key_columns": ["id"]}]}))
    assert run_main(cli, ["ingestion", "add", "--from-file", str(defs)]) == 0


def test_cli_auto_rollback_with_prefect_down_is_completed_later(ws, tmp_path):
    """auto_rollback runs the real `cutover rollback` in-process. Prefect unreachable: the legacy side
    is resumed, the Prefect steps are held, exit 3; every next round runs the rollback again, even
    once no trigger fires any more, until it completes."""
    from cutover.engine.watch import act, evaluate as ev_, Thresholds

    add_ingestion(tmp_path, "wa")
    _failing(ws, "wa")
    res = watch_cli("--once", "--json", env=cli_env(CUTOVER_WATCH_AUTO_ROLLBACK="true"))
    assert res.returncode == 3, res.stderr
    doc = json.loads(res.stdout)  # the rollback's own output went to stderr
    assert doc["ingestions"][0]["action"] == "rollback_failed"
    assert "auto_rollback is on: rolling back (watch: failure_rate)" in res.stderr
    assert "AUTO-ROLLBACK FAILED" in res.stderr and "unreachable" in res.stderr
    assert states.get_state(ws.state_engine, "wa") == states.CUTOVER
    rb = [e for e in actions(ws) if e["action"] == "watch-rollback"]
    assert len(rb) == 1 and not rb[0]["detail"]["ok"] and rb[0]["detail"]["exit_code"] == 3
    assert rb[0]["detail"]["command"] == "cutover rollback wa --reason 'watch: failure_rate'"
    # the failures age out of the window: no trigger fires, the rollback is still completed
    calls = []

    def rollback(iid, reason):
        calls.append((iid, reason))
        states.set_state(ws.state_engine, iid, states.ROLLED_BACK)
        return 0, "cutover rollback " + iid

    ev = ev_(ws, Thresholds(auto_rollback=True, window=1), health=HEALTHY)
    assert ev.ingestions[0].fired == []
    assert act(ws, ev, rollback=rollback) == 1
    assert calls == [("wa", "watch: failure_rate")] and ev.ingestions[0].action == "rolled_back"
    assert ev_(ws, Thresholds(auto_rollback=True), health=HEALTHY).ingestions == []


def test_incomplete_rollback_alerts_without_auto_rollback(ws):
    from cutover.engine.watch import act

    cut_over(ws, "a")
    audit.record(ws.state_engine, "watch-rollback", target="a", reason="watch: parity",
                 detail={"ok": False, "exit_code": 3})
    ev = evaluate(ws)
    assert act(ws, ev) == 1
    assert ev.ingestions[0].action == "alerted" and "cutover rollback a" in ev.ingestions[0].action_detail


@pytest.mark.slow
@pytest.mark.prefect
def test_cli_auto_rollback_on_a_real_prefect_server(prefect_env, prefect_cleanup, tmp_path):
    from cutover.core.workspace import Workspace

    ws = Workspace()
    add_ingestion(tmp_path, "wa-real")
    prefect_cleanup("wa-real")
    _failing(ws, "wa-real")
    env = dict(os.environ, CUTOVER_WATCH_AUTO_ROLLBACK="true")
    res = watch_cli("--once", env=env)
    assert res.returncode == 1, res.stdout + res.stderr  # fired, rolled back
    assert "wa-real: rolled back by watch (watch: failure_rate)" in res.stderr
    assert "rolled_back" in res.stdout
    assert states.get_state(ws.state_engine, "wa-real") == states.ROLLED_BACK
    got = [(e["action"], e["target"]) for e in actions(ws, "")]
    assert [a for a in got if a[0] in ("watch-fired", "rollback", "watch-rollback")] == [
        ("watch-fired", "wa-real"), ("rollback", "wa-real"), ("watch-rollback", "wa-real")]
    assert watch_cli("--once", env=env).returncode == 0  # nothing in CUTOVER any more


def test_cli_loop_until_sigterm(ws):
    _failing(ws, "a")
    p = subprocess.Popen([sys.executable, "-m", "cutover", "watch", "--interval", "0.3", "--json"], cwd=ROOT,
                         env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [p.stdout.readline(), p.stdout.readline()]  # two rounds, one JSON line each
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    docs = [json.loads(x) for x in lines]
    assert all(d["ingestions"][0]["fired"] == ["failure_rate"] for d in docs)
    assert "watch stopped (SIGTERM)" in err and err.count("trigger failure_rate fired") >= 2
    assert len([e for e in actions(ws) if e["action"] == "watch-fired"]) == 1
