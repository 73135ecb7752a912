"""`cutover rollback` racing `cutover pause --all` (issue #13): real stores, real subprocesses, the
APScheduler/batch legacy side and the session's Prefect server.

Whatever the interleaving, afterwards `cutover status` exits 0 (one live owner per ingestion, or
paused by the operator with nothing un-paused behind the snapshot), and `cutover resume` restores
exactly what the pause found: an ingestion the rollback completed has its legacy side live, one whose
rollback was refused (the pause came first) is still cut over to Prefect.

The rollback holds the operation lock for its steps and checks for a pause under it; the pause puts
its fences up at once, then waits for the lock before it snapshots and pauses: the two never
interleave. ``CUTOVER_RACE_ROUNDS`` (default 3) sets the number of rounds (20 for a longer run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT
from tests.helpers import cutover_cli as cli
from tests.prefect_fixtures import prefect_cleanup, prefect_env, prefect_server  # noqa: F401
from tests.test_pause import pool_guard  # noqa: F401
from tests.test_rollback import setup_cutover

ROUNDS = int(os.environ.get("CUTOVER_RACE_ROUNDS", "3"))


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cutover", *args], cwd=ROOT, env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def status() -> tuple[int, dict]:
    res = cli("status", "--json")
    return res.returncode, json.loads(res.stdout) if res.stdout.strip() else {}


@pytest.mark.slow
@pytest.mark.prefect
def test_rollback_racing_pause_all(prefect_server, prefect_env, prefect_cleanup, pool_guard, tmp_path):
    ids = [f"race-{k}" for k in range(ROUNDS)]
    setup_cutover(tmp_path, ids + ["race-keep"], cutover=ids + ["race-keep"], cleanup=prefect_cleanup)
    rc, st = status()
    assert rc == 0, st
    outcomes = []
    for k, iid in enumerate(ids):
        # stagger the two commands differently each round to sweep the interleavings
        delay = (k % 5) * 0.15
        first, second = (("rollback", iid, "--reason", "race"), ("pause", "--all", "--reason", "race"))
        procs = []
        if k % 2:
            first, second = second, first
        procs.append(spawn(*first))
        time.sleep(delay)
        procs.append(spawn(*second))
        results = {}
        for p, args in zip(procs, (first, second)):
            out, err = p.communicate(timeout=300)
            results[args[0]] = (p.returncode, out, err)
        rb_rc, _, rb_err = results["rollback"]
        pa_rc, pa_out, pa_err = results["pause"]
        assert pa_rc == 0, pa_err
        assert rb_rc in (0, 1), rb_err  # done, or refused: a pause is in force (1 names it)
        if rb_rc == 1:
            assert "pause" in rb_err, rb_err  # "pause snapshot X is in force", or the lock held by "pause X"
        snap = pa_out.strip().splitlines()[-1]

        rc, st = status()  # paused: nothing un-paused behind the snapshot, no invariant broken
        assert rc == 0, st
        assert st["active_pause"]["id"] == snap and st["unpaused_behind_snapshot"] == []

        if k == 0:  # the same pause again while it is in force: nothing left undone, so exit 0
            again = cli("pause", "--all", "--reason", "race again")
            assert again.returncode == 0, again.stderr
            assert "already in force" in again.stderr and again.stdout.strip().splitlines()[-1] == snap

        res = cli("resume", "--snapshot", snap)
        assert res.returncode == 0, res.stderr
        assert cli("resume", "--snapshot", snap).returncode == 0  # idempotent

        rc, st = status()
        assert rc == 0, st
        rows = {r["id"]: r for r in st["ingestions"]}
        row = rows[iid]
        if rb_rc == 0:
            assert (row["state"], row["legacy"], row["prefect_live"]) == ("ROLLED_BACK", "scheduled", "paused"), row
        else:
            assert (row["state"], row["legacy"], row["prefect_live"]) == ("CUTOVER", "paused", "active"), row
        keep = rows["race-keep"]
        assert (keep["state"], keep["legacy"], keep["prefect_live"]) == ("CUTOVER", "paused", "active"), keep
        outcomes.append((rb_rc, "waiting for the operation lock" in pa_err))
    print("(rollback exit: 0 done, 1 refused by the pause; the pause waited for the rollback's lock):", outcomes)


def test_pause_fences_at_once_and_waits_for_the_operation_lock(workspace_env, tmp_path):
    """Another operation holds the lock: the fence goes up at once, the durable pause waits for the lock
    (here: gives up after CUTOVER_PAUSE_LOCK_WAIT_S, exit 3 naming the holder); resume is refused naming it."""
    from cutover.core.state import fence, lock
    from cutover.core.workspace import Workspace

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.csv").write_text("id\n1\n")
    cli("ingestion", "add", "lk-a", "--source", str(src), "--pattern", "*.csv", "--format", "csv", "--table", "t.lk_a",
        "--schedule", "daily 02:00", check=0)
    cli("legacy", "sync", check=0)
    ws = Workspace()
    held = lock.acquire(ws.state_engine, "rollback lk-a (test)")
    try:
        env = {"PREFECT_API_URL": "http://127.0.0.1:9/api", "CUTOVER_PAUSE_LOCK_WAIT_S": "1"}
        res = cli("pause", "--all", "--reason", "drill", env_extra=env)
        assert res.returncode == 3, res.stderr
        assert "waiting for the operation lock" in res.stderr and "rollback lk-a (test)" in res.stderr
        snap = res.stdout.strip().splitlines()[-1]
        assert fence.read(ws.state_engine)["snapshot"] == snap  # the fence is up all the same
        jobs = cli("legacy", "jobs", check=0).stdout
        assert "paused" not in jobs.split("lk-a", 1)[1].splitlines()[0]  # not paused durably: the lock was held
        res = cli("resume", "--snapshot", snap)
        assert res.returncode == 1 and "rollback lk-a (test)" in res.stderr
    finally:
        lock.release(ws.state_engine, held)
    res = cli("resume", "--snapshot", snap, env_extra={"PREFECT_API_URL": "http://127.0.0.1:9/api"})
    assert res.returncode == 0, res.stderr
    assert fence.read(ws.state_engine) is None
