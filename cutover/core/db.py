"""Engines and alembic migrations for the two databases.

- ``autoloader``: the legacy side's DB (ingestions, runs, processed-file ledger,
  APScheduler job store), tree in ``cutover/core/records/migrations``.
- ``state``: cutover's own DB (states, plans, journal, locks, snapshots, parity),
  tree in ``cutover/core/state/migrations``.

Both trees keep their own version table, so they may share one PostgreSQL
database. SQLite engines run in WAL mode with a busy timeout, and writers that
must serialize (ledger claims) open ``BEGIN IMMEDIATE`` through
:func:`write_tx`.
"""

from __future__ import annotations

import contextlib
import io
import threading
from pathlib import Path
from typing import Iterator

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from cutover.core.errors import InputError, SchemaOutOfDate
from cutover.core.redact import redact_text, redact_url

TREES = {
    "autoloader": Path(__file__).resolve().parent / "records" / "migrations",
    "state": Path(__file__).resolve().parent / "state" / "migrations",
}
VERSION_TABLES = {"autoloader": "alembic_version_autoloader", "state": "alembic_version_cutover"}

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return Path(url[len("sqlite:///"):].split("?", 1)[0])
    return None


def make_engine(url: str) -> Engine:
    """A new engine for ``url`` (SQLite tuned for several processes)."""
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})
            _tune_sqlite(engine)
        else:
            engine = create_engine(url, pool_pre_ping=True)
    except (ArgumentError, NoSuchModuleError) as e:
        raise InputError(f"database URL {redact_url(url)} is not usable ({redact_text(str(e))})",
                         fix="use sqlite:///PATH or postgresql+psycopg://<user>:<password>@<host>:<port>/<db>") from None
    return engine


def get_engine(url: str) -> Engine:
    """A process-wide engine per URL."""
    with _engines_lock:
        eng = _engines.get(url)
        if eng is None:
            eng = _engines[url] = make_engine(url)
        return eng


def dispose_engines() -> None:
    with _engines_lock:
        for eng in _engines.values():
            eng.dispose()
        _engines.clear()


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # pragma: no cover - exercised by every test
        # Take transaction control away from pysqlite so that BEGIN is ours.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # pragma: no cover - exercised by every test
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


@contextlib.contextmanager
def write_tx(engine: Engine) -> Iterator:
    """A transaction that holds the write lock from its first statement.

    SQLite: ``BEGIN IMMEDIATE`` (one writer at a time, waits up to the busy
    timeout). PostgreSQL: an ordinary transaction; callers add
    ``FOR UPDATE SKIP LOCKED`` where rows are contended.
    """
    if engine.dialect.name == "sqlite":
        with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn:
            with conn.begin():
                yield conn
    else:
        with engine.begin() as conn:
            yield conn


# -- migrations -------------------------------------------------------------------------


def _alembic_config(tree: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(TREES[tree]))
    return cfg


def head_revision(tree: str) -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(tree)).get_current_head()


def current_revision(url: str, tree: str) -> str | None:
    """The revision the DB is at, or None for an empty DB. Never creates anything."""
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return None
    from alembic.migration import MigrationContext

    engine = get_engine(url)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table(VERSION_TABLES[tree]):
                return None
            ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLES[tree]})
            return ctx.get_current_revision()
    except OperationalError as e:
        raise InputError(f"cannot reach the {tree} DB at {redact_url(url)} ({redact_text(str(e.orig)).splitlines()[0]})",
                         fix="check the URL in cutover.toml / CUTOVER_DATABASE_* and that the server runs") from None


def upgrade(url: str, tree: str, revision: str = "head", *, sql: bool = False) -> str:
    """Upgrade ``tree`` on ``url``; with ``sql`` return the SQL instead of running it."""
    return _run(url, tree, "upgrade", revision, sql=sql)


def downgrade(url: str, tree: str, revision: str, *, sql: bool = False) -> str:
    return _run(url, tree, "downgrade", revision, sql=sql)


def _run(url: str, tree: str, direction: str, revision: str, *, sql: bool) -> str:
    from alembic import command
    from alembic.util.exc import CommandError

    cfg = _alembic_config(tree)
    if sql:
        buf = io.StringIO()
        cfg.output_buffer = buf
        cfg.attributes["url"] = url
        if direction == "downgrade" and ":" not in revision:
            revision = f"{current_revision(url, tree) or 'base'}:{revision}"
        try:
            getattr(command, direction)(cfg, revision, sql=True)
        except CommandError as e:
            raise InputError(f"alembic: {e}", fix="name a revision from `cutover db history`") from None
        return buf.getvalue()
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = get_engine(url)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            getattr(command, direction)(cfg, revision)
    except CommandError as e:
        raise InputError(f"alembic: {e}", fix="name a revision from `cutover db history`") from None
    except OperationalError as e:
        raise InputError(f"cannot migrate the {tree} DB at {redact_url(url)} ({redact_text(str(e.orig)).splitlines()[0]})",
                         fix="check the URL and that the server runs") from None
    return ""


def history(tree: str) -> list[tuple[str, str | None, str]]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config(tree))
    return [(s.revision, s.down_revision, (s.doc or "").strip()) for s in script.walk_revisions()]


def ensure_schema(settings, *, create_embedded: bool = True) -> None:
    """Refuse to work on a DB whose schema is not at head.

    The embedded SQLite databases under CUTOVER_HOME are created and migrated on
    first use, and upgraded when a newer cutover needs it (there is nobody else to
    run migrations for them). A shared
    database (any other URL) must be upgraded explicitly with
    ``cutover db upgrade``: a tool should not migrate a team's PostgreSQL
    behind its back.
    """
    for tree, url, embedded in (
        ("autoloader", settings.autoloader_url, settings.is_embedded_autoloader),
        ("state", settings.state_url, settings.is_embedded_state),
    ):
        _ensure_tree(tree, url, embedded and create_embedded)


_checked: set[tuple[str, str]] = set()


def _ensure_tree(tree: str, url: str, may_create: bool) -> None:
    if (tree, url) in _checked:
        return
    head = head_revision(tree)
    cur = current_revision(url, tree)
    if cur != head:
        if may_create:
            # the embedded SQLite DBs have nobody else to migrate them: create or upgrade
            if cur is not None:
                import sys

                print(f"upgrading the embedded {tree} DB from {cur} to {head}", file=sys.stderr)
            upgrade(url, tree)
        elif cur is None:
            raise SchemaOutOfDate(f"the {tree} DB at {redact_url(url)} has no cutover schema",
                                  fix="run `cutover db upgrade`")
        else:
            raise SchemaOutOfDate(f"the {tree} DB at {redact_url(url)} is at revision {cur}, this cutover needs {head}",
                                  fix="run `cutover db upgrade`")
    _checked.add((tree, url))


def reset_schema_cache() -> None:
    _checked.clear()
