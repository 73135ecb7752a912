"""Schema of the cutover state DB (managed by the alembic tree in cutover/core/state/migrations)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

# Per-ingestion cutover state machine (DESIGN §4): LEGACY SHADOW CUTOVER DONE ROLLED_BACK.
cutover_states = Table(
    "cutover_states",
    metadata,
    Column("ingestion_id", String(128), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(256), nullable=True),
)

# Shadow branch forks: where cutover-shadow was forked from main.
shadow_forks = Table(
    "shadow_forks",
    metadata,
    Column("ingestion_id", String(128), primary_key=True),
    Column("table_name", String(512), nullable=False),
    Column("branch", String(128), nullable=False),
    Column("fork_snapshot_id", BigInteger, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

plans = Table(
    "plans",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(256), nullable=True),
    Column("fingerprint", String(128), nullable=False),
    Column("body", JSON, nullable=False),
)

# One row per step of a mutating operation; a re-run resumes from it.
journal = Table(
    "journal",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("operation_id", String(64), nullable=False),
    Column("operation", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("step", Text, nullable=False),
    Column("status", String(16), nullable=False),  # PENDING RUNNING DONE FAILED REVERTED
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("detail", Text, nullable=True),
    Index("ix_journal_operation", "operation_id", "seq", unique=True),
)

locks = Table(
    "locks",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("id", String(64), nullable=False),
    Column("holder", String(256), nullable=False),
    Column("host", String(256), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("acquired_at", DateTime(timezone=True), nullable=False),
    Column("reason", Text, nullable=True),
)

pause_snapshots = Table(
    "pause_snapshots",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(256), nullable=True),
    Column("reason", Text, nullable=True),
    Column("status", String(16), nullable=False),  # ACTIVE RESUMED
    Column("body", JSON, nullable=False),
)

parity_results = Table(
    "parity_results",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("parity_run_id", String(64), nullable=False),
    Column("ingestion_id", String(128), nullable=False),
    Column("run_at", DateTime(timezone=True), nullable=False),
    Column("verdict", String(8), nullable=False),  # pass fail error
    Column("report", JSON, nullable=False),
    Index("ix_parity_results_ingestion", "ingestion_id", "run_at"),
)

waivers = Table(
    "waivers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ingestion_id", String(128), nullable=False),
    Column("check_name", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("owner", String(256), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # a removed waiver stays (its id is never handed out again); list() leaves it out
    Column("removed_at", DateTime(timezone=True), nullable=True),
    Column("removed_by", String(256), nullable=True),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("who", String(256), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", Text, nullable=True),
    Column("reason", Text, nullable=True),
    Column("detail", JSON, nullable=True),
)
