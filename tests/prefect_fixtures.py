"""One real Prefect server + process worker per test session, for every test that needs Prefect.

Use it by importing the fixtures into a test module (or a conftest)::

    from tests.prefect_fixtures import prefect_server, prefect_env, prefect_cleanup  # noqa: F401

``prefect_server`` (session)
    A local Prefect server (SQLite, temp PREFECT_HOME) and one process worker for
    the ``cutover`` work pool, started through ``flows.local.up`` exactly
    as ``cutover prefect up`` starts them (waiting CUTOVER_PREFECT_START_TIMEOUT, default 180 s); stopped (SIGTERM, then SIGKILL) when the
    session ends. Yields a :class:`PrefectServer`. Every test workspace can use
    it: each deployment carries its own ``CUTOVER_HOME`` in its job variables, so
    one worker serves them all.

``prefect_env`` (function)
    An isolated workspace (``workspace_env`` of tests/conftest.py) with
    ``PREFECT_API_URL`` pointing at the session server. Yields the home Path.

``prefect_cleanup`` (function)
    ``prefect_cleanup(ingestion_id)`` registers an ingestion whose deployments
    (both modes) are deleted when the test ends, so that the schedules of one
    test never fire into the next.

Code that cannot request fixtures (the contract suite's harness factories) calls
:func:`session_server` (the same singleton) and :func:`make_prefect_harness`.

No leftovers: the server is stopped by the session fixture's finalizer, else at
interpreter exit (atexit); servers of earlier sessions whose pytest died are
stopped on the next start (``$TMPDIR/cutover-prefect-*`` with an ``owner.pid``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cutover.core.osutil import pid_alive as _pid_alive

PREFIX = "cutover-prefect-"
# the worker polls for runs every 10 s by default; tests want runs picked up quickly
TEST_SERVER_ENV = {"PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_WORKER_PREFETCH_SECONDS": "5"}


@dataclass
class PrefectServer:
    url: str
    settings: object
    root: Path
    work_pool: str
    server_pid: int
    worker_pid: int | None
    started_in_s: float

    def client(self):
        from flows.http import client

        return client(self.url)


_SERVER: PrefectServer | None = None


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("CUTOVER_", "PREFECT_"))}


def _settings_for(root: Path):
    from cutover.core.config import load_settings

    env = _clean_env()
    if os.environ.get("CUTOVER_PREFECT_START_TIMEOUT"):  # the one setting demos and tests honour
        env["CUTOVER_PREFECT_START_TIMEOUT"] = os.environ["CUTOVER_PREFECT_START_TIMEOUT"]
    env["CUTOVER_HOME"] = str(root / "cutover-home")
    env["CUTOVER_PREFECT_HOME"] = str(root / "prefect-home")
    return load_settings(env), env


def reap_orphans(base: Path | None = None) -> list[Path]:
    """Stop the servers of test sessions whose pytest process is gone."""
    from flows import local as pl

    removed = []
    for d in Path(base or tempfile.gettempdir()).glob(PREFIX + "*"):
        try:
            owner = int((d / "owner.pid").read_text().strip())
        except (OSError, ValueError):
            continue
        if owner == os.getpid() or _pid_alive(owner):
            continue
        settings, _ = _settings_for(d)
        with contextlib.suppress(Exception):
            pl.down(settings, grace=5)
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


def session_server() -> PrefectServer:
    """Start the session's server + worker on first call; the same one afterwards."""
    global _SERVER
    if _SERVER is not None:
        return _SERVER
    from flows import local as pl

    reap_orphans()
    root = Path(tempfile.mkdtemp(prefix=PREFIX))
    (root / "owner.pid").write_text(str(os.getpid()))
    settings, env = _settings_for(root)
    t0 = time.monotonic()
    atexit.register(stop_session_server)
    try:
        res = pl.up(settings, env=env, extra_env=TEST_SERVER_ENV)  # waits [prefect] start_timeout
    except BaseException:
        pl.down(settings, grace=5)
        shutil.rmtree(root, ignore_errors=True)
        raise
    _SERVER = PrefectServer(url=res.state.url, settings=settings, root=root, work_pool=settings.prefect_work_pool,
                            server_pid=res.state.server_pid, worker_pid=res.state.worker_pid,
                            started_in_s=time.monotonic() - t0)
    return _SERVER


def stop_session_server() -> None:
    global _SERVER
    srv, _SERVER = _SERVER, None
    if srv is None:
        return
    from flows import local as pl

    pl.down(srv.settings, grace=10)
    for pid in (srv.server_pid, srv.worker_pid):
        if pid and pl.pid_alive(pid):  # pragma: no cover - down() failed: never leave it behind
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, 9)
    shutil.rmtree(srv.root, ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_server():
    srv = session_server()
    try:
        yield srv
    finally:
        pids = (srv.server_pid, srv.worker_pid)
        stop_session_server()
        from cutover.core.osutil import pid_alive

        assert not any(pid_alive(p) for p in pids if p), "a Prefect process survived the session"


@pytest.fixture
def prefect_env(prefect_server, workspace_env, monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", prefect_server.url)
    yield workspace_env


def delete_deployments(server: PrefectServer, ingestion_ids: list[str] | None = None) -> int:
    """Delete the cutover deployments of these ingestions (all cutover deployments when None)."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags
    from prefect.client.schemas.sorting import DeploymentSort
    from prefect.exceptions import ObjectNotFound

    n = 0
    with server.client() as c:
        while True:
            deps = c.read_deployments(deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=["cutover"])),
                                      limit=200, offset=0, sort=DeploymentSort.NAME_ASC)
            if ingestion_ids is not None:
                wanted = {f"ingestion:{i}" for i in ingestion_ids}
                deps = [d for d in deps if wanted & set(d.tags)]
            for d in deps:
                with contextlib.suppress(ObjectNotFound):
                    c.delete_deployment(d.id)
                    n += 1
            if ingestion_ids is not None or len(deps) < 200:
                return n


@pytest.fixture
def prefect_cleanup(prefect_server):
    ids: list[str] = []
    yield ids.append
    if ids:
        delete_deployments(prefect_server, ids)


def wait_flow_run(server: PrefectServer, flow_run_id: str, *, timeout: float = 90.0):
    """Poll until the flow run is final; returns it."""
    deadline = time.monotonic() + timeout
    fr = None
    with server.client() as c:
        while time.monotonic() < deadline:
            fr = c.read_flow_run(flow_run_id)
            if fr.state is not None and fr.state.is_final():
                return fr
            time.sleep(0.5)
    raise AssertionError(f"flow run {flow_run_id} not final after {timeout}s: "
                         f"{fr.state.type if fr and fr.state else None}")


def make_prefect_harness(cw):
    """Contract-suite harness: the Prefect adapter in live mode on the session server.

    The server is shared by the whole session, so every test starts and ends with
    no cutover deployment on it (list_jobs must show exactly this workspace's jobs).
    New deployments are created active (``paused_on_create=False``) as the contract
    expects of ensure_job; the production default for live mode is paused.
    """
    from flows.adapter import PrefectAdapter
    from tests.contract.conftest import Harness

    srv = session_server()
    delete_deployments(srv)
    adapter = PrefectAdapter(cw.ws, srv.url, mode="live", paused_on_create=False)
    h = Harness("prefect", adapter, cw, run_orchestrator="prefect")
    h.wait_for_run = _patient(h.wait_for_run)  # worker pick-up + flow-run process start: ~5-10 s
    h.closers.append(adapter.close)
    h.closers.append(lambda: delete_deployments(srv))
    return h


def _patient(wait):
    def wait_for_run(ingestion_id: str, run_ref: str, *, timeout: float = 90.0):
        return wait(ingestion_id, run_ref, timeout=timeout)

    return wait_for_run
