"""The Prefect connection as teams run it, end to end through the CLI (issue #16, items 1-3, 7):

- a real Prefect server selected ONLY through a profile file (PREFECT_HOME/profiles.toml, no
  PREFECT_API_URL): deploy, shadow run and status use it; no embedded server is started;
- read-only commands on a fresh workspace leave no process and no listening port behind;
- no live worker: `shadow run --once` fails at once naming the pool and the command to start one;
- an unreachable API: status and deploy fail in one line naming the URL and where it came from;
- `prefect up --timeout` / CUTOVER_PREFECT_START_TIMEOUT bound the embedded server's start.

Processes are found through /proc (psutil is not installed): a process belongs to a workspace
when its environment names it (every server or worker cutover starts gets CUTOVER_HOME and a
PREFECT_HOME inside the workspace).
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers import add_ingestion, cutover_env, run_cli, write_csv_files
from tests.prefect_fixtures import delete_deployments, prefect_cleanup, prefect_server  # noqa: F401

pytestmark = [pytest.mark.slow]


# -- processes and ports of a workspace, from /proc --------------------------------------------


def workspace_processes(home: Path) -> dict[int, str]:
    """pid -> command line of every process whose environment names this workspace."""
    marks = (f"CUTOVER_HOME={home}".encode(), f"PREFECT_HOME={home}".encode())
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            env = (d / "environ").read_bytes().split(b"\0")
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if any(e.startswith(m) for e in env for m in marks):
            out[int(d.name)] = cmd
    return out


def listening_ports(pids) -> set[int]:
    """TCP ports in LISTEN state owned by these processes."""
    inodes: dict[str, int] = {}
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == "0A":  # LISTEN
                inodes[f[9]] = int(f[1].rsplit(":", 1)[1], 16)
    ports = set()
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                ports.add(inodes[link[8:-1]])
    return ports


def prefect_processes(home: Path) -> dict[int, str]:
    """The Prefect servers and workers of this workspace (flow-run processes of a worker elsewhere excluded)."""
    return {p: c for p, c in workspace_processes(home).items() if "server start" in c or "worker start" in c}


def assert_nothing_started(home: Path, before_ports: set[int] | None = None) -> None:
    procs = workspace_processes(home)
    assert not prefect_processes(home), f"a Prefect server or worker was started: {prefect_processes(home)}"
    ports = listening_ports(procs)
    assert not ports, f"processes of the workspace listen on {ports}: {procs}"
    assert not (home / "prefect" / "cutover-local.json").exists(), "an embedded server was recorded"
    assert not (home / "prefect" / "prefect.db").exists(), "an embedded server database was created"


def _one_line(text: str) -> list[str]:
    return [x for x in text.splitlines() if x.strip()]


def _cli_start_s(home: Path, tmp_path: Path) -> float:
    """Seconds `cutover status` takes on the same workspace when it talks to no server (embedded
    selected, never started): the machine's share of a timing (on 2 shared cores under load the
    same command varies from 2 to 8 s)."""
    env = cutover_env(home, PREFECT_HOME=str(tmp_path / "no-profiles"), PREFECT_PROFILES_PATH=None)
    t0 = time.monotonic()
    r = run_cli(["status"], env)
    assert r.returncode == 0, r.stdout + r.stderr
    return time.monotonic() - t0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _profiles(path: Path, url: str, name: str = "team") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    f = path / "profiles.toml"
    f.write_text(f'active = "{name}"\n\n[profiles.{name}]\nPREFECT_API_URL = "{url}"\n\n'
                 f'[profiles.ephemeral]\nPREFECT_SERVER_EPHEMERAL_ENABLED = "true"\n')
    return f


# -- read-only commands start nothing ----------------------------------------------------------


def test_read_only_commands_on_a_fresh_workspace_start_nothing(workspace_env, tmp_path):
    """status, inventory, config show and prefect status with the embedded server selected: nothing
    started, no process or port left, no Prefect home created."""
    home = workspace_env
    env = cutover_env(home, PREFECT_HOME=str(tmp_path / "no-profiles"), PREFECT_PROFILE=None,
                      PREFECT_PROFILES_PATH=None)
    before = workspace_processes(home)
    assert not before and not listening_ports(before)
    for args in (["status"], ["status", "--json"], ["inventory"], ["config", "show"], ["prefect", "status"]):
        r = run_cli(args, env)
        assert r.returncode in (0, 1), (args, r.stdout, r.stderr)  # prefect status: 1 = not running
        assert "starting" not in r.stderr.lower(), (args, r.stderr)
        assert_nothing_started(home)
    r = run_cli(["status", "--json"], env)
    assert json.loads(r.stdout)["errors"] == []  # a server that never ran holds nothing: not an error
    assert not (home / "prefect").exists()

    # with an ingestion: the Prefect side reads as absent, still nothing started
    from cutover.core.workspace import Workspace

    (tmp_path / "src").mkdir()
    add_ingestion(Workspace(), "ro-orders", tmp_path / "src")
    for args in (["status", "--json"], ["inventory", "--json"]):
        r = run_cli(args, env)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        assert_nothing_started(home)
    row = json.loads(run_cli(["status", "--json"], env).stdout)["ingestions"][0]
    assert (row["id"], row["prefect_live"], row["prefect_shadow"]) == ("ro-orders", "absent", "absent")


# -- an unreachable API: one line, in seconds ----------------------------------------------------


@pytest.mark.parametrize("via", ["env", "profile"])
def test_unreachable_api_fails_fast_in_one_line(workspace_env, tmp_path, via):
    from cutover.core.workspace import Workspace

    home = workspace_env
    (tmp_path / "src").mkdir()
    add_ingestion(Workspace(), "unr-orders", tmp_path / "src")
    # a server that accepts connections and never answers, and a closed port
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(1)
    try:
        for port in (_closed_port(), hang.getsockname()[1]):
            url = f"http://127.0.0.1:{port}/api"
            if via == "env":
                env = cutover_env(home, PREFECT_API_URL=url, PREFECT_HOME=str(tmp_path / "no-profiles"))
                source = "env PREFECT_API_URL"
            else:
                f = _profiles(tmp_path / f"ph-{port}", url)
                env = cutover_env(home, PREFECT_HOME=str(f.parent), PREFECT_PROFILE=None, PREFECT_PROFILES_PATH=None)
                source = f"profile 'team' in {f}"
            start = _cli_start_s(home, tmp_path)
            t0 = time.monotonic()
            r = run_cli(["prefect", "deploy", "unr-orders", "--mode", "live"], env)
            took = time.monotonic() - t0
            lines = _one_line(r.stderr)
            assert r.returncode == 2, (r.stdout, r.stderr)  # a URL that points nowhere: fix it, nothing changed
            assert len(lines) == 1 and f"{url} (from {source}) is unreachable" in lines[0], r.stderr
            # < 10 s on an idle machine; here: what the connection adds to the CLI's own start
            assert took < 10 or took - start < 8, f"deploy took {took:.1f}s (the CLI alone {start:.1f}s)"
            t0 = time.monotonic()
            r = run_cli(["status"], env)
            took = time.monotonic() - t0
            hits = [x for x in _one_line(r.stdout + r.stderr) if url in x]
            assert r.returncode == 3 and len(hits) == 1, (r.stdout, r.stderr)
            assert f"cannot read: prefect: Prefect API {url} (from {source}) is unreachable" in hits[0]
            assert took < 10 or took - start < 8, f"status took {took:.1f}s (the CLI alone {start:.1f}s)"
            assert_nothing_started(home)
    finally:
        hang.close()


def test_a_configuration_problem_exits_2_in_one_line(workspace_env, tmp_path):
    home = workspace_env
    f = _profiles(tmp_path / "ph", "http://127.0.0.1:9/api")
    for extra, needle in (({"PREFECT_API_URL": "prefect.internal:4200"},
                           "(env PREFECT_API_URL) 'prefect.internal:4200': scheme 'prefect.internal' is not http or https"),
                          ({"PREFECT_PROFILE": "prod"}, f"Prefect profile 'prod' (from PREFECT_PROFILE) is not in {f}")):
        env = cutover_env(home, PREFECT_HOME=str(f.parent), PREFECT_PROFILES_PATH=None, **extra)
        r = run_cli(["status"], env)
        assert r.returncode == 2 and len(_one_line(r.stderr)) == 1 and needle in r.stderr, (r.stdout, r.stderr)
        assert_nothing_started(home)


# -- prefect up --timeout -----------------------------------------------------------------------


def test_prefect_up_timeout_is_one_setting_and_leaves_nothing(workspace_env, tmp_path):
    """--timeout and CUTOVER_PREFECT_START_TIMEOUT bound the wait; a server that is not healthy in
    time is stopped, and the error names the setting."""
    home = workspace_env
    for args, extra in ((["prefect", "up", "--timeout", "1"], {}),
                        (["prefect", "up"], {"CUTOVER_PREFECT_START_TIMEOUT": "1s"})):
        env = cutover_env(home, PREFECT_HOME=str(tmp_path / "no-profiles"), **extra)
        r = run_cli(args, env, timeout=120)
        assert r.returncode == 3, (r.stdout, r.stderr)
        assert "waiting up to 1s" in r.stderr and "not healthy after 1s" in r.stderr, r.stderr
        assert "--timeout or CUTOVER_PREFECT_START_TIMEOUT" in r.stderr
        deadline = time.monotonic() + 15
        while prefect_processes(home) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not prefect_processes(home), prefect_processes(home)
    r = run_cli(["config", "show", "--json"], cutover_env(home, CUTOVER_PREFECT_START_TIMEOUT="4m"))
    assert json.loads(r.stdout)["prefect"]["start_timeout_s"] == 240.0


# -- a real server, selected only through a profile ------------------------------------------------


def _shadow_ready(env: dict, iid: str, src: Path, table: str) -> None:
    r = run_cli(["ingestion", "add", iid, "--source", str(src), "--pattern", "*.csv", "--format", "csv",
                 "--table", table, "--schedule", "manual", "--key-columns", "id"], env)  # the values check needs a key
    assert r.returncode == 0, r.stderr
    r = run_cli(["legacy", "run", iid], env)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.prefect
def test_server_selected_through_a_profile_only(prefect_server, prefect_cleanup, workspace_env, tmp_path):
    home = workspace_env
    f = _profiles(tmp_path / "user-prefect", prefect_server.url)
    env = cutover_env(home, PREFECT_HOME=str(f.parent), PREFECT_PROFILE=None, PREFECT_PROFILES_PATH=None)
    assert "PREFECT_API_URL" not in env
    iid = f"conn-prof-{uuid.uuid4().hex[:6]}"
    prefect_cleanup(iid)
    write_csv_files(tmp_path / "src", 3)

    r = run_cli(["config", "show", "--json"], env)
    pf = json.loads(r.stdout)["prefect"]
    assert (pf["api_url"], pf["api_url_source"]) == (prefect_server.url, f"profile 'team' in {f}")

    _shadow_ready(env, iid, tmp_path / "src", f"raw.{iid.replace('-', '_')}")
    r = run_cli(["prefect", "deploy", iid, "--mode", "shadow"], env)
    assert r.returncode == 0 and f"create: {iid} -> cutover-ingest/{iid}-shadow" in r.stdout, r.stdout + r.stderr
    r = run_cli(["shadow", "start", iid], env)
    assert r.returncode == 0, r.stdout + r.stderr
    r = run_cli(["shadow", "run", "--once", iid, "--format", "json"], env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "live worker(s)" in r.stderr
    assert json.loads(r.stdout)["ingestions"][0]["verdict"] == "pass", r.stdout
    r = run_cli(["status", "--json"], env)
    st = json.loads(r.stdout)
    assert r.returncode == 0 and st["errors"] == [], r.stdout + r.stderr
    row = [x for x in st["ingestions"] if x["id"] == iid][0]
    assert (row["state"], row["prefect_shadow"]) == ("SHADOW", "active"), row

    # the deployment is on the profile's server
    with prefect_server.client() as c:
        dep = c.read_deployment_by_name(f"cutover-ingest/{iid}-shadow")
    assert dep.work_pool_name == "cutover"
    # and nothing of cutover's own ran: no embedded server, no worker, no port
    deadline = time.monotonic() + 20  # the session worker's flow-run process may still be exiting
    while workspace_processes(home) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert_nothing_started(home)


@pytest.mark.prefect
def test_no_worker_fails_fast_naming_the_pool(prefect_server, prefect_cleanup, workspace_env, tmp_path):
    """A pool no worker polls: `shadow run --once` fails before it triggers anything."""
    home = workspace_env
    pool = f"noworker-{uuid.uuid4().hex[:6]}"
    env = cutover_env(home, PREFECT_API_URL=prefect_server.url, CUTOVER_PREFECT_WORK_POOL=pool,
                      PREFECT_HOME=str(tmp_path / "no-profiles"))
    iid = f"conn-nw-{uuid.uuid4().hex[:6]}"
    prefect_cleanup(iid)
    write_csv_files(tmp_path / "src", 2)
    try:
        _shadow_ready(env, iid, tmp_path / "src", f"raw.{iid.replace('-', '_')}")
        r = run_cli(["shadow", "start", iid], env)
        assert r.returncode == 0, r.stdout + r.stderr
        start = _cli_start_s(home, tmp_path)
        t0 = time.monotonic()
        r = run_cli(["shadow", "run", "--once", iid], env, timeout=120)
        took = time.monotonic() - t0
        assert r.returncode != 0, r.stdout + r.stderr
        assert f"no live worker polls work pool '{pool}'" in r.stderr, r.stderr
        assert f"prefect worker start --pool {pool}" in r.stderr, r.stderr
        assert took < 15 or took - start < 12, f"took {took:.1f}s (the CLI alone {start:.1f}s)"
        with prefect_server.client() as c:  # nothing was triggered
            dep = c.read_deployment_by_name(f"cutover-ingest/{iid}-shadow")
            from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

            runs = c.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[dep.id])))
        assert runs == []
    finally:
        delete_deployments(prefect_server, [iid])
        with prefect_server.client() as c:
            c.delete_work_pool(pool)
