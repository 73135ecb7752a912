"""A throwaway PostgreSQL cluster for tests and bench scripts.

Usage (tests get it through the ``pg_cluster`` / ``pg_url_factory`` fixtures of
``tests/conftest.py``)::

    from tests.pg import PgCluster

    with PgCluster() as pg:                      # initdb + start on a free port
        url = pg.create_database("autoloader")   # postgresql+psycopg://postgres@127.0.0.1:PORT/autoloader
        ...
    # stopped (immediate shutdown) and its directory deleted

or from a shell, for a bench or a manual session (Ctrl-C stops and deletes it)::

    .venv/bin/python -m tests.pg [DBNAME ...]

What it takes care of:

- the binaries: ``initdb``/``pg_ctl`` on PATH or under ``/usr/lib/postgresql/*/bin``;
  :class:`PgUnavailable` (tests fail with the reason) when absent;
- running as root (``initdb`` refuses root): the data directory is owned by the
  ``postgres`` user and the binaries run through ``runuser -u postgres --``;
- a free port, picked by the kernel, retried if another process takes it first;
- garbage from earlier runs: every cluster lives in ``$TMPDIR/cutover-pg-*``
  with an ``owner.pid`` file; clusters whose owner process is gone are stopped
  and deleted before a new one starts (:func:`reap_orphans`);
- teardown even when the owner forgets: :meth:`PgCluster.stop` is registered
  with :mod:`atexit`.

The cluster trusts local connections (``-A trust``), listens on 127.0.0.1 only
and runs with ``fsync=off``: data there is disposable by design.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from cutover.core.osutil import pid_alive as _pid_alive

PREFIX = "cutover-pg-"
SUPERUSER = "postgres"
_NAME_OK = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PgUnavailable(RuntimeError):
    """PostgreSQL binaries (or the user to run them as) are not on this machine."""


def find_bin_dir() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``, or raise PgUnavailable."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).resolve().parent
    for cand in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(cand) / "initdb").exists() and (Path(cand) / "pg_ctl").exists():
            return Path(cand)
    raise PgUnavailable("PostgreSQL binaries (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql/*/bin")


def _run_as() -> list[str]:
    """Command prefix to run the server binaries (root cannot run initdb)."""
    if os.geteuid() != 0:
        return []
    import pwd

    try:
        pwd.getpwnam(SUPERUSER)
    except KeyError:
        raise PgUnavailable("running as root and there is no 'postgres' user to run initdb as") from None
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", SUPERUSER, "--"]
    raise PgUnavailable("running as root without runuser (util-linux) to run initdb as 'postgres'")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _postmaster_pid(data: Path) -> int | None:
    try:
        return int((data / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


def _kill_postmaster(data: Path) -> None:
    """Stop the cluster in ``data`` whatever its state: SIGQUIT (immediate shutdown), then SIGKILL."""
    pid = _postmaster_pid(data)
    if pid is None or not _pid_alive(pid):
        return
    for sig, wait in ((signal.SIGQUIT, 10.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                return
            time.sleep(0.02)


def reap_orphans(base: Path | None = None) -> list[Path]:
    """Stop and delete clusters left behind by runs whose owner process died."""
    base = Path(base or tempfile.gettempdir())
    removed = []
    for d in base.glob(PREFIX + "*"):
        if not d.is_dir():
            continue
        try:
            owner = int((d / "owner.pid").read_text().strip())
        except (OSError, ValueError):
            owner = None
        if owner is not None and _pid_alive(owner):
            continue  # a live process owns it (another pytest session, a bench, or this process)
        if owner is None and time.time() - d.stat().st_mtime < 60:
            continue  # being created right now
        _kill_postmaster(d / "data")
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


class PgCluster:
    """One PostgreSQL cluster in a temp dir; see the module docstring."""

    def __init__(self, *, base_dir: str | Path | None = None, start_timeout: float = 30.0):
        self.bin_dir = find_bin_dir()
        self.prefix = _run_as()
        self.base_dir = Path(base_dir or tempfile.gettempdir())
        self.start_timeout = start_timeout
        self.root: Path | None = None
        self.port: int | None = None
        self.host = "127.0.0.1"
        self._databases: set[str] = set()

    # -- lifecycle -----------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        assert self.root is not None, "cluster not started"
        return self.root / "data"

    @property
    def running(self) -> bool:
        return self.root is not None and self.port is not None

    def start(self) -> "PgCluster":
        if self.running:
            return self
        reap_orphans(self.base_dir)
        self.root = Path(tempfile.mkdtemp(prefix=PREFIX, dir=self.base_dir))
        (self.root / "owner.pid").write_text(str(os.getpid()))
        atexit.register(self.stop)
        try:
            self._initdb()
            self._start_server()
        except BaseException:
            self.stop()
            raise
        return self

    def _chown(self, path: Path) -> None:
        if self.prefix:
            shutil.chown(path, user=SUPERUSER, group=None)

    def _initdb(self) -> None:
        os.chmod(self.root, 0o755)  # the postgres user must reach data/ and the socket
        data = self.data_dir
        data.mkdir(mode=0o700)
        self._chown(data)
        res = subprocess.run(
            [*self.prefix, str(self.bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", SUPERUSER,
             "-E", "UTF8", "--locale=C", "--no-sync"],
            capture_output=True, text=True, check=False)
        if res.returncode != 0:
            hint = (f" (the '{SUPERUSER}' user must be able to reach {self.root}: every parent directory "
                    "needs o+x; pytest's tmp_path does not have it, the default $TMPDIR does)"
                    if self.prefix and "Permission denied" in res.stderr else "")
            raise RuntimeError(f"initdb failed ({res.returncode}): {res.stderr.strip()[-2000:]}{hint}")

    def _start_server(self) -> None:
        last = ""
        for _attempt in range(5):
            port = _free_port()
            opts = (f"-p {port} -k {self.data_dir} -c listen_addresses={self.host} -c fsync=off "
                    "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
            res = subprocess.run(
                [*self.prefix, str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-o", opts,
                 "-l", str(self.data_dir / "server.log"), "-w", "-t", str(int(self.start_timeout)), "start"],
                capture_output=True, text=True, check=False)
            if res.returncode == 0:
                self.port = port
                return
            try:
                last = (self.data_dir / "server.log").read_text()[-2000:]
            except OSError:
                last = res.stderr[-2000:]
            _kill_postmaster(self.data_dir)
            if "could not bind" not in last and "already in use" not in last:
                break
        raise RuntimeError(f"pg_ctl start failed: {last.strip()}")

    def stop(self) -> None:
        """Immediate shutdown and delete the directory; safe to call twice."""
        root, self.root, self.port = self.root, None, None
        self._databases.clear()
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if root is None:
            return
        _kill_postmaster(root / "data")
        shutil.rmtree(root, ignore_errors=True)

    def __enter__(self) -> "PgCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- databases -----------------------------------------------------------------------
    def url(self, dbname: str = "postgres", driver: str = "psycopg") -> str:
        """SQLAlchemy URL of ``dbname`` (``driver`` ``psycopg`` or ``asyncpg`` for Prefect)."""
        assert self.running, "cluster not started"
        return f"postgresql+{driver}://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def dsn(self, dbname: str = "postgres") -> str:
        """libpq DSN of ``dbname`` (for psycopg.connect / psql)."""
        assert self.running, "cluster not started"
        return f"host={self.host} port={self.port} user={SUPERUSER} dbname={dbname}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, name: str | None = None, *, prefix: str = "db") -> str:
        """Create a database (a unique name when ``name`` is None); returns its URL."""
        name = name or f"{prefix}_{uuid.uuid4().hex[:10]}"
        if not _NAME_OK.match(name):
            raise ValueError(f"database name {name!r}: use lower-case letters, digits and _")
        self._admin(f'CREATE DATABASE "{name}"')
        self._databases.add(name)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name``, disconnecting whoever is still connected."""
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._databases.discard(name)

    def databases(self) -> list[str]:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            rows = conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres'")
            return sorted(r[0] for r in rows)


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.pg [DBNAME ...]``: start a cluster, print URLs, wait for Ctrl-C."""
    names = list(sys.argv[1:] if argv is None else argv)
    with PgCluster() as pg:
        print(f"PostgreSQL on {pg.host}:{pg.port} (data {pg.data_dir})", flush=True)
        for n in names:
            print(pg.create_database(n), flush=True)
        print("Ctrl-C stops and deletes it", flush=True)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    return 0


if __name__ == "__main__":
    sys.exit(main())
