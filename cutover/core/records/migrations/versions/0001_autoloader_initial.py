"""autoloader schema: ingestions, runs, processed-file ledger, APScheduler job store

Revision ID: a0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "a0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)
ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "ingestions",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("source_uri", sa.Text, nullable=False),
        sa.Column("pattern", sa.String(512), nullable=False, server_default="*"),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("table_name", sa.String(512), nullable=False),
        sa.Column("schedule", sa.JSON, nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"),
        sa.Column("size_class", sa.String(16), nullable=False, server_default="small"),
        sa.Column("priority", sa.String(16), nullable=False, server_default="normal"),
        sa.Column("key_columns", sa.JSON, nullable=False),
        sa.Column("owner", sa.String(256), nullable=True),
        sa.Column("options", sa.JSON, nullable=False),
        sa.Column("credentials", sa.JSON, nullable=True),
        sa.Column("batch_paused", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("prefect_deployment_id", sa.String(64), nullable=True),
        sa.Column("prefect_flow_id", sa.String(64), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("ingestion_id", sa.String(128), nullable=False),
        sa.Column("orchestrator", sa.String(16), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", TZ, nullable=False),
        sa.Column("ended_at", TZ, nullable=True),
        sa.Column("heartbeat_at", TZ, nullable=True),
        sa.Column("files_processed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("files_failed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("files_skipped", sa.Integer, nullable=False, server_default="0"),
        sa.Column("records_ingested", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("bytes_read", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("duration_s", sa.Float, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("external_id", sa.String(128), nullable=True),
        sa.Column("prefect_deployment_id", sa.String(64), nullable=True),
        sa.Column("host", sa.String(256), nullable=True),
        sa.Column("pid", sa.Integer, nullable=True),
    )
    op.create_index("ix_runs_ingestion_started", "runs", ["ingestion_id", "started_at"])
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_table(
        "processed_files",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("ingestion_id", sa.String(128), nullable=False),
        sa.Column("namespace", sa.String(16), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=True),
        sa.Column("etag", sa.String(256), nullable=True),
        sa.Column("mtime", sa.Float, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("records_ingested", sa.BigInteger, nullable=True),
        sa.Column("bytes_read", sa.BigInteger, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("snapshot_id", sa.BigInteger, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("claimed_at", TZ, nullable=True),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("processed_at", TZ, nullable=True),
        sa.UniqueConstraint("ingestion_id", "namespace", "path", name="uq_processed_files_key"),
    )
    op.create_index("ix_processed_files_status", "processed_files", ["ingestion_id", "namespace", "status"])
    op.create_index("ix_processed_files_claimed_by", "processed_files", ["claimed_by"])
    op.create_table(
        "apscheduler_jobs",
        sa.Column("id", sa.String(191), primary_key=True),
        sa.Column("next_run_time", sa.Float(25), nullable=True),
        sa.Column("job_state", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_apscheduler_jobs_next_run_time", "apscheduler_jobs", ["next_run_time"])


def downgrade() -> None:
    op.drop_index("ix_apscheduler_jobs_next_run_time", table_name="apscheduler_jobs")
    op.drop_table("apscheduler_jobs")
    op.drop_index("ix_processed_files_claimed_by", table_name="processed_files")
    op.drop_index("ix_processed_files_status", table_name="processed_files")
    op.drop_table("processed_files")
    op.drop_index("ix_runs_status", table_name="runs")
    op.drop_index("ix_runs_ingestion_started", table_name="runs")
    op.drop_table("runs")
    op.drop_table("ingestions")
