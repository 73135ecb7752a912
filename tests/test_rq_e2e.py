"""The RQ legacy side end to end with the real parts: Redis + RQ workers, Prefect server + worker.

- shadow run + parity + handoff + rollback, like test_cron_shadow_parity_cutover_and_rollback;
- the Prefect side runs the workflow's DAG with the independent steps at the same time;
- the incident mass pause (`cutover pause --all`, `cutover resume --snapshot`) covers RQ
  workflows: workers suspended, holds set, restored exactly (a hand-held one stays held).
"""

from __future__ import annotations

import json
from datetime import timezone

import pytest

from tests.helpers import write_csv_files
from tests.prefect_fixtures import prefect_cleanup, prefect_env, prefect_server, wait_flow_run  # noqa: F401
from tests.helpers import invoke_cli as _cli

pytestmark = [pytest.mark.slow, pytest.mark.prefect, pytest.mark.rq]
UTC = timezone.utc


@pytest.fixture
def rq_prefect(rq_session, prefect_env, prefect_server):
    """A workspace on the session Prefect server whose rq.json points at the session Redis."""
    from cutover.core.workspace import Workspace
    from tests.rq_fixtures import RQWorkspace, cleanup, make_config

    ws = Workspace()
    cfg = make_config(rq_session)
    cfg.save(ws.settings)
    try:
        yield RQWorkspace(ws, prefect_env, cfg, rq_session)
    finally:
        cleanup(rq_session, ws, cfg.key_prefix)


def _import(rw, tmp_path, capsys, ingestions: list[dict], workflows: dict) -> None:
    import yaml

    defs = tmp_path / "defs.yaml"
    defs.write_text(yaml.safe_dump({"ingestions": ingestions}))
    setup = tmp_path / "rq-setup.yaml"
    setup.write_text(yaml.safe_dump({"queue": rw.config.queue, "key_prefix": rw.config.key_prefix,
                                     "workflows": workflows}))
    code, out, err = _cli(capsys, "rq", "import", "--config", str(setup), "--definitions", str(defs))
    assert code == 0, out + err
    assert rw.session.password not in out + err


def _definition(iid: str, src, schedule=None) -> dict:
    return {"id": iid, "source_uri": str(src), "pattern": "*.csv", "format": "csv", "table": f"rqe.{iid}",
            "key_columns": ["id"], "schedule": schedule or {"cron": "0 3 1 1 *"}, "timezone": "UTC"}


def test_rq_shadow_parity_cutover_and_rollback(rq_prefect, prefect_server, prefect_cleanup, tmp_path, capsys):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    from cutover.core.state import states
    from cutover.engine.execute import operation
    from cutover.engine.rollback import rollback
    from cutover.engine.plan import Move, steps_for
    from flows.adapter import PrefectAdapter
    from legacy.batch.orchestrator import IngestionPaused
    from legacy.rq.adapter import RQAdapter
    from cutover.registry.sides import RQLiveSides

    rw = rq_prefect
    ws = rw.ws
    iid = "rqorders"
    prefect_cleanup(iid)
    src = tmp_path / "src"
    write_csv_files(src, 3)
    _import(rw, tmp_path, capsys, [_definition(iid, src)], {iid: {"partitions": 2}})
    cfg = rw.config.__class__.load(ws.settings)
    rq = RQAdapter(ws, cfg)
    first = rq.trigger(iid, wait=True, timeout=120)  # the legacy side runs first: the table exists
    assert ws.runs.get(first).status == "SUCCESS" and ws.runs.get(first).files_processed == 3

    code, out, err = _cli(capsys, "shadow", "start", iid)
    assert code == 0, out + err
    with PrefectAdapter(ws, prefect_server.url, mode="shadow") as ad, ad.client() as c:
        dep = c.read_deployment_by_name(f"cutover-ingest/{iid}-shadow")
        assert dep.entrypoint == "flows/dag.py:run_workflow"
        assert [s["name"] for s in dep.parameters["steps"]] == ["discover", "ingest-0", "ingest-1", "publish"]
        assert dep.parameters["mode"] == "shadow"

    # new files; both sides run them: legacy live through RQ's workers, Prefect's DAG in shadow
    write_csv_files(src, 6, start=10)
    legacy_run = rq.trigger(iid, wait=True, timeout=120)
    with PrefectAdapter(ws, prefect_server.url, mode="shadow") as ad:
        fr = ad.trigger(iid)
    assert wait_flow_run(prefect_server, fr, timeout=120).state.type.value == "COMPLETED"
    assert ws.runs.get(legacy_run).files_processed == 6
    shadow_rec = [r for r in ws.runs.list(ingestion_id=iid, orchestrator="prefect") if r.external_id == fr][0]
    assert (shadow_rec.mode, shadow_rec.status, shadow_rec.files_processed) == ("shadow", "SUCCESS", 6)
    assert {e.path for e in ws.ledger(iid, "shadow").entries() if e.status == "SUCCESS"} == \
        {e.path for e in ws.ledger(iid, "live").entries() if e.run_id == legacy_run}

    # the Prefect DAG submitted the two ingest partitions together: each task run existed before the
    # other ended (task runs from the Prefect API). Their Running states may still be serialised by a
    # SQLite Prefect server under load (its writes retry on "database is locked"), so the start times
    # are not what the DAG controls.
    with prefect_server.client() as c:
        trs = {t.name: t for t in c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[fr])),
                                                  sort=TaskRunSort.EXPECTED_START_TIME_ASC, limit=200)}
    assert {"discover", "ingest-0", "ingest-1", "publish"} <= set(trs), sorted(trs)
    i0, i1 = trs["ingest-0"], trs["ingest-1"]
    assert i0.created < i1.end_time and i1.created < i0.end_time, (i0.created, i0.end_time, i1.created, i1.end_time)
    assert min(i0.start_time, i1.start_time) >= trs["discover"].end_time
    assert trs["publish"].start_time >= max(i0.end_time, i1.end_time)

    code, out, err = _cli(capsys, "parity", iid, "--since", "fork", "--format", "json")
    assert code == 0, out + err
    assert json.loads(out)["ingestions"][0]["verdict"] == "pass", out

    # `cutover shadow run --once`: the legacy half goes through RQ's workers, not the batch orchestrator
    write_csv_files(src, 2, start=30)
    code, out, err = _cli(capsys, "shadow", "run", "--once", iid, "--format", "json")
    assert code == 0, out + err
    assert json.loads(out)["ingestions"][0]["verdict"] == "pass", out
    newest = [r for r in ws.runs.list(ingestion_id=iid, orchestrator="legacy", mode="live")
              if r.id not in (first, legacy_run)]
    assert len(newest) == 1 and newest[0].files_processed == 2, newest
    assert (newest[0].external_id or "").startswith("rq:"), newest[0].external_id

    # the handoff with the RQ-aware legacy side: held in Redis (kickoff out of the registry), Prefect live
    kick_before = [(k.job_id, k.at) for k in rq.store.kickoffs(rq.definition(iid))]
    assert len(kick_before) == 1
    sides = RQLiveSides(ws, prefect_api_url=prefect_server.url)
    move = Move(iid, states.SHADOW, states.CUTOVER, steps_for(iid, states.SHADOW, states.CUTOVER, handoff_timeout=60))
    operation(ws, "cutover-test", [move], sides, lambda _m: None, dry_run=False)
    assert rq.is_paused(iid) is True
    assert [(k.job_id, k.at, k.held) for k in rq.store.kickoffs(rq.definition(iid))] == \
        [(j, at, True) for j, at in kick_before]
    assert ws.ingestions.get(iid).batch_paused
    with pytest.raises(IngestionPaused):
        rq.trigger(iid)
    assert sides.legacy().live_state()[iid] == {"live": False, "text": "paused (RQ hold)"}
    with PrefectAdapter(ws, prefect_server.url, mode="live") as ad:
        assert ad.is_paused(iid) is False
    code, out, err = _cli(capsys, "status")
    assert code == 0, out + err  # exactly one live owner: Prefect

    # rollback: Prefect paused, the hold lifted, the SAME kickoff back in the registry, batch flag cleared
    report = rollback(ws, [iid], echo=lambda _m: None, sides=RQLiveSides(ws, prefect_api_url=prefect_server.url))
    assert report["ingestions"] == [iid] and report["partial"] is None
    assert states.get_states(ws.state_engine)[iid] == states.ROLLED_BACK
    assert rq.is_paused(iid) is False
    assert [(k.job_id, k.at, k.held) for k in rq.store.kickoffs(rq.definition(iid))] == \
        [(j, at, False) for j, at in kick_before]
    assert not ws.ingestions.get(iid).batch_paused
    with PrefectAdapter(ws, prefect_server.url, mode="live") as ad:
        assert ad.is_paused(iid) is True
    # legacy runs again, and only the new file is ingested: exactly once across the whole story
    more = write_csv_files(src, 1, start=50)
    again = rq.trigger(iid, wait=True, timeout=120)
    assert (ws.runs.get(again).status, ws.runs.get(again).files_processed) == ("SUCCESS", 1)
    live = ws.ledger(iid, "live").entries()
    assert len(live) == 12 and len({e.path for e in live}) == 12 and {e.status for e in live} == {"SUCCESS"}
    assert ws.catalog.total_records(f"rqe.{iid}") == sum(e.records_ingested for e in live)
    assert next(iter(more)) in {e.path for e in live}
    rq.close()


def test_mass_pause_and_resume_cover_rq_workflows(rq_prefect, prefect_server, prefect_cleanup, tmp_path, capsys):
    from legacy.rq.adapter import RQAdapter

    rw = rq_prefect
    ws = rw.ws
    srcs = {}
    for iid in ("rqa", "rqb"):
        prefect_cleanup(iid)
        srcs[iid] = tmp_path / iid
        write_csv_files(srcs[iid], 1)
    _import(rw, tmp_path, capsys, [_definition(i, s) for i, s in srcs.items()], {"rqa": {}, "rqb": {}})
    rq = RQAdapter(ws, rw.config.__class__.load(ws.settings))
    assert rq.pause("rqb", reason="held by hand before the incident")  # must stay held after resume
    kick = {i: [(k.job_id, k.at) for k in rq.store.kickoffs(rq.definition(i))] for i in ("rqa", "rqb")}
    assert not rq.store.suspended()

    code, out, err = _cli(capsys, "pause", "--all", "--dry-run")
    assert code == 0, out + err
    assert "RQ: 2 workflow(s), 1 to hold; workers suspended" in out
    assert rq.is_paused("rqa") is False and not rq.store.suspended()

    code, out, err = _cli(capsys, "pause", "--all", "--reason", "redis incident drill")
    assert code == 0, out + err
    assert rw.session.password not in out + err
    assert rq.store.suspended(), "the workers were not suspended (rq suspend)"
    assert rq.is_paused("rqa") is True and rq.is_paused("rqb") is True
    assert [k.held for k in rq.store.kickoffs(rq.definition("rqa"))] == [True]
    from cutover.engine.pause import active

    snap = active(ws.state_engine)
    assert snap.fences["rq"] == {"suspended_before": False}
    assert snap.sides["rq"]["holds"] == {"rqa": False, "rqb": True}
    from legacy.batch.orchestrator import IngestionPaused

    with pytest.raises(IngestionPaused):
        rq.trigger("rqa")

    code, out, err = _cli(capsys, "resume", "--snapshot", snap.id)
    assert code == 0, out + err
    assert not rq.store.suspended()
    assert rq.is_paused("rqa") is False
    assert rq.is_paused("rqb") is True, "resume un-paused what a human had paused"
    for i in ("rqa", "rqb"):
        assert [(k.job_id, k.at) for k in rq.store.kickoffs(rq.definition(i))] == kick[i]
    run_id = rq.trigger("rqa", wait=True, timeout=120)  # the workers work again
    assert ws.runs.get(run_id).status == "SUCCESS"
    rq.close()
