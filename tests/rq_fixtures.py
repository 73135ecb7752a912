"""One real Redis server + two real RQ workers per test session, for every test that needs RQ.

``rq_session`` (session fixture, in tests/conftest.py)
    A ``redis-server`` (Debian's; ``legacy.rq.server.RedisServer``: free port on 127.0.0.1,
    temp dir, ``requirepass`` with a random password -- so every test also proves the password
    never reaches an output --, no persistence) and two worker processes
    (``python -m legacy.rq.worker``; the first with ``--with-scheduler``) listening on
    :data:`QUEUES`. Skipped with the reason only when ``redis-server`` is absent (``make test``
    installs it first: scripts/ensure-redis). Stopped at the end of the session (atexit too).

``rq_ws`` (function fixture)
    An isolated workspace (``workspace_env``) with an rq.json pointing at the session Redis
    under a key prefix of its own (tests never see each other's definitions, holds or runs).
    Yields :class:`RQWorkspace`. Teardown removes its definitions and kickoffs, resumes the
    workers if the test left them suspended, and deletes its keys.

Workers serve every test workspace: each definition carries its workspace's ``CUTOVER_HOME``
(like Prefect deployments carry it in their job variables), so the jobs open the right one.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QUEUES = ("cutover-test", "cutover-test-heavy")


@dataclass
class RQSession:
    server: object  # legacy.rq.server.RedisServer
    workers: list[subprocess.Popen]
    log_dir: Path

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def password(self) -> str:
        return self.server.password

    def client(self):
        return self.server.client()


_SESSION: RQSession | None = None


def _worker_env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUTOVER_", "PREFECT_"))}
    env["CUTOVER_RQ_REDIS_URL"] = url
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_worker(url: str, log: Path, *, scheduler: bool, name: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "legacy.rq.worker", "--queues", *QUEUES, "--name", name, "--log-level", "WARNING"]
    if scheduler:
        args.append("--with-scheduler")
    return subprocess.Popen(args, cwd=str(ROOT), env=_worker_env(url), stdin=subprocess.DEVNULL,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)


def _wait_workers(session: RQSession, n: int, timeout: float = 60.0) -> None:
    from rq import Worker

    deadline = time.monotonic() + timeout
    conn = session.client()
    while time.monotonic() < deadline:
        for p in session.workers:
            if p.poll() is not None:
                tail = "".join(open(session.log_dir / "workers.log").readlines()[-20:])
                raise RuntimeError(f"an RQ worker exited with {p.returncode}:\n{tail}")
        if len(Worker.all(connection=conn)) >= n:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{n} RQ workers did not register within {timeout}s")


def session_rq() -> RQSession:
    global _SESSION
    if _SESSION is not None:
        return _SESSION
    from legacy.rq.server import RedisServer

    srv = RedisServer().start()
    log_dir = srv.dir
    log = log_dir / "workers.log"
    workers = [start_worker(srv.url, log, scheduler=True, name=f"cutover-test-{os.getpid()}-a"),
               start_worker(srv.url, log, scheduler=False, name=f"cutover-test-{os.getpid()}-b")]
    _SESSION = RQSession(srv, workers, log_dir)
    atexit.register(stop_session_rq)
    _wait_workers(_SESSION, len(workers))
    return _SESSION


def stop_session_rq() -> None:
    global _SESSION
    s, _SESSION = _SESSION, None
    if s is None:
        return
    for p in s.workers:  # RQ's warm shutdown: finish the current job, then exit
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
    for p in s.workers:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)
    s.server.stop()


@dataclass
class RQWorkspace:
    ws: object
    home: Path
    config: object  # RQConfig
    session: RQSession

    def adapter(self, **kw):
        from legacy.rq.adapter import RQAdapter

        return RQAdapter(self.ws, self.config, **kw)


def make_config(session: RQSession, **kw):
    from legacy.rq.model import RQConfig

    return RQConfig(redis_url=session.url, queue=QUEUES[0], key_prefix=f"t{uuid.uuid4().hex[:10]}", **kw)


def cleanup(session: RQSession, ws, prefix: str) -> None:
    """Remove a test's definitions (and their kickoffs) and keys; resume suspended workers."""
    from legacy.rq.adapter import RQAdapter
    from legacy.rq.model import RQConfig

    conn = session.client()
    a = RQAdapter(ws, RQConfig(redis_url=session.url, queue=QUEUES[0], key_prefix=prefix), conn=conn)
    for iid in a.store.def_ids():
        a.remove_job(iid)
    a.store.unsuspend()
    keys = list(conn.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        conn.delete(*keys)


def make_rq_harness(cw):
    """Contract-suite harness: RQAdapter on the session Redis + workers, under a key prefix of its own."""
    from legacy.rq.adapter import RQAdapter
    from tests.contract.conftest import Harness

    s = session_rq()
    cfg = make_config(s)
    cfg.save(cw.ws.settings)
    adapter = RQAdapter(cw.ws, cfg, trigger_timeout=60)
    h = Harness("rq", adapter, cw)
    h.closers.append(adapter.close)
    h.closers.append(lambda: cleanup(s, cw.ws, cfg.key_prefix))
    return h


def rq_fixture_session():
    from legacy.rq.server import RedisUnavailable

    try:
        return session_rq()
    except RedisUnavailable as e:
        pytest.fail(f"Redis not available: {e} (run `sh scripts/ensure-redis`; `make test` does)", pytrace=False)
