"""Alembic trees of both databases, on SQLite and on PostgreSQL, and `cutover db`.

- upgrade head -> downgrade base -> upgrade head for the autoloader and state
  trees, and after every upgrade the database matches the SQLAlchemy metadata
  (alembic autogenerate's compare_metadata finds nothing);
- both trees can share one database (separate version tables);
- `cutover db upgrade` is idempotent, `--dry-run` prints SQL and creates nothing;
- a shared (non-embedded) DB behind head makes a command exit 2 naming `cutover db upgrade`,
  and nothing is migrated behind the operator's back.
"""

from __future__ import annotations

import os

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from cutover.core import db as dbm
from cutover.cli import cli
from cutover.cli.app import run_main
from cutover.core.state.models import metadata as state_metadata
from cutover.core.records.tables import metadata as autoloader_metadata
from tests.helpers import cutover_env, run_cli

METADATA = {"autoloader": autoloader_metadata, "state": state_metadata}
TREES = ("autoloader", "state")


def _tables(url: str) -> set[str]:
    with dbm.get_engine(url).connect() as conn:
        return set(inspect(conn).get_table_names())


def _diff(url: str, tree: str) -> list:
    """compare_metadata between the live DB and the tree's metadata, limited to the tree's tables."""
    md = METADATA[tree]
    ours = set(md.tables)

    def include_name(name, type_, parent_names):
        if type_ == "table":
            return name in ours
        return True

    with dbm.get_engine(url).connect() as conn:
        ctx = MigrationContext.configure(conn, opts={
            "version_table": dbm.VERSION_TABLES[tree], "compare_type": True, "include_name": include_name})
        return compare_metadata(ctx, md)


def _cycle(url: str, tree: str) -> None:
    head = dbm.head_revision(tree)
    expected = set(METADATA[tree].tables)
    assert dbm.current_revision(url, tree) is None

    dbm.upgrade(url, tree)
    assert dbm.current_revision(url, tree) == head
    assert expected <= _tables(url)
    assert _diff(url, tree) == []

    dbm.downgrade(url, tree, "base")
    assert dbm.current_revision(url, tree) is None
    assert not (expected & _tables(url)), f"downgrade to base left {expected & _tables(url)}"

    dbm.upgrade(url, tree)
    assert dbm.current_revision(url, tree) == head
    assert _diff(url, tree) == []


@pytest.mark.parametrize("tree", TREES)
def test_upgrade_downgrade_upgrade_sqlite(tree, workspace_env, tmp_path):
    _cycle(f"sqlite:///{tmp_path / f'{tree}.db'}", tree)


@pytest.mark.postgres
@pytest.mark.parametrize("tree", TREES)
def test_upgrade_downgrade_upgrade_postgres(tree, workspace_env, pg_url_factory):
    _cycle(pg_url_factory(tree), tree)


@pytest.mark.postgres
def test_both_trees_share_one_postgres_database(workspace_env, pg_url):
    for tree in TREES:
        dbm.upgrade(pg_url, tree)
    for tree in TREES:
        assert dbm.current_revision(pg_url, tree) == dbm.head_revision(tree)
        assert _diff(pg_url, tree) == []
    # taking one tree down leaves the other one whole
    dbm.downgrade(pg_url, "autoloader", "base")
    assert dbm.current_revision(pg_url, "autoloader") is None
    assert dbm.current_revision(pg_url, "state") == dbm.head_revision("state")
    assert _diff(pg_url, "state") == []
    assert not (set(autoloader_metadata.tables) & _tables(pg_url))


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = run_main(cli, list(args))
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_db_upgrade_is_idempotent(workspace_env, capsys):
    rc, out, err = _cli(capsys, "db", "upgrade")
    assert rc == 0, err
    for tree in TREES:
        assert f"{tree}: empty -> {dbm.head_revision(tree)}" in out
    first = {tree: _tables(f"sqlite:///{workspace_env / f'{tree}.db'}") for tree in TREES}

    rc, out, err = _cli(capsys, "db", "upgrade")
    assert rc == 0, err
    for tree in TREES:
        assert f"{tree}: unchanged at {dbm.head_revision(tree)}" in out
        url = f"sqlite:///{workspace_env / f'{tree}.db'}"
        assert _tables(url) == first[tree]
        assert _diff(url, tree) == []

    rc, out, err = _cli(capsys, "db", "upgrade", "--dry-run")
    assert rc == 0, err
    assert "nothing to do" in out and "CREATE TABLE" not in out


def test_db_upgrade_dry_run_creates_nothing_sqlite(workspace_env, capsys):
    rc, out, err = _cli(capsys, "db", "upgrade", "--dry-run")
    assert rc == 0, err
    assert "CREATE TABLE processed_files" in out
    assert "CREATE TABLE cutover_states" in out
    assert "alembic_version_autoloader" in out and "alembic_version_cutover" in out
    # no DB file, not even the workspace directory
    assert not workspace_env.exists() or not any(workspace_env.iterdir()), list(workspace_env.iterdir())


@pytest.mark.postgres
def test_db_upgrade_dry_run_creates_nothing_postgres(workspace_env, pg_url, monkeypatch, capsys):
    monkeypatch.setenv("CUTOVER_DATABASE_AUTOLOADER_URL", pg_url)
    monkeypatch.setenv("CUTOVER_DATABASE_STATE_URL", pg_url)
    rc, out, err = _cli(capsys, "db", "upgrade", "--dry-run")
    assert rc == 0, err
    assert "CREATE TABLE processed_files" in out and "CREATE TABLE cutover_states" in out
    assert _tables(pg_url) == set()
    assert not workspace_env.exists()

    rc, out, err = _cli(capsys, "db", "upgrade")
    assert rc == 0, err
    assert set(autoloader_metadata.tables) | set(state_metadata.tables) <= _tables(pg_url)
    rc, out, err = _cli(capsys, "db", "upgrade")
    assert rc == 0 and out.count("unchanged at") == 2, out


@pytest.mark.postgres
def test_shared_db_behind_head_is_refused_with_exit_2(workspace_env, pg_url_factory):
    auto, state = pg_url_factory("autoloader"), pg_url_factory("state")
    env = cutover_env(workspace_env, CUTOVER_DATABASE_AUTOLOADER_URL=auto, CUTOVER_DATABASE_STATE_URL=state)

    # empty shared DB: refused, and cutover did not migrate it by itself
    res = run_cli(["ingestion", "list"], env)
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "cutover db upgrade" in res.stderr
    assert "has no cutover schema" in res.stderr
    assert _tables(auto) == set() and _tables(state) == set()

    # at an older revision than head: refused the same way
    dbm.upgrade(auto, "autoloader")
    dbm.upgrade(state, "state")
    with dbm.get_engine(auto).begin() as conn:
        conn.execute(text(f"UPDATE {dbm.VERSION_TABLES['autoloader']} SET version_num = 'a0000'"))
    res = run_cli(["ingestion", "list"], env)
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "cutover db upgrade" in res.stderr
    assert f"is at revision a0000, this cutover needs {dbm.head_revision('autoloader')}" in res.stderr

    # after the upgrade the same command works (the fake old revision is reset first)
    with dbm.get_engine(auto).begin() as conn:
        conn.execute(text(f"UPDATE {dbm.VERSION_TABLES['autoloader']} SET version_num = :v"),
                     {"v": dbm.head_revision("autoloader")})
    res = run_cli(["db", "upgrade"], env)
    assert res.returncode == 0, res.stderr
    res = run_cli(["ingestion", "list"], env)
    assert res.returncode == 0, res.stderr
    assert "no ingestions yet" in res.stdout


def test_embedded_db_is_created_on_first_use(workspace_env, capsys):
    rc, out, err = _cli(capsys, "ingestion", "list")
    assert rc == 0, err
    for tree in TREES:
        url = f"sqlite:///{workspace_env / f'{tree}.db'}"
        assert dbm.current_revision(url, tree) == dbm.head_revision(tree)


# -- the throwaway cluster the PostgreSQL tests run on ---------------------------------------------


@pytest.mark.postgres
def test_pg_helper_reaps_a_cluster_left_by_a_killed_run(pg_cluster):
    """A run SIGKILLed with its cluster up leaves a running postmaster: the next start removes it."""
    import shutil
    import signal
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from tests import pg as pgmod
    from tests.helpers import ROOT

    script = ("import os, signal, sys; from tests.pg import PgCluster; "
              "pg = PgCluster(base_dir=sys.argv[1]).start(); print(pg.root, flush=True); "
              "os.kill(os.getpid(), signal.SIGKILL)")
    base = Path(tempfile.mkdtemp(prefix="pg-reap-"))  # under $TMPDIR: reachable by the postgres user
    try:
        base.chmod(0o755)
        res = subprocess.run([sys.executable, "-c", script, str(base)], cwd=ROOT, capture_output=True, text=True,
                             timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert res.returncode == -signal.SIGKILL, res.stderr
        left = base / res.stdout.strip().rsplit("/", 1)[1]
        pid = pgmod._postmaster_pid(left / "data")
        assert pid and pgmod._pid_alive(pid), "the killed run should have left its postmaster running"

        assert pgmod.reap_orphans(base) == [left]
        assert not left.exists() and not pgmod._pid_alive(pid)
    finally:
        for d in base.glob(pgmod.PREFIX + "*"):
            pgmod._kill_postmaster(d / "data")
        shutil.rmtree(base, ignore_errors=True)
    # the session's own cluster (a live owner) is never touched
    assert pg_cluster.root not in pgmod.reap_orphans(pg_cluster.root.parent)
    assert pg_cluster.root.exists() and isinstance(pg_cluster.databases(), list)
