"""Deploy specs without a server: validation of `deploy:`, defaults from [deploy], job variables per
pool type, pull steps, Secret block names, and the desired deployment (parameters carry a block name,
never a credential). The real-server side is tests/test_prefect_pools.py."""

from __future__ import annotations

import json

import pytest

from cutover.core.deployspec import cpu_cores, memory_bytes, resolve, secret_block_name
from cutover.core.errors import InputError
from tests.helpers import add_ingestion

SECRET = "s3cr3t-VALUE-do-not-leak"


@pytest.fixture
def ws(workspace_env, tmp_path):
    from cutover.core.workspace import Workspace

    (tmp_path / "src").mkdir()
    return Workspace()


def _ing(ws, tmp_path, iid="d1", **extra):
    return add_ingestion(ws, iid, tmp_path / "src", **extra)


def test_quantities():
    assert cpu_cores("500m") == 0.5 and cpu_cores("2") == 2.0 and cpu_cores("1.5") == 1.5
    assert memory_bytes("512Mi") == 512 * 1024 ** 2 and memory_bytes("1G") == 10 ** 9 and memory_bytes("2Gi") == 2 << 30
    for bad in ("2 cores", "-1", "1Gb", ""):
        with pytest.raises(ValueError):
            memory_bytes(bad)


@pytest.mark.parametrize("deploy, words", [
    ({"pool_type": "ecs"}, "pool_type"),
    ({"cpu": "two"}, "cpu"),
    ({"memory": "2GB"}, "memory"),
    ({"namespace": "Data_Ingest"}, "namespace"),
    ({"labels": {"team": "fin ance"}}, "label value"),
    ({"labels": {"bad key!": "x"}}, "label name"),
    ({"env": {"AWS_SECRET_ACCESS_KEY": "abc"}}, "credential"),
    ({"env": {"DB": "postgresql://u:pw@h/db"}}, "credential"),
    ({"git_repository": "https://user:pw@git.example.com/r.git"}, "credentials in the URL"),
    ({"git_credentials": "just-a-name"}, "block reference"),
    ({"imagee": "x"}, "unknown field 'deploy.imagee'"),
    ("kubernetes", "mapping"),
])
def test_bad_deploy_is_one_clear_error(ws, tmp_path, deploy, words):
    before = ws.ingestions.list()
    with pytest.raises(InputError) as e:
        _ing(ws, tmp_path, deploy=deploy)
    assert words in e.value.message and e.value.fix
    assert ws.ingestions.list() == before  # nothing written


def test_deploy_round_trips_and_definition_defaults(ws, tmp_path, monkeypatch):
    deploy = {"pool_type": "kubernetes", "image": "reg.example.com/cutover:1", "cpu": "500m", "memory": "1Gi",
              "namespace": "data", "labels": {"team": "finance"}, "env": {"TZ": "UTC"}}
    ing = _ing(ws, tmp_path, deploy=deploy)
    assert ing.deploy == deploy
    assert ing.definition()["deploy"] == deploy
    spec = resolve(ws.settings, ing)
    assert (spec.pool_type, spec.image, spec.cpu, spec.memory, spec.namespace) == (
        "kubernetes", "reg.example.com/cutover:1", "500m", "1Gi", "data")
    assert spec.work_pool == ws.settings.prefect_work_pool

    # [deploy] defaults fill what a definition leaves out; high_memory for the high-memory queue
    from cutover.core.config import load_settings

    monkeypatch.setenv("CUTOVER_DEPLOY_MEMORY", "1Gi")
    monkeypatch.setenv("CUTOVER_DEPLOY_HIGH_MEMORY", "8Gi")
    monkeypatch.setenv("CUTOVER_DEPLOY_IMAGE", "reg.example.com/cutover:2")
    settings = load_settings()
    small = _ing(ws, tmp_path, "d-small")
    large = _ing(ws, tmp_path, "d-large", size_class="large")
    assert (resolve(settings, small).memory, resolve(settings, large).memory) == ("1Gi", "8Gi")
    assert resolve(settings, small).image == "reg.example.com/cutover:2"
    assert resolve(settings, ing).image == "reg.example.com/cutover:1"  # the definition wins
    monkeypatch.setenv("CUTOVER_DEPLOY_CPU", "lots")
    with pytest.raises(InputError, match="cpu"):
        load_settings()


def test_job_variables_per_pool_type(ws, tmp_path):
    from flows.delivery import job_variables

    base = {"image": "img:1", "cpu": "1500m", "memory": "512Mi", "labels": {"team": "fin"}, "env": {"TZ": "UTC"}}
    ing = _ing(ws, tmp_path, "jd", deploy={"pool_type": "docker", **base})
    jv, _ = job_variables(ws, ing.id, resolve(ws.settings, ing))
    assert jv["image"] == "img:1" and jv["mem_limit"] == f"{512 * 1024 ** 2}b"
    assert jv["container_create_kwargs"] == {"nano_cpus": 1_500_000_000}
    assert jv["env"]["TZ"] == "UTC" and jv["env"]["CUTOVER_HOME"] == str(ws.settings.home)
    assert jv["labels"] == {"team": "fin"}

    ing = _ing(ws, tmp_path, "jk", deploy={"pool_type": "kubernetes", "namespace": "data", **base})
    jv, _ = job_variables(ws, ing.id, resolve(ws.settings, ing))
    assert {k: jv[k] for k in ("image", "namespace", "cpu_request", "memory_request", "memory_limit")} == {
        "image": "img:1", "namespace": "data", "cpu_request": "1500m", "memory_request": "512Mi",
        "memory_limit": "512Mi"}

    ing = _ing(ws, tmp_path, "jp", deploy={"env": {"TZ": "UTC"}})
    jv, _ = job_variables(ws, ing.id, resolve(ws.settings, ing))
    assert set(jv) == {"env"}

    for bad, words in (({"pool_type": "kubernetes"}, "needs an image"),
                       ({"memory": "1Gi"}, "no meaning"),
                       ({"pool_type": "docker", "image": "i", "namespace": "x"}, "no meaning")):
        ing = _ing(ws, tmp_path, "jx", deploy=bad)
        with pytest.raises(InputError, match=words):
            job_variables(ws, ing.id, resolve(ws.settings, ing))


def test_pull_steps_and_block_references(ws, tmp_path):
    from flows.delivery import REPO_ROOT, pull_steps, referenced_blocks

    ing = _ing(ws, tmp_path, "pl")
    assert pull_steps(resolve(ws.settings, ing)) == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO_ROOT)}}]
    ing = _ing(ws, tmp_path, "pl", deploy={"directory": "/opt/cutover"})
    assert pull_steps(resolve(ws.settings, ing))[0]["prefect.deployments.steps.set_working_directory"] == {
        "directory": "/opt/cutover"}
    ing = _ing(ws, tmp_path, "pl", deploy={"git_repository": "https://git.example.com/data/cutover.git",
                                           "git_branch": "release", "git_credentials": "secret/git-token"})
    steps = pull_steps(resolve(ws.settings, ing))
    assert steps == [{"prefect.deployments.steps.git_clone": {
        "repository": "https://git.example.com/data/cutover.git", "branch": "release",
        "access_token": "{{ prefect.blocks.secret.git-token }}"}}]
    assert referenced_blocks(steps) == ["secret/git-token"]
    ing = _ing(ws, tmp_path, "pl", deploy={"git_repository": "https://github.com/o/r.git",
                                           "git_credentials": "github-credentials/ci"})
    step = pull_steps(resolve(ws.settings, ing))[0]["prefect.deployments.steps.git_clone"]
    assert step["credentials"] == "{{ prefect.blocks.github-credentials.ci }}"


def test_secret_block_names_are_valid_and_distinct():
    names = {secret_block_name(i) for i in ("orders", "a_b", "a-b", "A1")}
    assert len(names) == 4
    assert secret_block_name("orders") == "cutover-orders-credentials"
    assert all(set(n) <= set("abcdefghijklmnopqrstuvwxyz0123456789-") for n in names)


def test_desired_carries_the_block_name_never_the_credentials(ws, tmp_path):
    from flows.deploy import desired

    creds = {"key": "AKIAEXAMPLE", "secret": SECRET}
    ing = _ing(ws, tmp_path, "sec", credentials=creds,
               deploy={"pool_type": "kubernetes", "image": "img:1", "env": {"TZ": "UTC"}})
    want = desired(ws, ing, "live")
    assert want.parameters["credentials_block"] == "cutover-sec-credentials"
    assert want.credentials_block == "cutover-sec-credentials"
    dumped = json.dumps({"p": want.parameters, "j": want.job_variables, "s": want.pull_steps,
                         "d": want.description})
    assert SECRET not in dumped and "AKIAEXAMPLE" not in dumped
    assert "credentials_block" not in desired(ws, _ing(ws, tmp_path, "nosec"), "live").parameters
