"""Schema of the autoloader DB (managed by the alembic tree in cutover/core/records/migrations).

Plain SQLAlchemy Core: the ledger's hot paths (claims with SKIP LOCKED,
conditional updates) are clearer as statements than as ORM sessions.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()

ingestions = Table(
    "ingestions",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("source_uri", Text, nullable=False),
    Column("pattern", String(512), nullable=False, server_default="*"),
    Column("format", String(16), nullable=False),
    Column("table_name", String(512), nullable=False),
    Column("schedule", JSON, nullable=True),  # legacy form, see cutover.core.schedule.triggers
    Column("timezone", String(64), nullable=False, server_default="UTC"),
    Column("size_class", String(16), nullable=False, server_default="small"),
    Column("priority", String(16), nullable=False, server_default="normal"),
    Column("key_columns", JSON, nullable=False),
    Column("owner", String(256), nullable=True),
    Column("options", JSON, nullable=False),  # reader options (csv delimiter, ...)
    Column("credentials", JSON, nullable=True),  # fsspec storage options; never printed
    Column("values_spec", JSON, nullable=True),  # the `values:` block (core/records/valuespec.py)
    Column("batch_paused", Boolean, nullable=False, server_default="0"),
    Column("prefect_deployment_id", String(64), nullable=True),
    Column("prefect_flow_id", String(64), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("deploy", JSON, nullable=True),  # cutover.core.deployspec: pool, image, env, resources, pull
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("ingestion_id", String(128), nullable=False),
    Column("orchestrator", String(16), nullable=False),  # legacy | prefect
    Column("mode", String(16), nullable=False),  # live | shadow
    Column("trigger", String(16), nullable=False),  # scheduled | manual | backfill
    Column("status", String(16), nullable=False),  # RUNNING SUCCESS PARTIAL FAILED CRASHED
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("heartbeat_at", DateTime(timezone=True), nullable=True),
    Column("files_processed", Integer, nullable=False, server_default="0"),
    Column("files_failed", Integer, nullable=False, server_default="0"),
    Column("files_skipped", Integer, nullable=False, server_default="0"),
    Column("records_ingested", BigInteger, nullable=False, server_default="0"),
    Column("bytes_read", BigInteger, nullable=False, server_default="0"),
    Column("duration_s", Float, nullable=True),
    Column("error", Text, nullable=True),
    Column("external_id", String(128), nullable=True),  # APScheduler job id / Prefect flow-run id
    Column("prefect_deployment_id", String(64), nullable=True),
    Column("host", String(256), nullable=True),
    Column("pid", Integer, nullable=True),
    Index("ix_runs_ingestion_started", "ingestion_id", "started_at"),
    Index("ix_runs_status", "status"),
)

processed_files = Table(
    "processed_files",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("ingestion_id", String(128), nullable=False),
    Column("namespace", String(16), nullable=False),  # live | shadow
    Column("path", Text, nullable=False),
    Column("size", BigInteger, nullable=True),
    Column("etag", String(256), nullable=True),
    Column("mtime", Float, nullable=True),
    Column("status", String(16), nullable=False),  # PROCESSING SUCCESS FAILED SKIPPED
    Column("run_id", String(64), nullable=True),
    Column("records_ingested", BigInteger, nullable=True),
    Column("bytes_read", BigInteger, nullable=True),
    Column("error", Text, nullable=True),
    Column("snapshot_id", BigInteger, nullable=True),
    # The Iceberg commit that holds the file: written BEFORE the commit (the intent), so a
    # run taking over a dead run's claim can look the batch up in the table's current state.
    Column("batch_id", String(64), nullable=True),
    Column("data_files", JSON, nullable=True),  # Iceberg data file paths holding this file's rows
    Column("attempts", Integer, nullable=False, server_default="0"),
    # fencing token: bumped at every takeover; a batch commit re-checks it (migration a0004)
    Column("fence", BigInteger, nullable=False, server_default="0"),
    Column("claimed_at", DateTime(timezone=True), nullable=True),
    Column("claimed_by", String(64), nullable=True),
    Column("processed_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("ingestion_id", "namespace", "path", name="uq_processed_files_key"),
    Index("ix_processed_files_status", "ingestion_id", "namespace", "status"),
    Index("ix_processed_files_claimed_by", "claimed_by"),
    Index("ix_processed_files_parity", "ingestion_id", "path", "namespace", "status", "records_ingested", "processed_at"),
    # claims in flight only (partial), by age: stale claims without a ledger scan
    Index("ix_processed_files_processing", "ingestion_id", "namespace", "claimed_at",
          postgresql_where=text("status = 'PROCESSING'"), sqlite_where=text("status = 'PROCESSING'")),
)

# APScheduler 3's SQLAlchemyJobStore table, created here so that alembic owns
# every schema; the job store's own create_all() then finds it in place.
apscheduler_jobs = Table(
    "apscheduler_jobs",
    metadata,
    Column("id", String(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)

# Generic jobs (issue #15): a team's callables and commands, beside the ingestions (ids shared).
# Kind-specific fields live in ``spec`` (cutover.core.records.jobs), so a field added there needs
# no migration.
jobs = Table(
    "jobs",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("kind", String(16), nullable=False),  # callable | command
    Column("name", String(256), nullable=False),
    Column("target", Text, nullable=True),  # callable: pkg.module:function
    Column("schedule", JSON, nullable=True),  # same forms as an ingestion's
    Column("timezone", String(64), nullable=False, server_default="UTC"),
    Column("spec", JSON, nullable=False),  # args/kwargs/code_location | argv/shell/cwd/env/ok_exit_codes
    Column("timeout_s", Float, nullable=True),
    Column("retries", Integer, nullable=False, server_default="0"),
    Column("shadow", String(16), nullable=True),  # observe | env | sdk | NULL (undeclared)
    Column("owner", String(256), nullable=True),
    Column("paused", Boolean, nullable=False, server_default="0"),  # paused in the legacy orchestrator
    Column("legacy", JSON, nullable=False),  # provenance, legacy-only settings
    Column("prefect_deployment_id", String(64), nullable=True),
    Column("prefect_flow_id", String(64), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# What a job run left beside its run record (runs.id): exit code, signal, the output's tail.
job_run_output = Table(
    "job_run_output",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("job_id", String(128), nullable=False),
    Column("exit_code", Integer, nullable=True),
    Column("signal", Integer, nullable=True),
    Column("output_tail", Text, nullable=True),  # secrets redacted
    Column("command", Text, nullable=True),  # redacted
    Index("ix_job_run_output_job", "job_id"),
)
