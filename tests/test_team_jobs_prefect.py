"""A team's own jobs on the Prefect side, for real (issue #15 item 3): the session's Prefect server
and process worker run flows/jobs.py from deployments the adapter made.

- a callable is imported from its code location (a directory) and called with its args/kwargs;
  one that raises ends Failed, with the traceback in the flow-run logs;
- a command's exit code decides the state (an accepted non-zero code Completes, another Fails),
  its output is in the flow-run logs and the output tail in job_run_output;
- the shadow deployment of an env job runs it with CUTOVER_MODE=shadow and its prefix; an observe
  job gets no shadow deployment.
"""

from __future__ import annotations

import json
import textwrap

import pytest
from sqlalchemy import select

from cutover.core.records.jobs import validate_job
from cutover.core.records.tables import job_run_output
from tests.prefect_fixtures import prefect_cleanup, prefect_env, prefect_server, wait_flow_run  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.prefect]


def _ws():
    from cutover.core.workspace import Workspace

    return Workspace()


def _logs(server, flow_run_id: str, *, until: str | None = None, timeout: float = 60.0) -> str:
    """The flow run's logs; with ``until``, polled until that text is there (the flow-run process ships
    its logs in batches, which may reach the server after the final state)."""
    import time

    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    deadline = time.monotonic() + timeout
    while True:
        with server.client() as c:
            logs = c.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200)
        text = "\n".join(lg.message for lg in logs)
        if until is None or until in text or time.monotonic() > deadline:
            return text
        time.sleep(1.0)


def _run(ws, server, job_id: str, mode: str = "live"):
    from flows.adapter import PrefectAdapter

    with PrefectAdapter(ws, server.url, mode=mode, paused_on_create=False) as ad:
        assert ad.ensure_job(ws.jobs.get(job_id)) == "created"
        fr = ad.trigger(job_id)
    return wait_flow_run(server, fr, timeout=120)


def _record(ws, job_id: str, flow_run_id):
    recs = [r for r in ws.runs.list(ingestion_id=job_id, orchestrator="prefect") if r.external_id == str(flow_run_id)]
    assert len(recs) == 1, recs
    return recs[0]


def test_callables_ok_and_raising(prefect_server, prefect_env, prefect_cleanup, tmp_path):
    code = tmp_path / "teamcode"
    (code / "acme_t").mkdir(parents=True)
    (code / "acme_t" / "__init__.py").write_text("")
    out = tmp_path / "out"
    (code / "acme_t" / "jobs.py").write_text(textwrap.dedent(f"""
        import json, os

        def export(region, *, full=False):
            path = os.path.join({str(out)!r}, f"{{region}}.json")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as fh:
                json.dump({{"region": region, "full": full, "mode": os.environ.get("CUTOVER_MODE")}}, fh)
            return path

        def broken():
            return helper_that_fails(3)

        def helper_that_fails(n):
            raise ValueError(f"upstream returned {{n}} rows too many (password=s3cr3t-value)")
    """))
    ws = _ws()
    ws.jobs.upsert([
        validate_job({"id": "t-export", "kind": "callable", "target": "acme_t.jobs:export", "args": ["eu"],
                      "kwargs": {"full": True}, "code_location": str(code), "shadow": "env"}),
        validate_job({"id": "t-broken", "kind": "callable", "target": "acme_t.jobs:broken",
                      "code_location": str(code), "shadow": "observe"}),
    ], replace_existing=False)
    for j in ("t-export", "t-broken"):
        prefect_cleanup(j)

    fr = _run(ws, prefect_server, "t-export")
    assert fr.state.type.value == "COMPLETED", fr.state.message
    assert json.loads((out / "eu.json").read_text()) == {"region": "eu", "full": True, "mode": "live"}
    assert _record(ws, "t-export", fr.id).status == "SUCCESS"

    fr = _run(ws, prefect_server, "t-broken")
    assert fr.state.type.value == "FAILED"
    assert "ValueError" in fr.state.message
    logs = _logs(prefect_server, fr.id, until="upstream returned 3 rows too many")
    assert "Traceback (most recent call last)" in logs and "helper_that_fails" in logs
    assert "upstream returned 3 rows too many" in logs
    rec = _record(ws, "t-broken", fr.id)
    assert rec.status == "FAILED" and "ValueError" in rec.error
    assert "s3cr3t-value" not in logs + fr.state.message + rec.error  # secrets never reach Prefect's records

    # shadow: the env job runs with the shadow variables; the observe job gets no shadow deployment
    from flows.adapter import PrefectAdapter

    with PrefectAdapter(ws, prefect_server.url, mode="shadow", paused_on_create=False) as ad:
        assert ad.ensure_job(ws.jobs.get("t-broken")) == "unchanged"
        assert ad.is_paused("t-broken") is None
    (out / "eu.json").unlink()
    fr = _run(ws, prefect_server, "t-export", mode="shadow")
    assert fr.state.type.value == "COMPLETED", fr.state.message
    assert json.loads((out / "eu.json").read_text())["mode"] == "shadow"
    assert _record(ws, "t-export", fr.id).mode == "shadow"


def test_command_exit_codes(prefect_server, prefect_env, prefect_cleanup, tmp_path):
    ws = _ws()
    script = tmp_path / "sync.sh"
    script.write_text('#!/bin/sh\necho "syncing $1 for $ETL_ENV"\necho "3 rows rejected" >&2\nexit "$2"\n')
    script.chmod(0o755)
    ws.jobs.upsert([
        validate_job({"id": "t-sync-ok", "kind": "command", "argv": [str(script), "customers", "3"],
                      "env": {"ETL_ENV": "prod"}, "ok_exit_codes": [0, 3], "shadow": "observe"}),
        validate_job({"id": "t-sync-bad", "kind": "command", "shell": f"{script} orders 1", "cwd": str(tmp_path),
                      "env": {"ETL_ENV": "prod"}, "shadow": "observe"}),
    ], replace_existing=False)
    for j in ("t-sync-ok", "t-sync-bad"):
        prefect_cleanup(j)

    fr = _run(ws, prefect_server, "t-sync-ok")
    assert fr.state.type.value == "COMPLETED", fr.state.message
    logs = _logs(prefect_server, fr.id, until="3 rows rejected")
    assert "syncing customers for prod" in logs and "3 rows rejected" in logs
    rec = _record(ws, "t-sync-ok", fr.id)
    with ws.autoloader_engine.connect() as conn:
        row = conn.execute(select(job_run_output).where(job_run_output.c.run_id == rec.id)).one()
    assert row.exit_code == 3 and "syncing customers for prod" in row.output_tail

    fr = _run(ws, prefect_server, "t-sync-bad")
    assert fr.state.type.value == "FAILED"
    assert "exited 1" in fr.state.message
    assert "syncing orders for prod" in _logs(prefect_server, fr.id, until="syncing orders for prod")
    assert _record(ws, "t-sync-bad", fr.id).status == "FAILED"


def test_shadow_runs_leave_production_untouched(prefect_server, prefect_env, prefect_cleanup, tmp_path):
    """examples/acme_etl's env and sdk jobs run by the Prefect worker in shadow: main's head, the live
    ledger and every production output file stay exactly as the live runs left them; the env jobs
    wrote under the shadow prefix, the sdk job to cutover-shadow and the shadow ledger."""
    import shutil
    from types import SimpleNamespace

    from cutover.core.iceberg import MAIN, SHADOW_BRANCH
    from cutover.core.shadowfork import ensure_fork
    from cutover.demos.team import EXAMPLE, tree, write_customers, write_orders

    acme = tmp_path / "acme"
    shutil.copytree(EXAMPLE, acme, ignore=shutil.ignore_patterns("__pycache__"))
    data = acme / "data"
    for h in range(2):
        write_orders(data / "orders", h)
    write_customers(data / "inbox", 1)
    ws = _ws()
    ws.jobs.upsert([
        validate_job({"id": "acme-orders-load", "kind": "callable", "target": "acme_etl.orders:load_orders",
                      "kwargs": {"source_dir": str(data / "orders")}, "code_location": str(acme), "shadow": "sdk",
                      "table": "acme.orders"}),
        validate_job({"id": "t-report", "kind": "callable", "target": "acme_etl.reports:revenue_report",
                      "args": [str(data / "orders"), str(data / "reports")], "code_location": str(acme),
                      "shadow": "env"}),
        validate_job({"id": "t-sync", "kind": "command", "shell": "$ACME_HOME/bin/sync_customers.sh",
                      "env": {"ACME_HOME": str(acme)}, "shadow": "env"}),
    ], replace_existing=False)
    for j in ("acme-orders-load", "t-report", "t-sync"):
        prefect_cleanup(j)
    # production, as the legacy side left it: the live runs (the functions called as the scheduler calls them)
    import subprocess
    import sys

    env = {**__import__("os").environ, "ACME_HOME": str(acme)}
    code = (f"import sys; sys.path.insert(0, {str(acme)!r}); from acme_etl.orders import load_orders; "
            f"from acme_etl.reports import revenue_report; load_orders({str(data / 'orders')!r}); "
            f"revenue_report({str(data / 'orders')!r}, {str(data / 'reports')!r})")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=str(_repo_root()))
    subprocess.run([str(acme / "bin" / "sync_customers.sh")], check=True, env=env)
    ensure_fork(ws, SimpleNamespace(id="acme-orders-load", table="acme.orders"))
    write_orders(data / "orders", 2)  # new input for the shadow
    write_customers(data / "inbox", 2)

    def production():
        tbl = ws.catalog.load("acme.orders")
        return (ws.catalog.head(tbl, MAIN), ws.catalog.total_records("acme.orders"),
                [(e.path, e.status, e.run_id, e.records_ingested) for e in ws.ledger("acme-orders-load", "live").entries()],
                {d: tree(data / d) for d in ("reports", "warehouse")})

    before = production()
    assert before[1] > 0 and before[3]["reports"] and before[3]["warehouse"]
    for j in ("acme-orders-load", "t-report", "t-sync"):
        fr = _run(ws, prefect_server, j, mode="shadow")
        assert fr.state.type.value == "COMPLETED", (j, fr.state.message)
    assert production() == before, "a shadow run changed production"
    prefix = prefect_env / "shadow-output"
    assert (prefix / "t-report" / str(data / "reports").lstrip("/") / "revenue_latest.csv").exists()
    assert (prefix / "t-sync" / str(data / "warehouse" / "customers").lstrip("/") / "customers_2.csv").exists()
    tbl = ws.catalog.load("acme.orders")
    assert ws.catalog.head(tbl, SHADOW_BRANCH) != before[0]
    shadow = {e.path: e for e in ws.ledger("acme-orders-load", "shadow").entries()}
    assert any(p.endswith("orders_20261102_02.csv") and e.status == "SUCCESS" for p, e in shadow.items())


def _repo_root():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent


def test_prefect_deploy_takes_jobs_beside_ingestions(prefect_server, prefect_env, prefect_cleanup, tmp_path, capsys):
    """`cutover prefect deploy` deploys a team's jobs to their own flows (dry run: nothing written);
    an observe job gets a note instead of a shadow deployment; a second deploy changes nothing."""
    from tests.helpers import invoke_cli

    ws = _ws()
    script = tmp_path / "sync.sh"
    script.write_text("#!/bin/sh\necho ok\n")
    script.chmod(0o755)
    ws.jobs.upsert([
        validate_job({"id": "t-dep-call", "kind": "callable", "target": "json:dumps", "args": [[1, 2]],
                      "schedule": "daily 03:15", "timezone": "Europe/Berlin", "shadow": "env"}),
        validate_job({"id": "t-dep-cmd", "kind": "command", "argv": [str(script)], "schedule": "hourly :07",
                      "shadow": "observe"}),
    ], replace_existing=False)
    for j in ("t-dep-call", "t-dep-cmd"):
        prefect_cleanup(j)
    names = {"t-dep-call": "cutover-callable/t-dep-call", "t-dep-cmd": "cutover-command/t-dep-cmd"}

    def on_server(mode):
        from prefect.exceptions import ObjectNotFound

        out = {}
        with prefect_server.client() as c:
            for j, n in names.items():
                try:
                    out[j] = c.read_deployment_by_name(f"{n}-{mode}")
                except ObjectNotFound:
                    out[j] = None
        return out

    code, out, err = invoke_cli(capsys, "prefect", "deploy", "t-dep-call", "t-dep-cmd", "--mode", "shadow",
                                "--dry-run")
    assert code == 0, err
    assert "would create: t-dep-call -> cutover-callable/t-dep-call-shadow" in out
    assert "t-dep-cmd: no shadow deployment: it is declared shadow: observe" in err
    assert on_server("shadow") == {"t-dep-call": None, "t-dep-cmd": None}

    code, out, err = invoke_cli(capsys, "prefect", "deploy", "t-dep-call", "t-dep-cmd", "--mode", "live", "--json")
    assert code == 0, err
    got = {i["ingestion_id"]: i for i in json.loads(out)["items"]}
    assert {j: (got[j]["action"], got[j]["deployment"]) for j in got} == {
        j: ("create", f"{n}-live") for j, n in names.items()}
    deps = on_server("live")
    assert all(d is not None and d.paused for d in deps.values())  # live deployments are created paused
    assert [s.schedule.cron for s in deps["t-dep-call"].schedules] == ["15 3 * * *"]
    assert deps["t-dep-call"].parameters["target"] == "json:dumps"
    fresh = _ws()
    assert {j: fresh.jobs.get(j).prefect_deployment_id for j in names} == {j: str(d.id) for j, d in deps.items()}
    code, out, err = invoke_cli(capsys, "prefect", "deploy", "t-dep-call", "t-dep-cmd", "--mode", "live")
    assert code == 0, err
    assert "0 to create, 0 to update, 2 unchanged" in out
    # the export carries them (server: as deployed; inventory: no shadow deployment for the observe job)
    import yaml

    code, out, err = invoke_cli(capsys, "prefect", "export", "--mode", "live")
    assert code == 0, err
    exported = {d["name"]: d for d in yaml.safe_load(out)["deployments"]}
    assert exported["t-dep-call-live"]["entrypoint"] == "flows/jobs.py:run_callable"
    assert exported["t-dep-cmd-live"]["entrypoint"] == "flows/jobs.py:run_command"
    code, out, err = invoke_cli(capsys, "prefect", "export", "--source", "inventory")
    assert code == 0, err
    names_in = {d["name"] for d in yaml.safe_load(out)["deployments"]}
    assert {"t-dep-call-live", "t-dep-call-shadow", "t-dep-cmd-live"} <= names_in
    assert "t-dep-cmd-shadow" not in names_in
