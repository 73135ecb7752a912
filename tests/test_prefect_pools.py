"""Deployments as teams run them, against a real Prefect server (tests/prefect_fixtures.py):

- docker and kubernetes work pools created from prefect-docker's / prefect-kubernetes' base job
  templates, with the default/high-memory/priority queues;
- each deployment's job variables (image, env, cpu/memory, namespace, labels) on the server;
- the Kubernetes Job that prefect-kubernetes renders for a deployment (no cluster) carries its image,
  env and resources, fits the Kubernetes object model (kubernetes_asyncio's V1Job attribute maps),
  and ``kubectl apply --dry-run=client`` accepts it;
- the exported prefect.yaml (pull steps, Secret references): ``prefect --no-prompt deploy --all``
  recreates every deployment identically, and cutover's plan then says "unchanged";
- credentials become Secret blocks: no credential value on any deployment, parameter, job
  variable, flow run, task run or log of the server; a flow run loads them with Secret.load.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT, add_ingestion, write_csv_files
from tests.helpers import invoke_cli as _cli
from tests.prefect_fixtures import (delete_deployments, prefect_cleanup, prefect_env,  # noqa: F401
                                    prefect_server, wait_flow_run)

pytestmark = [pytest.mark.slow, pytest.mark.prefect]

KEY_ID = "AKIAPPTESTKEYID0001"
SECRET_1 = "pp-secret-one-9f8e7d"
SECRET_2 = "pp-secret-two-1a2b3c"
GIT_TOKEN = "pp-git-token-value-77aa"
SECRETS = (KEY_ID, SECRET_1, SECRET_2, GIT_TOKEN)
IMAGE = "registry.example.com/data/cutover:1.4"
IDS = ("pp-proc", "pp-docker", "pp-k8s")


def _snapshot(client, names):
    from flows.deploy import FLOW_NAME

    out = {}
    for name in names:
        d = client.read_deployment_by_name(f"{FLOW_NAME}/{name}")
        out[name] = {
            "entrypoint": d.entrypoint, "parameters": d.parameters, "tags": sorted(d.tags),
            "work_pool": d.work_pool_name, "work_queue": d.work_queue_name, "job_variables": d.job_variables,
            "pull_steps": d.pull_steps, "paused": d.paused, "description": d.description,
            "enforce_parameter_schema": d.enforce_parameter_schema,
            "parameter_schema": d.parameter_openapi_schema,
            "schedules": sorted((s.slug, s.active, s.schedule.model_dump_json()) for s in d.schedules),
        }
    return out


def _server_records(client) -> str:
    """Every deployment, flow run, task run and log on the server (raw API answers), as one JSON text."""
    parts = []
    for route in ("/deployments/filter", "/flow_runs/filter", "/task_runs/filter", "/logs/filter",
                  "/work_pools/filter"):
        offset = 0
        while True:
            page = client.request("POST", route, json={"limit": 200, "offset": offset}).json()
            parts.extend(page)
            if len(page) < 200:
                break
            offset += 200
    return json.dumps(parts)


# -- kubectl without a cluster -------------------------------------------------------------------
# `kubectl apply --dry-run=client` still asks the API server for discovery (which resource a kind
# is) and, unless --validate=false, for the OpenAPI schema. With no cluster here, a loopback
# server answers discovery for batch/v1 Jobs (and 404 for the Job itself, so apply says
# "created"); schema validation is off for kubectl and done offline by _unknown_fields below.

_DISCOVERY = {
    "/version": {"major": "1", "minor": "32", "gitVersion": "v1.32.0"},
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
    "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": []},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": [{
        "name": "batch", "versions": [{"groupVersion": "batch/v1", "version": "v1"}],
        "preferredVersion": {"groupVersion": "batch/v1", "version": "v1"}}]},
    "/apis/batch/v1": {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "batch/v1", "resources": [{
        "name": "jobs", "singularName": "job", "namespaced": True, "kind": "Job",
        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}]},
}


class _Discovery(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = _DISCOVERY.get(self.path.split("?")[0])
        code = 200 if body else 404
        data = json.dumps(body or {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                   "reason": "NotFound", "code": 404}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@contextmanager
def _fake_apiserver(tmp_path: Path):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Discovery)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{srv.server_port}"}}],
        "users": [{"name": "fake", "user": {}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}]}))
    try:
        yield kubeconfig
    finally:
        srv.shutdown()
        srv.server_close()


# prefect-kubernetes 0.8's default base job template puts parallelism/completions in the pod spec
# (spec.template.spec) instead of the Job spec; the API server drops them ("unknown field" warning).
UPSTREAM_UNKNOWN = {".spec.template.spec.parallelism", ".spec.template.spec.completions"}


def _unknown_fields(obj, model: str, path: str = "") -> set[str]:
    """Paths of the manifest's keys that are not fields of the Kubernetes object model
    (kubernetes_asyncio's openapi_types / attribute_map), recursively; dict-typed fields are free."""
    import kubernetes_asyncio.client.models as m

    cls = getattr(m, model)
    by_json = {v: k for k, v in cls.attribute_map.items()}
    assert isinstance(obj, dict), f"{path or model}: not an object"
    unknown = set()
    for key, value in obj.items():
        if key not in by_json:
            unknown.add(f"{path}.{key}")
            continue
        typ = cls.openapi_types[by_json[key]]
        if typ.startswith("list[V1"):
            for i, item in enumerate(value):
                unknown |= _unknown_fields(item, typ[5:-1], f"{path}.{key}[{i}]")
        elif typ.startswith("V1"):
            unknown |= _unknown_fields(value, typ, f"{path}.{key}")
    return unknown


# -- the test --------------------------------------------------------------------------------------

def test_pools_job_variables_k8s_job_export_and_secrets(prefect_server, prefect_env, prefect_cleanup, tmp_path,
                                                        capsys):
    from prefect_docker.worker import DockerWorker
    from prefect_kubernetes.worker import KubernetesWorker

    from cutover.core.workspace import Workspace
    from flows import ingest
    from flows.adapter import PrefectAdapter
    from flows.deploy import desired, plan_one
    from flows.pools import render_kubernetes_job

    ws = Workspace()
    src = tmp_path / "src"
    files = write_csv_files(src, 2)
    for iid in IDS:
        prefect_cleanup(iid)
    add_ingestion(ws, "pp-proc", src, credentials={"key": KEY_ID, "secret": SECRET_1},
                  schedule={"crontab": "5 * * * *"})
    add_ingestion(ws, "pp-docker", src, priority="high", schedule={"crontab": "10 2 * * *"}, deploy={
        "work_pool": "pp-docker", "pool_type": "docker", "image": IMAGE, "cpu": "1", "memory": "1Gi",
        "env": {"TZ": "UTC"}, "labels": {"team": "finance"}, "directory": "/opt/cutover"})
    add_ingestion(ws, "pp-k8s", src, size_class="large", credentials={"key": KEY_ID, "secret": SECRET_2},
                  schedule={"trigger": "interval", "hours": 6, "start_date": "2026-01-01T00:30:00"},
                  timezone="Europe/Berlin", deploy={
                      "work_pool": "pp-k8s", "pool_type": "kubernetes", "image": IMAGE, "cpu": "500m",
                      "memory": "2Gi", "namespace": "data-ingest", "labels": {"team": "finance"},
                      "env": {"TZ": "Europe/Berlin"},
                      "git_repository": "https://git.example.com/data/cutover.git", "git_branch": "main",
                      "git_credentials": "secret/pp-git-token"})
    from prefect.blocks.system import Secret
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect_server.url}):  # settings were loaded at import
        Secret(value=GIT_TOKEN).save("pp-git-token", overwrite=True)  # the team's git token block

    # dry run: nothing on the server
    code, out, err = _cli(capsys, "prefect", "deploy", *IDS, "--mode", "live", "--dry-run")
    assert code == 0, err
    with prefect_server.client() as c:
        from prefect.exceptions import ObjectNotFound

        for pool in ("pp-docker", "pp-k8s"):
            with pytest.raises(ObjectNotFound):
                c.read_work_pool(pool)
        for block in ("cutover-pp-proc-credentials", "cutover-pp-k8s-credentials"):
            with pytest.raises(ObjectNotFound):
                c.read_block_document_by_name(block, block_type_slug="secret")
    assert "secret block cutover-pp-k8s-credentials: create" in out

    code, out, err = _cli(capsys, "prefect", "deploy", "pp-proc", "--mode", "live", "--active")
    assert code == 0, err
    code, out, err = _cli(capsys, "prefect", "deploy", "pp-docker", "pp-k8s", "--mode", "live")
    assert code == 0, err
    assert not any(s in out + err for s in SECRETS)
    names = [f"{i}-live" for i in IDS]

    with prefect_server.client() as c:
        # pools from the collections' base job templates, with cutover's queues
        for pool, typ, worker in (("pp-docker", "docker", DockerWorker), ("pp-k8s", "kubernetes", KubernetesWorker)):
            wp = c.read_work_pool(pool)
            assert wp.type == typ
            assert wp.base_job_template == worker.get_default_base_job_template()
            from prefect.client.schemas.filters import WorkQueueFilter

            queues = {q.name for q in c.read_work_queues(work_pool_name=pool, work_queue_filter=WorkQueueFilter(),
                                                         limit=200, offset=0)}
            assert {"default", "high-memory", "priority"} <= queues
        before = _snapshot(c, names)
        # the job variables on the server
        jd = before["pp-docker-live"]
        assert (jd["work_pool"], jd["work_queue"]) == ("pp-docker", "priority")
        assert jd["job_variables"]["image"] == IMAGE and jd["job_variables"]["mem_limit"] == f"{1 << 30}b"
        assert jd["job_variables"]["container_create_kwargs"] == {"nano_cpus": 10 ** 9}
        assert jd["job_variables"]["labels"] == {"team": "finance"} and jd["job_variables"]["env"]["TZ"] == "UTC"
        assert jd["pull_steps"] == [{"prefect.deployments.steps.set_working_directory": {"directory": "/opt/cutover"}}]
        jk = before["pp-k8s-live"]
        assert (jk["work_pool"], jk["work_queue"]) == ("pp-k8s", "high-memory")
        assert {k: jk["job_variables"][k] for k in ("image", "namespace", "cpu_request", "memory_request",
                                                    "memory_limit", "labels")} == {
            "image": IMAGE, "namespace": "data-ingest", "cpu_request": "500m", "memory_request": "2Gi",
            "memory_limit": "2Gi", "labels": {"team": "finance"}}
        assert jk["pull_steps"] == [{"prefect.deployments.steps.git_clone": {
            "repository": "https://git.example.com/data/cutover.git", "branch": "main",
            "access_token": "{{ prefect.blocks.secret.pp-git-token }}"}}]
        assert jk["parameters"]["credentials_block"] == "cutover-pp-k8s-credentials"
        assert "credentials_block" not in jd["parameters"]
        # the credentials' Secret blocks: masked on a plain read
        doc = c.read_block_document_by_name("cutover-pp-k8s-credentials", block_type_slug="secret",
                                            include_secrets=False)
        assert doc.data == {"value": "********"}
        k8s_id = str(c.read_deployment_by_name("cutover-ingest/pp-k8s-live").id)

    # the flow side reads the Secret block by name
    with temporary_settings(updates={PREFECT_API_URL: prefect_server.url}):
        ingest.load_credentials("pp-k8s", "cutover-pp-k8s-credentials")
    try:
        assert ingest.ingestion("pp-k8s").credentials == {"key": KEY_ID, "secret": SECRET_2}
    finally:
        ingest.load_credentials("pp-k8s", None)

    # the Kubernetes Job prefect-kubernetes renders for the k8s deployment
    manifest = render_kubernetes_job(prefect_server.url, k8s_id)
    assert manifest["kind"] == "Job" and manifest["metadata"]["namespace"] == "data-ingest"
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == IMAGE
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["TZ"] == "Europe/Berlin" and env["CUTOVER_HOME"] == str(ws.settings.home)
    assert env["PREFECT_API_URL"] == prefect_server.url
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "2Gi"}, "limits": {"memory": "2Gi"}}
    assert manifest["metadata"]["labels"]["team"] == "finance"
    assert manifest["spec"]["template"]["metadata"]["labels"]["team"] == "finance"
    assert container["args"][:3] == ["prefect", "flow-run", "execute"]
    text = json.dumps(manifest)
    assert not any(s in text for s in SECRETS)
    code, out, err = _cli(capsys, "prefect", "job-manifest", "pp-k8s", "--mode", "live", "--json")
    assert code == 0, err
    shown = json.loads(out)["spec"]["template"]["spec"]["containers"][0]
    assert (shown["image"], shown["resources"]) == (container["image"], container["resources"])
    code, out, err = _cli(capsys, "prefect", "job-manifest", "pp-docker", "--mode", "live")
    assert code == 2 and "type docker" in err
    assert _unknown_fields(manifest, "V1Job") <= UPSTREAM_UNKNOWN
    assert _unknown_fields({"spec": {"template": {"spec": {"containers": [{"name": "c", "imag": "x"}]}}}},
                           "V1Job") == {".spec.template.spec.containers[0].imag"}  # the check can fail
    kubectl = shutil.which("kubectl")
    if kubectl:  # /usr/bin/kubectl on this machine; a generated name is what the API server would give
        manifest["metadata"]["name"] = manifest["metadata"].pop("generateName") + "preview"
        mf = tmp_path / "job.yaml"
        mf.write_text(yaml.safe_dump(manifest))
        with _fake_apiserver(tmp_path) as kubeconfig:
            r = subprocess.run([kubectl, "apply", "--dry-run=client", "--validate=false", "-f", str(mf)],
                               env={**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path)},
                               capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "created (dry run)" in r.stdout, r.stdout

    # a flow run of the process deployment: the worker runs it, the flow loads the Secret block
    with PrefectAdapter(ws, prefect_server.url, mode="live") as ad:
        flow_run_id = ad.trigger("pp-proc")
    fr = wait_flow_run(prefect_server, flow_run_id)
    assert fr.state.type.value == "COMPLETED", fr.state
    assert fr.parameters["credentials_block"] == "cutover-pp-proc-credentials"
    recs = [r for r in ws.runs.list(ingestion_id="pp-proc", orchestrator="prefect") if r.external_id == flow_run_id]
    assert len(recs) == 1 and recs[0].files_processed == len(files)

    # export -> delete -> prefect --no-prompt deploy --all -> the same deployments
    out_file = tmp_path / "prefect.yaml"
    code, out, err = _cli(capsys, "prefect", "export", "--format", "prefect-yaml", "--out", str(out_file))
    assert code == 0, err
    text = out_file.read_text()
    assert not any(s in text for s in SECRETS)
    assert "{{ prefect.blocks.secret.pp-git-token }}" in text
    doc = yaml.safe_load(text)
    deps = {d["name"]: d for d in doc["deployments"]}
    pools = {p["name"]: p for p in doc["definitions"]["work_pools"]}
    assert pools["pp-docker"]["type"] == "docker" and pools["pp-k8s"]["type"] == "kubernetes"
    assert {"secret/pp-git-token", "secret/cutover-pp-k8s-credentials",
            "secret/cutover-pp-proc-credentials"} <= set(doc["definitions"]["blocks"])
    doc["deployments"] = [deps[n] for n in names]  # the session server is shared: only this test's
    out_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert delete_deployments(prefect_server, list(IDS)) == len(names)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUTOVER_", "PREFECT_"))}
    env.update(PREFECT_API_URL=prefect_server.url, PREFECT_HOME=str(tmp_path / "prefect-cli-home"),
               PYTHONPATH=str(ROOT))
    prefect_bin = Path(sys.executable).with_name("prefect")
    r = subprocess.run([str(prefect_bin), "--no-prompt", "deploy", "--all", "--prefect-file", str(out_file)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.count("successfully created") == len(names), r.stdout[-3000:]
    with prefect_server.client() as c:
        after = _snapshot(c, names)
        for name in names:
            assert after[name] == before[name], name
        for iid in IDS:  # cutover's own plan agrees
            item = plan_one(c, desired(ws, ws.ingestions.get(iid), "live"))
            assert (item.action, item.secret) == ("unchanged", "unchanged" if iid != "pp-docker" else None), (
                iid, item.changes)

        # no credential anywhere on the server's records
        records = _server_records(c)
    assert flow_run_id in records and "cutover-pp-proc-credentials" in records  # the scan read our flow run
    with prefect_server.client() as c:  # the values are on the server, in their blocks only
        doc = c.read_block_document_by_name("cutover-pp-k8s-credentials", block_type_slug="secret",
                                            include_secrets=True)
        assert SECRET_2 in json.dumps(doc.data)
    for s in SECRETS:
        assert s not in records, s


def test_server_takes_null_limit_as_default(prefect_server):
    """The call `prefect deploy` makes after each deployment (flows/export.py): Prefect 3.8's client sends
    `"limit": null, "offset": null`; under fastapi>=0.151 its server answers 422 and `deploy --all` stops."""
    with prefect_server.client() as c:
        r = c.request("POST", "/work_pools/{name}/workers/filter", path_params={"name": prefect_server.work_pool},
                      json={"workers": None, "limit": None, "offset": None})
    assert r.status_code == 200 and isinstance(r.json(), list)
