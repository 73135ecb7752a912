"""`cutover prefect export --format prefect-yaml`: the deployments cutover manages as a prefect.yaml,
proven by a round trip through Prefect's own `prefect deploy --all` against a real server.

Export from the session server, delete the deployments, apply the file with
`prefect deploy --all --prefect-file FILE` (a subprocess, from the repository root), and
compare: names, schedules (cron with day_or, interval with anchor_date, rrule, timezones,
slug, active), tags, parameters, work pool + queue, job variables, pull steps, entrypoint,
paused flags -- and cutover's own deploy plan says "unchanged" for every one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT, add_ingestion, write_csv_files
from tests.helpers import invoke_cli as _cli
from tests.prefect_fixtures import delete_deployments, prefect_cleanup, prefect_env, prefect_server  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.prefect]


# `prefect deploy --all` used to stop after the first deployment: its "is a worker online?" call
# sends `"limit": null`, which Prefect 3.8.8's server rejects with 422 under fastapi>=0.151
# (flows/export.py). pyproject pins fastapi<0.151; this test runs the plain command, no shim.


def _snapshot(server, names: list[str]) -> dict[str, dict]:
    from flows.deploy import FLOW_NAME

    out = {}
    with server.client() as c:
        for name in names:
            d = c.read_deployment_by_name(f"{FLOW_NAME}/{name}")
            out[name] = {
                "tags": sorted(d.tags), "parameters": d.parameters, "paused": d.paused,
                "work_pool": d.work_pool_name, "work_queue": d.work_queue_name, "job_variables": d.job_variables,
                "pull_steps": d.pull_steps, "entrypoint": d.entrypoint,
                "enforce_parameter_schema": d.enforce_parameter_schema, "description": d.description,
                "schedules": sorted((s.slug, s.active, s.schedule.model_dump_json()) for s in d.schedules),
            }
    return out


def test_export_round_trip_with_prefect_deploy(prefect_server, prefect_env, prefect_cleanup, tmp_path, capsys):
    from cutover.core.workspace import Workspace
    from flows.adapter import PrefectAdapter
    from flows.deploy import desired, plan_one

    ws = Workspace()
    src = tmp_path / "src"
    write_csv_files(src, 2)
    specs = {
        # crontab line (Vixie semantics): a plain Prefect cron, day_or=True
        "ex-cron": dict(schedule={"crontab": "15 * * * *"}),
        # day-of-month OR weekday (crontab), in a DST zone
        "ex-or": dict(schedule={"crontab": "30 6 1 * 1"}, timezone="Europe/Berlin", priority="high"),
        # APScheduler day AND weekday: day_or=False
        "ex-and": dict(schedule={"trigger": "cron", "day": "1-7", "day_of_week": "mon", "hour": 2, "minute": 0},
                       size_class="large"),
        # an interval with its anchor in a zone
        "ex-interval": dict(schedule={"trigger": "interval", "hours": 6, "start_date": "2026-01-01T00:30:00"},
                            timezone="America/New_York"),
        # APScheduler 'last' day: an RRULE
        "ex-rrule": dict(schedule={"trigger": "cron", "day": "last", "hour": 23, "minute": 45}, timezone="Asia/Tokyo"),
        "ex-manual": dict(),
        # an RQ workflow (legacy/rq): the DAG flow flows/dag.py:run_workflow with the DAG as a parameter
        "ex-rq": dict(schedule={"cron": "45 1 * * *"}),
    }
    for iid, extra in specs.items():
        prefect_cleanup(iid)
        add_ingestion(ws, iid, src, **extra)
    from legacy.rq.model import RQConfig

    RQConfig(workflows={"ex-rq": {"partitions": 2}}).save(ws.settings)  # no Redis needed to deploy

    code, out, err = _cli(capsys, "prefect", "deploy", *specs, "--mode", "live")
    assert code == 0, err
    # a shadow deployment too (its table must exist: one legacy run first), and different paused states
    code, _, err = _cli(capsys, "legacy", "run", "ex-cron")
    assert code == 0, err
    code, _, err = _cli(capsys, "prefect", "deploy", "ex-cron", "--mode", "shadow")
    assert code == 0, err
    with PrefectAdapter(ws, prefect_server.url, mode="live") as ad:
        assert ad.resume("ex-or") is True  # one live deployment active, the others paused (creation default)
    names = [f"{i}-live" for i in specs] + ["ex-cron-shadow"]
    before = _snapshot(prefect_server, names)
    assert before["ex-or-live"]["paused"] is False and before["ex-cron-live"]["paused"] is True
    assert before["ex-cron-shadow"]["paused"] is False

    out_file = tmp_path / "prefect.yaml"
    code, out, err = _cli(capsys, "prefect", "export", "--format", "prefect-yaml", "--out", str(out_file))
    assert code == 0, err
    doc = yaml.safe_load(out_file.read_text())
    deps = {d["name"]: d for d in doc["deployments"]}
    assert set(names) <= set(deps)
    assert deps["ex-cron-live"]["schedules"] == [{"cron": "15 * * * *", "day_or": True, "timezone": "UTC",
                                                  "active": True, "slug": "cutover"}]
    assert deps["ex-and-live"]["schedules"][0]["day_or"] is False
    assert deps["ex-interval-live"]["schedules"][0]["interval"] == 6 * 3600
    assert deps["ex-interval-live"]["schedules"][0]["anchor_date"]
    assert deps["ex-rrule-live"]["schedules"][0]["rrule"].startswith("DTSTART")
    assert deps["ex-manual-live"]["schedules"] == []
    assert deps["ex-or-live"]["work_pool"]["work_queue_name"] == "priority"
    assert deps["ex-and-live"]["work_pool"]["work_queue_name"] == "high-memory"
    assert deps["ex-cron-live"]["paused"] is True and deps["ex-or-live"]["paused"] is False
    assert deps["ex-cron-live"]["entrypoint"] == "flows/ingest.py:run_ingestion"
    assert deps["ex-rq-live"]["entrypoint"] == "flows/dag.py:run_workflow"
    assert [s["name"] for s in deps["ex-rq-live"]["parameters"]["steps"]] == [
        "discover", "ingest-0", "ingest-1", "publish"]
    assert deps["ex-cron-live"]["pull"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}]
    assert doc["definitions"]["work_pools"][0]["name"] == prefect_server.work_pool

    # the same export to stdout is the same document
    code, out, err = _cli(capsys, "prefect", "export")
    assert code == 0, err
    assert yaml.safe_load(out)["deployments"] == doc["deployments"]

    # keep only this test's deployments in the file (the session server is shared), then apply it
    doc["deployments"] = [deps[n] for n in names]
    out_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert delete_deployments(prefect_server, list(specs)) == len(names)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUTOVER_", "PREFECT_"))}
    env.update(PREFECT_API_URL=prefect_server.url, PREFECT_HOME=str(tmp_path / "prefect-cli-home"),
               PYTHONPATH=str(ROOT))
    prefect_bin = Path(sys.executable).with_name("prefect")
    r = subprocess.run([str(prefect_bin), "--no-prompt", "deploy", "--all", "--prefect-file", str(out_file)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.count("successfully created") == len(names), r.stdout[-3000:]
    assert "Skipping" not in r.stdout, r.stdout[-3000:]

    after = _snapshot(prefect_server, names)
    for name in names:
        assert after[name] == before[name], name

    # cutover's own plan agrees: nothing to change
    with PrefectAdapter(ws, prefect_server.url, mode="live") as ad, ad.client() as c:
        for iid in specs:
            item = plan_one(c, desired(ws, ws.ingestions.get(iid), "live"))
            assert item.action == "unchanged", (iid, item.changes)
