"""`cutover rollback` against the real parts: APScheduler job store, Iceberg, real Prefect servers.

(a) a CUTOVER ingestion rolled back: deployments paused, in-flight work cancelled and its claims
    released, legacy job resumed at its next correct fire time, state ROLLED_BACK, audit entry,
    missed intervals reported; --dry-run changes nothing (full store dumps).
(b) the same with the Prefect server stopped (a dedicated server, not the session one): the legacy
    side is resumed, exit 3, the journal shows the Prefect steps FAILED and the state unchanged;
    once the server is back the same command completes the same operation (exit 0).
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.helpers import dump_stores
from tests.prefect_fixtures import prefect_cleanup, prefect_env, prefect_server  # noqa: F401
from tests.helpers import cutover_cli as cli

pytestmark = [pytest.mark.slow, pytest.mark.prefect]

HOURLY = {"cron": "0 * * * *"}


def setup_cutover(tmp_path: Path, ids: list[str], *, cutover: list[str], env_extra=None, cleanup=None) -> None:
    """Hourly ingestions with APScheduler jobs and one legacy run each, shadow started; ``cutover`` moved to CUTOVER."""
    import yaml

    items = []
    for n, iid in enumerate(ids):
        src = tmp_path / "src" / iid
        src.mkdir(parents=True, exist_ok=True)
        (src / "a.csv").write_text("id,v\n" + "".join(f"{n * 100 + i},{i}\n" for i in range(5)))
        items.append({"id": iid, "source_uri": str(src), "pattern": "*.csv", "format": "csv",
                      "table": f"t.{iid.replace('-', '_')}", "schedule": HOURLY, "timezone": "UTC",
                      "key_columns": ["id"]})
        if cleanup:
            cleanup(iid)
    (tmp_path / "defs.yaml").write_text(yaml.safe_dump({"ingestions": items}))
    cli("ingestion", "add", "--from-file", str(tmp_path / "defs.yaml"), check=0, env_extra=env_extra)
    cli("legacy", "sync", check=0, env_extra=env_extra)
    cli("legacy", "run", "--all", check=0, env_extra=env_extra)
    cli("shadow", "start", "--all", check=0, env_extra=env_extra)
    plan = tmp_path / "plan.json"
    cli("plan", "--select", ",".join(cutover), "--waves", "rest", "--gate", "streak>=0", "--out", str(plan),
        check=0, env_extra=env_extra)
    cli("execute", str(plan), "--yes", check=0, env_extra=env_extra)


def status(env_extra=None) -> dict:
    res = cli("status", "--json", env_extra=env_extra)
    assert res.returncode in (0, 1, 3), res.stderr
    return {r["id"]: r for r in json.loads(res.stdout)["ingestions"]}


def deployment(url: str, name: str):
    from flows.local import client

    with client(url) as c:
        return c.read_deployment_by_name(f"cutover-ingest/{name}")


def journal_steps(home: Path, prefix: str) -> dict[str, list[tuple[str, str]]]:
    con = sqlite3.connect(home / "state.db")
    rows = con.execute("select operation_id, step, status from journal where operation_id like ? order by id",
                       (prefix + "%",)).fetchall()
    con.close()
    out: dict[str, list[tuple[str, str]]] = {}
    for op, step, st in rows:
        out.setdefault(op, []).append((step, st))
    return out


def next_hour(after: datetime) -> datetime:
    return (after.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)).astimezone(timezone.utc)


# -- (a) ----------------------------------------------------------------------------------------

def test_rollback_cutover_ingestion(prefect_server, prefect_env, prefect_cleanup, tmp_path):
    home = prefect_env
    setup_cutover(tmp_path, ["rb-a", "rb-b"], cutover=["rb-a"], cleanup=prefect_cleanup)
    st = status()
    assert (st["rb-a"]["state"], st["rb-a"]["legacy"], st["rb-a"]["prefect_live"]) == ("CUTOVER", "paused", "active")

    from cutover.core.workspace import Workspace
    from cutover.core.autoloader.discovery import DiscoveredFile
    from legacy.apscheduler.scheduler import JobSync

    ws = Workspace()
    # The legacy side was paused for the cutover 5.5 hours ago (backdated in the journal) ...
    paused_at = datetime.now(timezone.utc) - timedelta(hours=5, minutes=30)
    con = sqlite3.connect(home / "state.db")
    n = con.execute("update journal set ended_at = ? where step = 'rb-a: pause the legacy job' and status = 'DONE'",
                    (paused_at.strftime("%Y-%m-%d %H:%M:%S.%f"),)).rowcount
    con.commit()
    con.close()
    assert n == 1
    # ... every earlier run is older than that; then: one successful Prefect live run after the 2nd fire
    # time (covers that interval), a failed legacy run and a successful *shadow* run (cover nothing).
    fires = [next_hour(paused_at) + timedelta(hours=k) for k in range(5)]
    aut = sqlite3.connect(home / "autoloader.db")
    aut.execute("update runs set started_at = ? where ingestion_id = 'rb-a'",
                ((paused_at - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S.%f"),))
    aut.commit()
    made = []
    for orch, mode, status_, at in (("prefect", "live", "SUCCESS", fires[1] + timedelta(minutes=3)),
                                    ("legacy", "live", "FAILED", fires[2] + timedelta(minutes=1)),
                                    ("prefect", "shadow", "SUCCESS", fires[3] + timedelta(minutes=1))):
        rid = ws.runs.start("rb-a", orchestrator=orch, mode=mode, trigger="scheduled")
        ws.runs.finish(rid, status_)
        made.append((rid, at))
    # an in-flight Prefect live run whose process is gone (no heartbeat for a day), holding a claim
    dead = ws.runs.start("rb-a", orchestrator="prefect", mode="live", trigger="scheduled", external_id="nope")
    claim = ws.ledger("rb-a", "live").claim(DiscoveredFile(str(tmp_path / "src" / "rb-a" / "b.csv"), 10, "e", 1.0), dead)
    assert claim is not None
    day_ago = (datetime.now(timezone.utc) - timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S.%f")
    for rid, at in made:
        aut.execute("update runs set started_at = ? where id = ?", (at.strftime("%Y-%m-%d %H:%M:%S.%f"), rid))
    aut.execute("update runs set heartbeat_at = ?, started_at = ? where id = ?", (day_ago, day_ago, dead))
    aut.execute("update processed_files set claimed_at = ? where claimed_by = ?", (day_ago, dead))
    aut.commit()
    aut.close()
    # a scheduled flow run of the live deployment, an hour ahead: cancelled by --cancel-running
    from prefect.states import Scheduled

    dep = deployment(prefect_server.url, "rb-a-live")
    with prefect_server.client() as c:
        fr = c.create_flow_run_from_deployment(dep.id, state=Scheduled(
            scheduled_time=datetime.now(timezone.utc) + timedelta(hours=1)))

    # --dry-run: the same steps, the same report, nothing changed anywhere
    before = dump_stores(home, prefect_server.url)
    res = cli("rollback", "rb-a", "--cancel-running", "--dry-run", "--json", check=0)
    dry = json.loads(res.stdout)
    assert "[would run] rb-a: pause Prefect deployment live" in res.stderr
    assert "Dry run: nothing was changed." in res.stderr
    res = cli("rollback", "--wave", "1", "--plan", str(tmp_path / "plan.json"), "--dry-run", check=0)
    assert "rb-a: CUTOVER -> ROLLED_BACK" in res.stdout and "rb-b" not in res.stdout
    assert dump_stores(home, prefect_server.url) == before

    res = cli("rollback", "rb-a", "--cancel-running", "--reason", "bad parity in prod", "--json", check=0)
    report = json.loads(res.stdout)
    assert report["ingestions"] == ["rb-a"] and report["partial"] is None
    # state, both sides
    st = status()
    assert (st["rb-a"]["state"], st["rb-a"]["live_owner"], st["rb-a"]["legacy"], st["rb-a"]["prefect_live"],
            st["rb-a"]["prefect_shadow"], st["rb-a"]["invariant_ok"]) == (
        "ROLLED_BACK", "legacy", "scheduled", "paused", "paused", True)
    assert st["rb-b"]["state"] == "SHADOW" and st["rb-b"]["prefect_shadow"] == "active"  # untouched
    assert deployment(prefect_server.url, "rb-a-live").paused and deployment(prefect_server.url, "rb-a-shadow").paused
    # the legacy job resumes at its next correct fire time from the moment it was resumed
    mi = report["missed_intervals"]["rb-a"]
    resumed_at = datetime.fromisoformat(mi["resumed_at"])
    job = {j.ingestion_id: j for j in JobSync(ws.settings).jobs()}["rb-a"]
    assert not job.paused and job.next_run_time == next_hour(resumed_at)
    assert not ws.ingestions.get("rb-a").batch_paused
    # in-flight work cancelled: the scheduled flow run, and the dead run's record and claim
    with prefect_server.client() as c:
        assert c.read_flow_run(fr.id).state.type.value == "CANCELLED"
    assert ws.runs.get(dead).status == "CANCELLED"
    assert ws.ledger("rb-a", "live").entries(status="PROCESSING") == []
    # the missed intervals: every hourly fire time since the pause, except the one a live run covered
    expect = [t for t in (next_hour(paused_at) + timedelta(hours=k) for k in range(8)) if t <= resumed_at]
    expect.remove(fires[1])
    assert [datetime.fromisoformat(x["fire_time"]) for x in mi["missed"]] == expect
    assert datetime.fromisoformat(mi["paused_at"]) == paused_at
    assert dry["missed_intervals"]["rb-a"]["missed"][:len(expect) - 1] == mi["missed"][:len(expect) - 1]
    res = cli("rollback", "rb-a", "--reason", "again")  # text report; already done: a no-op
    assert res.returncode == 0 and "rb-a: already ROLLED_BACK" in res.stdout
    # the audit trail
    log = json.loads(cli("log", "--json", check=0).stdout)
    rb = [e for e in log if e["action"] == "rollback"]
    assert rb and rb[0]["reason"] == "bad parity in prod" and rb[0]["target"] == "rb-a"
    assert rb[0]["detail"]["failed"] is None


def test_rollback_refuses_unknown_and_names_nothing(prefect_env):
    res = cli("rollback", "nope")
    assert res.returncode == 2 and "no ingestion or job 'nope'" in res.stderr
    res = cli("rollback")
    assert res.returncode == 2 and "say what to roll back" in res.stderr


# -- (b) ----------------------------------------------------------------------------------------

@pytest.fixture
def own_server(tmp_path):
    """A Prefect server of this test alone (stopping it must not break the session's)."""
    from flows import local as pl
    from tests.prefect_fixtures import _settings_for

    settings, env = _settings_for(tmp_path / "own-prefect")
    port = pl.free_port()
    proc, url, _, _ = pl.start_server(settings, port=port, timeout=120, env=env)
    srv = {"settings": settings, "env": env, "port": port, "url": url, "proc": proc}

    def stop():
        pl._terminate(srv["proc"].pid, grace=10)
        assert not pl.pid_alive(srv["proc"].pid)

    def start():
        srv["proc"], _, _, _ = pl.start_server(settings, port=port, timeout=120, env=env)

    srv["stop"], srv["start"] = stop, start
    try:
        yield srv
    finally:
        pl._terminate(srv["proc"].pid, grace=10)


def test_rollback_with_prefect_down_then_completed(workspace_env, own_server, tmp_path):
    home = workspace_env
    env = {"PREFECT_API_URL": own_server["url"]}
    setup_cutover(tmp_path, ["dn-a"], cutover=["dn-a"], env_extra=env)
    assert status(env)["dn-a"]["state"] == "CUTOVER"

    own_server["stop"]()
    res = cli("rollback", "dn-a", "--reason", "prefect outage", env_extra=env)
    assert res.returncode == 3, (res.stdout, res.stderr)
    assert "FAILED  dn-a: pause Prefect deployment live" in res.stdout and "is unreachable" in res.stdout
    assert "done    dn-a: resume the legacy job (resumed)" in res.stdout
    assert "held    dn-a: state CUTOVER -> ROLLED_BACK" in res.stdout
    # the legacy side owns it again, the state did not change, the journal says what is left
    from cutover.core.workspace import Workspace
    from legacy.apscheduler.scheduler import JobSync

    ws = Workspace()
    assert JobSync(ws.settings).is_paused("dn-a") is False and not ws.ingestions.get("dn-a").batch_paused
    con = sqlite3.connect(home / "state.db")
    assert con.execute("select state from cutover_states where ingestion_id='dn-a'").fetchone()[0] == "CUTOVER"
    con.close()
    ops = journal_steps(home, "rollback-")
    assert len(ops) == 1
    (op_id, steps), = ops.items()
    assert steps == [("dn-a: pause Prefect deployment live (a failure does not stop the operation)", "FAILED"),
                     ("dn-a: pause Prefect deployment shadow (a failure does not stop the operation)", "FAILED"),
                     ("dn-a: resume the legacy job", "DONE"),
                     ("dn-a: state CUTOVER -> ROLLED_BACK", "PENDING")]
    st = status(env)["dn-a"]  # Prefect unreadable: legacy scheduled, the operation shown in flight
    assert st["legacy"] == "scheduled" and st["operation_in_flight"] == op_id

    own_server["start"]()  # the same SQLite DB, the same port
    res = cli("rollback", "dn-a", "--reason", "prefect outage", env_extra=env)
    assert res.returncode == 0, (res.stdout, res.stderr)
    assert "done    dn-a: pause Prefect deployment live" in res.stdout and "rolled back: dn-a" in res.stdout
    ops = journal_steps(home, "rollback-")
    assert list(ops) == [op_id], "the re-run resumed the same operation"
    assert [s for _, s in ops[op_id]] == ["DONE"] * 4
    st = status(env)["dn-a"]
    assert (st["state"], st["legacy"], st["prefect_live"], st["prefect_shadow"], st["invariant_ok"]) == (
        "ROLLED_BACK", "scheduled", "paused", "paused", True)
    assert deployment(own_server["url"], "dn-a-live").paused
