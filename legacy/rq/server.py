"""A local ``redis-server`` in a directory of its own, for the demo and the tests.

Not how production runs Redis: it is what ``cutover prefect up`` is to a Prefect server, a
throwaway instance on 127.0.0.1 on a free port:

- the configuration is a file in the directory (never the command line, so the password
  does not show in ``ps``); ``requirepass`` with a random password by default;
- ``persistence=False`` (tests): ``save ""``, ``appendonly no`` -- nothing on disk;
  ``persistence=True``: ``appendonly yes`` (``appendfsync everysec``), the setting a
  production Redis behind RQ should have for the hold flags, definitions and scheduled
  kickoffs to survive a restart (docs/rq.md);
- ``stop()`` sends ``SHUTDOWN`` (``NOSAVE`` without persistence), then SIGKILL if needed.

Debian's ``redis-server`` (``apt-get install redis-server``; ``scripts/ensure-redis``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from cutover.core.redact import redact_url


class RedisUnavailable(RuntimeError):
    """The redis-server binary is not on this machine."""


def find_redis_server() -> str:
    exe = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)
    if exe is None:
        raise RedisUnavailable("redis-server not found on PATH (Debian: apt-get install redis-server; "
                               "or run scripts/ensure-redis)")
    return exe


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    def __init__(self, directory: Path | str | None = None, *, password: str | None = "", persistence: bool = False,
                 port: int | None = None):
        self.exe = find_redis_server()
        self.owns_dir = directory is None
        self.dir = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="cutover-redis-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.password = secrets.token_urlsafe(16) if password == "" else password
        self.persistence = persistence
        self.port = port
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def public_url(self) -> str:
        return redact_url(self.url) or ""

    def _config(self) -> str:
        lines = [f"port {self.port}", "bind 127.0.0.1", f"dir {self.dir}", "daemonize no", "protected-mode yes",
                 f"logfile {self.dir / 'redis.log'}", "loglevel notice", "databases 16"]
        if self.password:
            lines.append(f"requirepass {self.password}")
        if self.persistence:
            lines += ["appendonly yes", "appendfsync everysec", 'save ""']
        else:
            lines += ["appendonly no", 'save ""']
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 15.0) -> "RedisServer":
        import redis

        last = None
        for _ in range(5):  # another process may take the free port first
            if self.port is None or last is not None:
                self.port = free_port()
            conf = self.dir / "redis.conf"
            conf.write_text(self._config())
            conf.chmod(0o600)
            self.proc = subprocess.Popen([self.exe, str(conf)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping()
                    atexit.register(self.stop)
                    return self
                except (redis.RedisError, OSError) as e:
                    last = e
                    time.sleep(0.05)
            self._kill()
            last = last or RuntimeError("redis-server exited")
        tail = ""
        with contextlib.suppress(OSError):
            tail = (self.dir / "redis.log").read_text().strip().splitlines()[-1]
        raise RuntimeError(f"redis-server did not start on 127.0.0.1 ({type(last).__name__}; log: {tail[:200]})")

    def client(self):
        import redis

        return redis.Redis.from_url(self.url)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, *, remove: bool | None = None) -> None:
        import redis

        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(redis.RedisError, OSError):
                self.client().shutdown(save=self.persistence, nosave=not self.persistence)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self._kill()
        self.proc = None
        if remove if remove is not None else self.owns_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
