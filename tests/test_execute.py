"""Phased cutover against the real parts: APScheduler job store, Iceberg, a real Prefect
server and worker. Dry-run proven by full store dumps, kill -9 after every step
boundary, the operator lock between two processes, stale plans and gates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import dump_stores
from tests.prefect_fixtures import prefect_cleanup, prefect_env, prefect_server  # noqa: F401
from tests.helpers import cutover_cli as cli

pytestmark = [pytest.mark.slow, pytest.mark.prefect]

ROOT = Path(__file__).resolve().parent.parent
CUTOVER = [sys.executable, "-m", "cutover"]


def _csv(path: Path, rows: int, start: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("id,v\n" + "".join(f"{start + i},{i}\n" for i in range(rows)))


def _setup(home: Path, tmp_path: Path, cleanup, ids: list[str]) -> None:
    """Ingestions with daily schedules, their APScheduler jobs, one legacy run, shadow started."""
    import yaml

    items = []
    for n, iid in enumerate(ids):
        _csv(tmp_path / "src" / iid / "a.csv", 5, n * 100)
        items.append({"id": iid, "source_uri": str(tmp_path / "src" / iid), "pattern": "*.csv", "format": "csv",
                      "table": f"t.{iid.replace('-', '_')}", "schedule": {"frequency": "daily", "at": f"0{n % 10}:10"},
                      "timezone": "UTC", "key_columns": ["id"]})
        cleanup(iid)
    (tmp_path / "defs.yaml").write_text(yaml.safe_dump({"ingestions": items}))
    cli("ingestion", "add", "--from-file", str(tmp_path / "defs.yaml"), check=0)
    cli("legacy", "sync", check=0)
    cli("legacy", "run", "--all", check=0)
    cli("shadow", "start", "--all", check=0)


def _status() -> dict:
    res = cli("status", "--json")
    assert res.returncode in (0, 1), res.stderr
    return json.loads(res.stdout)


def test_plan_dry_run_changes_nothing_then_canary(prefect_server, prefect_env, prefect_cleanup, tmp_path):
    home = prefect_env
    _setup(home, tmp_path, prefect_cleanup, ["ex-a", "ex-b", "ex-c"])
    plan_file = tmp_path / "plan.json"
    res = cli("plan", "--waves", "canary=1,rest", "--gate", "streak>=0,no_open_waiver", "--out", str(plan_file), check=0)
    assert "Plan: 0 to shadow, 3 to cut over, 0 to roll back." in res.stdout
    assert "pause the legacy job" in res.stdout and "(undo: resume the legacy job)" in res.stdout
    before = dump_stores(home, prefect_server.url)
    res = cli("execute", str(plan_file), "--dry-run", check=0)
    assert "[would run] ex-" in res.stdout and "Dry run: nothing was changed." in res.stdout
    assert dump_stores(home, prefect_server.url) == before
    cli("execute", str(plan_file), "--yes", check=0)
    st = {r["id"]: r for r in _status()["ingestions"]}
    canary = [i for i, r in st.items() if r["state"] == "CUTOVER"]
    assert len(canary) == 1
    c = st[canary[0]]
    assert (c["legacy"], c["prefect_live"], c["prefect_shadow"]) == ("paused", "active", "paused")
    assert all(r["invariant_ok"] for r in st.values()), st
    assert all(r["state"] == "SHADOW" and r["legacy"] == "scheduled" for i, r in st.items() if i != canary[0])
    log = cli("log", check=0).stdout
    assert "execute" in log and "shadow-start" in log
    # the next wave, then nothing left
    cli("execute", str(plan_file), "--yes", check=0)
    assert all(r["state"] == "CUTOVER" for r in _status()["ingestions"])
    res = cli("execute", str(plan_file), "--yes")
    assert res.returncode == 2 and "every wave of this plan is done" in res.stderr


def test_kill_after_every_step_then_rerun(prefect_server, prefect_env, prefect_cleanup, tmp_path):
    home = prefect_env
    # A kill after every one of the six steps is proven on the fake side (tests/unit/test_engine_execute.py);
    # here, against the real parts, after three of them: the legacy pause, the paused live deploy, the live resume (state not yet set).
    kills = (0, 3, 4)
    ids = [f"kill-{k}" for k in kills]
    _setup(home, tmp_path, prefect_cleanup, ids)
    plan_file = tmp_path / "plan.json"
    cli("plan", "--waves", ",".join("1" for _ in kills), "--gate", "streak>=0", "--out", str(plan_file), check=0)
    plan = json.loads(plan_file.read_text())
    for k, wave in zip(kills, plan["waves"]):
        assert len(wave["moves"][0]["steps"]) == 6
        res = cli("execute", str(plan_file), "--wave", str(wave["number"]), "--yes",
                  env_extra={"CUTOVER_TEST_DIE_AFTER_STEP": str(k)})
        assert res.returncode == -9, (k, res.stdout, res.stderr)
        observed = _status()
        assert observed["lock"] is not None  # the dead process's lock is still recorded ...
        bad = [r for r in observed["ingestions"] if r["invariant_ok"] is False]
        assert not bad, (k, bad)
        assert not any(r["legacy"] == "scheduled" and r["prefect_live"] == "active" for r in observed["ingestions"])
        res = cli("execute", str(plan_file), "--wave", str(wave["number"]), "--yes", check=0)  # ... and taken over
        assert f"{k + 1} already done" in res.stdout
    final = {r["id"]: r for r in _status()["ingestions"]}
    assert {(r["state"], r["live_owner"], r["legacy"], r["prefect_live"], r["prefect_shadow"], r["invariant_ok"])
            for r in final.values()} == {("CUTOVER", "prefect", "paused", "active", "paused", True)}
    assert _status()["lock"] is None


def test_second_operator_is_refused_with_the_holder(prefect_server, prefect_env, prefect_cleanup, tmp_path):
    home = prefect_env
    _setup(home, tmp_path, prefect_cleanup, ["lock-a", "lock-b"])
    from cutover.core.workspace import Workspace

    ws = Workspace()
    in_flight = ws.runs.start("lock-a", orchestrator="legacy", mode="live", trigger="scheduled")  # a legacy run in flight
    p1, p2 = tmp_path / "p1.json", tmp_path / "p2.json"
    cli("plan", "--select", "lock-a", "--waves", "rest", "--gate", "streak>=0", "--out", str(p1), check=0)
    cli("plan", "--select", "lock-b", "--waves", "rest", "--gate", "streak>=0", "--out", str(p2), check=0)
    env = dict(os.environ, CUTOVER_OPERATOR="alice")
    first = subprocess.Popen([*CUTOVER, "execute", str(p1), "--yes"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        from cutover.core.state import lock

        deadline = time.monotonic() + 60
        while lock.holder(ws.state_engine) is None:
            assert time.monotonic() < deadline and first.poll() is None, first.communicate()
            time.sleep(0.2)
        res = cli("execute", str(p2), "--yes", env_extra={"CUTOVER_OPERATOR": "bob"})
        assert res.returncode == 1
        assert "locked by alice@" in res.stderr and f"pid {first.pid}" in res.stderr and "cutover unlock" in res.stderr
        ws.runs.finish(in_flight, "SUCCESS")  # the in-flight legacy run ends: the handoff goes on
        out, err = first.communicate(timeout=120)
        assert first.returncode == 0, (out, err)
    finally:
        if first.poll() is None:
            first.kill()
    cli("execute", str(p2), "--yes", check=0)


def test_stale_plan_and_gate_refusal(prefect_server, prefect_env, prefect_cleanup, tmp_path):
    home = prefect_env
    _setup(home, tmp_path, prefect_cleanup, ["st-a", "st-b"])
    gated = tmp_path / "gated.json"
    cli("plan", "--select", "st-a", "--waves", "rest", "--out", str(gated), check=0)  # default gate: streak>=3 ...
    before = dump_stores(home, prefect_server.url)
    res = cli("execute", str(gated), "--yes")
    assert res.returncode == 1 and "gate NOT met for st-a: clean parity streak 0 < 3" in res.stdout
    assert dump_stores(home, prefect_server.url) == before
    stale = tmp_path / "stale.json"
    cli("plan", "--select", "st-b", "--waves", "rest", "--gate", "streak>=0", "--out", str(stale), check=0)
    cli("ingestion", "add", "st-b", "--source", str(tmp_path / "src" / "st-b"), "--pattern", "*.CSV", "--format", "csv",
        "--table", "t.st_b", "--replace", check=0)
    res = cli("execute", str(stale), "--yes")
    assert res.returncode == 1 and "plan is stale: the definition of st-b changed" in res.stderr


def test_an_edited_plan_is_refused_and_changes_nothing(prefect_server, prefect_env, prefect_cleanup, tmp_path):
    """#13: a hand-edited plan was executed (a flipped move ran its fork step; an edited id resumed
    another plan's journal). Now: exit 2 "plan was edited: <what>", and every store (the three
    SQLite DBs, every file, the Prefect deployments and work pool) byte-identical."""
    home = prefect_env
    _setup(home, tmp_path, prefect_cleanup, ["ed-a", "ed-b"])
    plan_file = tmp_path / "plan.json"
    cli("plan", "--waves", "rest", "--gate", "streak>=0,no_open_waiver", "--out", str(plan_file), check=0)
    saved = json.loads(plan_file.read_text())
    other = tmp_path / "other.json"  # another plan, half executed: its journal must not be resumed by an edit
    cli("plan", "--select", "ed-a", "--waves", "rest", "--gate", "streak>=0", "--out", str(other), check=0)
    res = cli("execute", str(other), "--yes", env_extra={"CUTOVER_TEST_DIE_AFTER_STEP": "1"})
    assert res.returncode == -9, res.stderr
    other_id = json.loads(other.read_text())["id"]

    def flip(d):
        d["waves"][0]["moves"][0]["from_state"] = "LEGACY"

    def other_id_(d):
        d["id"] = other_id

    def gate(d):
        d["gate"] = "streak>=0"

    edits = {"a move was flipped (ed-": flip, "the plan id changed": other_id_, "a gate was removed (no_open_waiver)": gate}
    cli("unlock", json.loads(cli("status", "--json").stdout)["lock"]["id"], check=0)  # the killed process's lock
    before = dump_stores(home, prefect_server.url)
    for expected, edit in edits.items():
        d = json.loads(json.dumps(saved))
        edit(d)
        plan_file.write_text(json.dumps(d, indent=2))
        res = cli("execute", str(plan_file), "--yes")
        assert res.returncode == 2, (expected, res.stdout, res.stderr)
        assert "plan was edited: " in res.stderr and expected in res.stderr, res.stderr
        assert dump_stores(home, prefect_server.url) == before, expected
