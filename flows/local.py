"""The embedded Prefect side: a local Prefect server (SQLite) and one process worker.

``up`` starts ``prefect server start`` and ``prefect worker start --type process``
detached (own session, logs in ``<prefect_home>/logs``), waits for
``/api/health``, creates the work pool and its queues, and records pids and URL
in ``<prefect_home>/cutover-local.json``. ``down`` stops both (SIGTERM, SIGKILL
after a grace period) and is idempotent. ``status`` reports URL, pids and health.

``api_url(settings, start=..., worker=...)`` is what every Prefect-using command calls: the
selected server (``settings.prefect``: environment, then profile, see
``cutover.core.prefectconn``), probed once (one line in seconds when it does not answer), else the
embedded server, started only when ``start`` (the commands that deploy or run flows) and with its
worker only when ``worker`` (a flow must run). Read-only commands pass ``start=False``: they start
nothing.

Nothing here imports prefect at module level: the CLI must start fast. Only the
pool/queue creation imports the client, and only when a server is up. The connection to the
API (health check, the Prefect client bound to a URL, the REST client) is ``flows.http``'s.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from cutover.core.errors import InputError
from cutover.core.osutil import pid_alive
from cutover.core.progress import waiting
# the connection lives in flows.http; re-exported for the CLI
from flows.http import (PrefectHTTP, PrefectStartFailed, PrefectUnavailable, RetryCounter, check_health,  # noqa: F401
                        client, probe, require_worker, settings_for, worker_online, worker_start_command)

STATE_FILE = "cutover-local.json"
WORK_QUEUES = ("default", "high-memory", "priority")  # cutover.core.records.ingestions.WORK_QUEUES
# lower = higher priority in Prefect
_QUEUE_PRIORITY = {"priority": 1, "default": 2, "high-memory": 3}

# Server environment. On SQLite every write is serialized (503 + client retry under
# contention); the event persister is the largest writer we do not need for an
# embedded, UI-less server (see FACTS.md: ~10 -> ~54 sequential writes/s). The user
# may override any of these in the environment.
SERVER_ENV_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": "false",
    "PREFECT_SERVER_UI_ENABLED": "false",
}


Echo = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- small helpers ------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _is_ours(pid: int | None, marker: str) -> bool:
    """The pid is alive and still the prefect process we started (pids get recycled)."""
    if not pid_alive(pid):
        return False
    cmd = _cmdline(pid)
    return not cmd or ("prefect" in cmd and marker in cmd)


def prefect_executable() -> list[str]:
    """How to run the prefect CLI of this interpreter."""
    exe = Path(sys.executable).parent / "prefect"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "prefect"]


def _tail(path: Path, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


# -- state ----------------------------------------------------------------------------------

@dataclass
class LocalState:
    url: str
    port: int
    server_pid: int
    worker_pid: int | None
    work_pool: str
    prefect_home: str
    server_log: str
    worker_log: str | None
    started_at: str
    health_wait_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def state_path(settings) -> Path:
    return Path(settings.prefect_home) / STATE_FILE


def read_state(settings) -> LocalState | None:
    p = state_path(settings)
    try:
        data = json.loads(p.read_text())
        return LocalState(**{k: data.get(k) for k in LocalState.__dataclass_fields__})
    except (OSError, ValueError, TypeError):
        return None


def _write_state(settings, st: LocalState) -> None:
    p = state_path(settings)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(st.as_dict(), indent=2))
    os.replace(tmp, p)


@contextlib.contextmanager
def _lock(settings) -> Iterator[None]:
    """Serialize up/down of one prefect home across processes."""
    import fcntl

    home = Path(settings.prefect_home)
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".cutover-local.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def prefect_env(settings, url: str | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the prefect processes we start: this workspace's PREFECT_HOME and API URL."""
    env = dict(os.environ if base is None else base)
    env["PREFECT_HOME"] = str(Path(settings.prefect_home).absolute())
    env["CUTOVER_HOME"] = str(settings.home)
    if url:
        env["PREFECT_API_URL"] = url
    else:
        env.pop("PREFECT_API_URL", None)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


# -- start / stop -----------------------------------------------------------------------------

def _spawn(cmd: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        fh.write(f"\n--- {datetime.now(timezone.utc).isoformat()} {' '.join(cmd)}\n".encode())
        fh.flush()
        return subprocess.Popen(cmd, env=env, cwd=str(cwd), stdin=subprocess.DEVNULL, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)


PROGRESS_EVERY = 5.0  # seconds between "still waiting" lines


def wait_healthy(url: str, *, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None,
                 echo: Echo | None = None, every: float = PROGRESS_EVERY) -> float:
    """Poll /api/health until it answers true; returns seconds waited. ``echo`` hears a progress
    line every few seconds."""
    t0 = time.monotonic()
    detail = ""
    next_note = t0 + every
    # on a terminal a spinner with the elapsed time and the last answer; into a pipe the echo lines only
    with waiting(f"starting the Prefect server at {url}", plain=False) as w:
        while time.monotonic() - t0 < timeout:
            ok, detail = check_health(url, timeout=1.0)
            if ok:
                return time.monotonic() - t0
            w.note(f"{detail}; timeout {timeout:.0f}s")
            if echo is not None and time.monotonic() >= next_note:
                if not w.live:
                    echo(f"waiting for the Prefect server at {url}: {time.monotonic() - t0:.0f}s of {timeout:.0f}s "
                         f"({detail})")
                next_note += every
            if proc is not None and proc.poll() is not None:
                tail = _tail(log) if log else ""
                raise PrefectStartFailed(f"the Prefect server exited with code {proc.returncode} before it was healthy"
                                         + (f"; last log lines:\n{tail}" if tail else ""),
                                         fix=f"see {log}" if log else None)
            time.sleep(0.2)
    raise PrefectStartFailed(f"the Prefect server at {url} was not healthy after {timeout:.0f}s ({detail})",
                             fix=(f"see {log}; on a loaded machine give it longer: --timeout or "
                                  f"CUTOVER_PREFECT_START_TIMEOUT ([prefect] start_timeout)") if log
                             else "check the server")


def start_server(settings, *, port: int | None = None, timeout: float | None = None,
                 extra_env: dict[str, str] | None = None, env: dict[str, str] | None = None,
                 echo: Echo | None = None) -> tuple[subprocess.Popen, str, float, Path]:
    """Start ``prefect server start`` detached; returns (process, api url, seconds to healthy, log).
    ``timeout``: default the workspace's [prefect] start_timeout."""
    timeout = settings.prefect_start_timeout if timeout is None else timeout
    home = Path(settings.prefect_home).absolute()
    log = home / "logs" / "server.log"
    last_err: Exception | None = None
    for _attempt in range(3):  # the free port may be taken between bind and listen
        p = port or free_port()
        url = f"http://127.0.0.1:{p}/api"
        penv = prefect_env(settings, url, env)
        for k, v in SERVER_ENV_DEFAULTS.items():
            penv.setdefault(k, v)
        penv.update(extra_env or {})
        cmd = [*prefect_executable(), "server", "start", "--host", "127.0.0.1", "--port", str(p), "--no-ui",
               "--analytics-off"]
        proc = _spawn(cmd, penv, log, home)
        try:
            waited = wait_healthy(url, timeout=timeout, proc=proc, log=log, echo=echo)
            return proc, url, waited, log
        except PrefectUnavailable as e:
            last_err = e
            _terminate(proc.pid, grace=5)
            if "address already in use" not in _tail(log, 40).lower() or port:
                break
    assert last_err is not None
    raise last_err


def start_worker(settings, url: str, *, pool: str | None = None, extra_env: dict[str, str] | None = None,
                 env: dict[str, str] | None = None) -> tuple[subprocess.Popen, Path]:
    home = Path(settings.prefect_home).absolute()
    log = home / "logs" / "worker.log"
    env = prefect_env(settings, url, env)
    env.update(extra_env or {})
    pool = pool or settings.prefect_work_pool
    cmd = [*prefect_executable(), "worker", "start", "--pool", pool, "--type", "process",
           "--name", f"cutover-{socket.gethostname()}-{os.getpid()}"]
    proc = _spawn(cmd, env, log, home)
    time.sleep(0.3)
    if proc.poll() is not None:
        raise PrefectStartFailed(f"the Prefect worker exited with code {proc.returncode}; last log lines:\n{_tail(log)}",
                                 fix=f"see {log}")
    return proc, log


def wait_worker_online(url: str, pool: str, proc_pid: int, *, timeout: float, log: Path | None = None,
                       poll: float = 0.5) -> float:
    """Wait until the server lists an ONLINE worker for ``pool`` (a started worker process needs a
    few seconds, more on a loaded machine, before its first heartbeat: a flow run triggered before
    then finds no worker, and `require_worker` refuses it). Returns the seconds waited; raises
    PrefectStartFailed when the process dies or ``timeout`` passes."""
    t0 = time.monotonic()
    while True:
        if not pid_alive(proc_pid):
            _reap(proc_pid)
            raise PrefectStartFailed(f"the Prefect worker for pool {pool!r} exited before it registered with the "
                                     f"server; last log lines:\n{_tail(log) if log else ''}",
                                     fix=f"see {log}" if log else "see the worker's log")
        with contextlib.suppress(Exception):
            with PrefectHTTP(url, timeout=5.0, retries=0) as http:
                if any(worker_online(w) for w in http.workers(pool)):
                    return time.monotonic() - t0
        if time.monotonic() - t0 >= timeout:
            raise PrefectStartFailed(f"the Prefect worker for pool {pool!r} (pid {proc_pid}) did not report to the "
                                     f"server at {url} within {timeout:.0f}s",
                                     fix=f"see {log}; raise [prefect] start_timeout on a slow machine" if log
                                     else "raise [prefect] start_timeout on a slow machine")
        time.sleep(poll)


def _terminate(pid: int | None, *, grace: float = 10.0) -> str:
    """SIGTERM the process group we started (it leads its own session), SIGKILL after ``grace``."""
    if not pid or not pid_alive(pid):
        return "not running"
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return "not running"
    use_group = pgid == pid  # started with start_new_session: the group is ours alone

    def _send(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if use_group:
                os.killpg(pgid, sig)
            else:
                os.kill(pid, sig)

    _send(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(pid)
        if not pid_alive(pid):
            return "stopped"
        time.sleep(0.1)
    _send(signal.SIGKILL)
    for _ in range(50):
        _reap(pid)
        if not pid_alive(pid):
            break
        time.sleep(0.1)
    return "killed"


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


@dataclass
class UpResult:
    state: LocalState
    started_server: bool
    started_worker: bool
    created: list[str]
    health_wait_s: float | None


def up(settings, *, timeout: float | None = None, worker: bool = True, echo: Echo | None = None,
       extra_env: dict[str, str] | None = None, env: dict[str, str] | None = None) -> UpResult:
    """Start (or reuse) the local server and worker; create the work pool and queues. Idempotent.

    ``timeout``: seconds to wait for the server's health (default: [prefect] start_timeout, env
    CUTOVER_PREFECT_START_TIMEOUT); ``env``: base environment of the processes (default: this
    process's); ``extra_env`` is added on top.
    """
    timeout = settings.prefect_start_timeout if timeout is None else timeout
    with _lock(settings):
        st = read_state(settings)
        started_server = started_worker = False
        waited: float | None = None
        if st and _is_ours(st.server_pid, "server") and check_health(st.url)[0]:
            url = st.url
        else:
            if st and _is_ours(st.server_pid, "server"):  # alive but unhealthy: replace it
                _terminate(st.server_pid, grace=5)
            if st and _is_ours(st.worker_pid, "worker"):
                _terminate(st.worker_pid, grace=5)
            if echo:
                echo(f"starting the embedded Prefect server in {Path(settings.prefect_home).absolute()} "
                     f"(no other server is selected: `cutover config show`; waiting up to {timeout:.0f}s) ...")
            proc, url, waited, log = start_server(settings, timeout=timeout, extra_env=extra_env, env=env, echo=echo)
            started_server = True
            if echo:
                echo(f"Prefect server healthy at {url} after {waited:.1f}s (pid {proc.pid}, log {log})")
            st = LocalState(url=url, port=int(url.rsplit(":", 1)[1].split("/")[0]), server_pid=proc.pid,
                            worker_pid=None, work_pool=settings.prefect_work_pool,
                            prefect_home=str(Path(settings.prefect_home).absolute()), server_log=str(log),
                            worker_log=None, started_at=datetime.now(timezone.utc).isoformat(), health_wait_s=waited)
            _write_state(settings, st)
        try:
            created = ensure_work_pool(url, settings.prefect_work_pool)
        except Exception:
            if started_server:
                _terminate(st.server_pid, grace=5)
                state_path(settings).unlink(missing_ok=True)
            raise
        if worker and not _is_ours(st.worker_pid, "worker"):
            wproc, wlog = start_worker(settings, url, extra_env=extra_env, env=env)
            st.worker_pid, st.worker_log = wproc.pid, str(wlog)
            started_worker = True
            _write_state(settings, st)  # recorded before the wait: `prefect down` stops it if the wait fails
            online_s = wait_worker_online(url, settings.prefect_work_pool, wproc.pid, timeout=timeout, log=wlog)
            if echo:
                echo(f"Prefect process worker for pool {settings.prefect_work_pool!r} started (pid {wproc.pid}, "
                     f"online after {online_s:.1f}s, log {wlog})")
        st.work_pool = settings.prefect_work_pool
        _write_state(settings, st)
        return UpResult(st, started_server, started_worker, created, waited)


def down(settings, *, grace: float = 10.0) -> dict[str, str]:
    """Stop the worker, then the server. Idempotent: returns what happened to each."""
    if not state_path(settings).exists():  # nothing recorded: nothing to stop (and nothing to create)
        return {"worker": "not running", "server": "not running"}
    with _lock(settings):
        st = read_state(settings)
        if st is None:
            return {"worker": "not running", "server": "not running"}
        out = {
            "worker": _terminate(st.worker_pid, grace=grace) if _is_ours(st.worker_pid, "worker") else "not running",
            "server": _terminate(st.server_pid, grace=grace) if _is_ours(st.server_pid, "server") else "not running",
        }
        state_path(settings).unlink(missing_ok=True)
        return out


def status(settings) -> dict[str, Any]:
    """What runs where; never starts anything."""
    out: dict[str, Any] = {"prefect_home": str(Path(settings.prefect_home).absolute()),
                           "work_pool": settings.prefect_work_pool}
    conn = settings.prefect
    out["source"] = conn.source
    if conn.problem:
        out.update(mode="external" if conn.url else "local", url=conn.public()["api_url"], healthy=False,
                   health=f"configuration problem: {conn.public()['problem']}")
        return out
    if not conn.embedded:
        ok, detail = check_health(conn)
        out.update(mode="external", url=conn.public()["api_url"], healthy=ok, health=detail)
        return out
    st = read_state(settings)
    if st is None:
        out.update(mode="local", url=None, healthy=False, health="not started (cutover prefect up)",
                   server_pid=None, server_alive=False, worker_pid=None, worker_alive=False)
        return out
    ok, detail = check_health(st.url)
    out.update(mode="local", url=st.url, healthy=ok, health=detail, server_pid=st.server_pid,
               server_alive=_is_ours(st.server_pid, "server"), worker_pid=st.worker_pid,
               worker_alive=_is_ours(st.worker_pid, "worker"), started_at=st.started_at,
               server_log=st.server_log, worker_log=st.worker_log)
    return out


def local_url(settings) -> str | None:
    """URL of a running, healthy local server of this workspace, else None (never starts one)."""
    st = read_state(settings)
    if st and _is_ours(st.server_pid, "server") and check_health(st.url)[0]:
        return st.url
    return None


def never_started(settings) -> bool:
    """True when this workspace's embedded server never ran (no state, no database): it holds no
    deployment, so a reader may say so without starting it."""
    home = Path(settings.prefect_home)
    return not state_path(settings).exists() and not (home / "prefect.db").exists()


def api_url(settings, *, start: bool = True, worker: bool = True, echo: Echo | None = _stderr) -> str:
    """The Prefect API to talk to: the selected server (environment, then profile), probed once;
    else the embedded server, started only when ``start`` (with its worker when ``worker``)."""
    conn = settings.prefect
    conn.check()
    if not conn.embedded:
        return probe(conn)
    url = local_url(settings)
    if url is not None:
        st = read_state(settings)
        if not (start and worker) or (st is not None and _is_ours(st.worker_pid, "worker")):
            return url
    if not start:
        raise PrefectUnavailable(f"the embedded Prefect server of this workspace is not running (no Prefect API is "
                                 f"configured: {conn.source})",
                                 fix="run `cutover prefect up`, or select a server: PREFECT_API_URL or a Prefect "
                                     "profile (PREFECT_PROFILE)")
    res = up(settings, worker=worker, echo=echo)
    return res.state.url


def ensure_work_pool(url: str, pool: str, queues: tuple[str, ...] = WORK_QUEUES) -> list[str]:
    """Create the process work pool and its queues if missing (sequential writes). Returns what was created."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    created: list[str] = []
    with client(url) as c:
        try:
            wp = c.read_work_pool(pool)
        except ObjectNotFound:
            from prefect.workers.process import ProcessWorker

            try:
                c.create_work_pool(WorkPoolCreate(name=pool, type="process",
                                                  base_job_template=ProcessWorker.get_default_base_job_template(),
                                                  description="cutover: ingestion flows"))
                created.append(f"work pool {pool}")
            except ObjectAlreadyExists:
                pass
            wp = c.read_work_pool(pool)
        if wp.type != "process":
            raise InputError(f"work pool {pool!r} exists with type {wp.type!r}, cutover needs a process pool",
                             fix="set [prefect] work_pool / CUTOVER_PREFECT_WORK_POOL to another name")
        from prefect.client.schemas.filters import WorkQueueFilter

        # the sync client sends null limit/filter unless given (422 in 3.8.8)
        existing = {q.name for q in c.read_work_queues(work_pool_name=pool, work_queue_filter=WorkQueueFilter(),
                                                       limit=200, offset=0)}
        for q in queues:
            if q in existing:
                continue
            try:
                c.create_work_queue(name=q, work_pool_name=pool, priority=_QUEUE_PRIORITY.get(q))
                created.append(f"work queue {pool}/{q}")
            except ObjectAlreadyExists:
                pass
    return created
