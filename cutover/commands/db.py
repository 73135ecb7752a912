"""db upgrade|downgrade|current|history: the two alembic trees (autoloader, state)."""

from __future__ import annotations

from dataclasses import dataclass, field

from cutover.commands.result import Result
from cutover.core import db as dbm
from cutover.core.config import Settings
from cutover.core.redact import redact_url

DB_TREES = ("autoloader", "state")


def db_targets(settings: Settings, which: str) -> list[tuple[str, str]]:
    """[(tree, url)] of ``which``: all | autoloader | state."""
    out = []
    if which in ("all", "autoloader"):
        out.append(("autoloader", settings.autoloader_url))
    if which in ("all", "state"):
        out.append(("state", settings.state_url))
    return out


@dataclass
class DbChange(Result):
    db: str
    url: str  # redacted
    before: str | None
    after: str | None  # the target revision of a dry run
    sql: str | None = None  # a dry run's SQL (None when there is nothing to do)


@dataclass
class DbMigration(Result):
    dry_run: bool
    changes: list[DbChange] = field(default_factory=list)


def db_upgrade(settings: Settings, *, which: str = "all", revision: str = "head", dry_run: bool = False) -> DbMigration:
    """Bring the schemas to ``revision`` (default head). Idempotent. A dry run returns the SQL."""
    res = DbMigration(dry_run)
    for tree, url in db_targets(settings, which):
        before = dbm.current_revision(url, tree)
        if dry_run:
            target = dbm.head_revision(tree) if revision == "head" else revision
            sql = None if before == target else dbm.upgrade(url, tree, revision, sql=True)
            res.changes.append(DbChange(tree, redact_url(url), before, target, sql))
            continue
        dbm.upgrade(url, tree, revision)
        res.changes.append(DbChange(tree, redact_url(url), before, dbm.current_revision(url, tree)))
    return res


def db_downgrade(settings: Settings, revision: str, *, which: str, dry_run: bool = False) -> DbChange:
    """Downgrade one DB to ``revision`` ('base' drops every table). A dry run returns the SQL."""
    [(tree, url)] = db_targets(settings, which)
    if dry_run:
        return DbChange(tree, redact_url(url), None, revision, dbm.downgrade(url, tree, revision, sql=True))
    before = dbm.current_revision(url, tree)
    dbm.downgrade(url, tree, revision)
    return DbChange(tree, redact_url(url), before, dbm.current_revision(url, tree))


@dataclass
class DbRevision(Result):
    db: str
    url: str
    current: str
    head: str


@dataclass
class DbCurrent(Result):
    dbs: list[DbRevision]

    def as_dict(self) -> list[dict]:
        return [d.as_dict() for d in self.dbs]


def db_current(settings: Settings) -> DbCurrent:
    """The revision each DB is at, and the head this cutover needs."""
    return DbCurrent([DbRevision(tree, redact_url(url), dbm.current_revision(url, tree) or "empty",
                                 dbm.head_revision(tree)) for tree, url in db_targets(settings, "all")])


@dataclass
class DbMigrationInfo(Result):
    db: str
    revision: str
    down: str | None
    description: str


@dataclass
class DbHistory(Result):
    migrations: list[DbMigrationInfo]

    def as_dict(self) -> list[dict]:
        return [m.as_dict() for m in self.migrations]


def db_history() -> DbHistory:
    """Every migration of both trees."""
    return DbHistory([DbMigrationInfo(tree, rev, down, doc.splitlines()[0] if doc else "")
                      for tree in DB_TREES for rev, down, doc in dbm.history(tree)])
