"""Shared pytest fixtures.

Fixtures for everybody (none is autouse):

``workspace_env`` (function)
    An isolated cutover workspace: ``CUTOVER_HOME`` points to a fresh temp dir,
    every other ``CUTOVER_*`` variable, ``PREFECT_API_URL`` and ``PREFECT_PROFILE`` are removed
    from the environment and ``PREFECT_PROFILES_PATH`` names a file that does not exist (no
    developer profile selects a server; monkeypatch restores them all), and cutover.core.db's process-wide
    caches (engines, "schema checked" set) are reset before and after the test.
    Yields the home :class:`~pathlib.Path` (not created: cutover creates it on
    first use, like a real first run). ``cutover.core.config.load_settings()`` and
    ``Workspace()`` called inside the test see this workspace; so do
    subprocesses given ``os.environ`` (see ``tests.helpers.cutover_env``).

``pg_cluster`` (session)
    One throwaway PostgreSQL 15 cluster (:class:`tests.pg.PgCluster`) for the
    whole session, started on first use on a free port in a temp dir, stopped
    and deleted at the end. Tests that use it fail with the reason when the
    PostgreSQL binaries are absent (never skipped). Mark such tests
    ``@pytest.mark.postgres``.

``pg_url_factory`` (function)
    ``pg_url_factory(prefix="db") -> url``: creates a fresh, empty database
    on the session cluster and returns its SQLAlchemy URL
    (``postgresql+psycopg://postgres@127.0.0.1:PORT/NAME``). Every database it
    created is dropped (connections forced closed) when the test ends, after
    cutover.core.db's engines are disposed. ``pg_url_factory.cluster`` is the
    cluster, for ``.url(name, driver="asyncpg")`` and the like.

``pg_url`` (function)
    Shorthand: one fresh database URL.

``rq_session`` (session) / ``rq_ws`` (function)
    One real ``redis-server`` (password-protected, no persistence, free port, temp dir) and two
    real RQ workers for the whole session; and a workspace whose rq.json points at it under a
    key prefix of its own (:class:`tests.rq_fixtures.RQWorkspace`). Skipped with the reason only
    when ``redis-server`` is absent (``make test`` installs it: scripts/ensure-redis). Mark such
    tests ``@pytest.mark.rq``. See tests/rq_fixtures.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import pg as pgmod

# pytest-xdist's workers run with COLUMNS=80 and LINES=24 in their environment (a shell may set them
# too), and every subprocess a test starts inherits them: tables would be cut to 80 columns where the
# tests read full values from a pipe. Tests that want a width set COLUMNS themselves (monkeypatch).
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)


def _reset_cutover_caches() -> None:
    import cutover.core.db

    cutover.core.db.dispose_engines()
    cutover.core.db.reset_schema_cache()


@pytest.fixture
def workspace_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Isolated CUTOVER_HOME; CUTOVER_*/PREFECT_API_URL cleared; cutover.core.db caches reset. Yields the home Path.
    COLUMNS is cleared too: a shell's COLUMNS=80 would cut the tables of in-process commands
    (cutover.core.output.terminal_width), while their tests check the full piped output."""
    for name in list(os.environ):
        if name.startswith("CUTOVER_") or name in ("PREFECT_API_URL", "PREFECT_PROFILE", "FORCE_COLOR", "COLUMNS"):
            monkeypatch.delenv(name, raising=False)
    # the developer's Prefect profile (~/.prefect/profiles.toml) must not select a server for a test
    monkeypatch.setenv("PREFECT_PROFILES_PATH", str(tmp_path / "no-prefect-profiles.toml"))
    home = tmp_path / "cutover-home"
    monkeypatch.setenv("CUTOVER_HOME", str(home))
    _reset_cutover_caches()
    try:
        yield home
    finally:
        _reset_cutover_caches()


@pytest.fixture(scope="session")
def pg_cluster():
    """A PostgreSQL cluster for the whole session. Missing binaries fail the tests that need it:
    the machine image has PostgreSQL 15, and a skip would let a broken image pass."""
    try:
        cluster = pgmod.PgCluster()
    except pgmod.PgUnavailable as e:
        pytest.fail(f"PostgreSQL not available: {e} (install postgresql-15)", pytrace=False)
    cluster.start()
    try:
        yield cluster
    finally:
        _reset_cutover_caches()
        cluster.stop()


class _PgUrlFactory:
    def __init__(self, cluster: pgmod.PgCluster):
        self.cluster = cluster
        self.names: list[str] = []

    def __call__(self, prefix: str = "db") -> str:
        url = self.cluster.create_database(prefix=prefix)
        self.names.append(url.rsplit("/", 1)[1])
        return url

    def cleanup(self) -> None:
        _reset_cutover_caches()
        for name in self.names:
            try:
                self.cluster.drop_database(name)
            except Exception:  # noqa: BLE001 - the cluster is deleted at session end anyway
                pass


@pytest.fixture
def pg_url_factory(pg_cluster):
    """``factory(prefix="db") -> url`` of a fresh database, dropped after the test."""
    factory = _PgUrlFactory(pg_cluster)
    try:
        yield factory
    finally:
        factory.cleanup()


@pytest.fixture
def pg_url(pg_url_factory) -> str:
    """One fresh PostgreSQL database URL, dropped after the test."""
    return pg_url_factory()


@pytest.fixture(scope="session")
def rq_session():
    """Redis + two RQ workers for the whole session (fails, naming the fix, if redis-server is absent)."""
    from tests.rq_fixtures import rq_fixture_session, stop_session_rq

    session = rq_fixture_session()
    try:
        yield session
    finally:
        stop_session_rq()


@pytest.fixture
def rq_ws(rq_session, workspace_env):
    """A workspace with an rq.json on the session Redis under its own key prefix."""
    from cutover.core.workspace import Workspace
    from tests.rq_fixtures import RQWorkspace, cleanup, make_config

    ws = Workspace()
    cfg = make_config(rq_session)
    cfg.save(ws.settings)
    try:
        yield RQWorkspace(ws, workspace_env, cfg, rq_session)
    finally:
        cleanup(rq_session, ws, cfg.key_prefix)
