"""cutover state schema: states, shadow forks, plans, journal, locks, pause snapshots, parity, waivers, audit

Revision ID: s0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "s0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "cutover_states",
        sa.Column("ingestion_id", sa.String(128), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("updated_by", sa.String(256), nullable=True),
    )
    op.create_table(
        "shadow_forks",
        sa.Column("ingestion_id", sa.String(128), primary_key=True),
        sa.Column("table_name", sa.String(512), nullable=False),
        sa.Column("branch", sa.String(128), nullable=False),
        sa.Column("fork_snapshot_id", sa.BigInteger, nullable=True),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "plans",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("created_by", sa.String(256), nullable=True),
        sa.Column("fingerprint", sa.String(128), nullable=False),
        sa.Column("body", sa.JSON, nullable=False),
    )
    op.create_table(
        "journal",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("operation_id", sa.String(64), nullable=False),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("step", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", TZ, nullable=True),
        sa.Column("ended_at", TZ, nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
    )
    op.create_index("ix_journal_operation", "journal", ["operation_id", "seq"], unique=True)
    op.create_table(
        "locks",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(256), nullable=False),
        sa.Column("host", sa.String(256), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("acquired_at", TZ, nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
    )
    op.create_table(
        "pause_snapshots",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("created_by", sa.String(256), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("body", sa.JSON, nullable=False),
    )
    op.create_table(
        "parity_results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("parity_run_id", sa.String(64), nullable=False),
        sa.Column("ingestion_id", sa.String(128), nullable=False),
        sa.Column("run_at", TZ, nullable=False),
        sa.Column("verdict", sa.String(8), nullable=False),
        sa.Column("report", sa.JSON, nullable=False),
    )
    op.create_index("ix_parity_results_ingestion", "parity_results", ["ingestion_id", "run_at"])
    op.create_table(
        "waivers",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ingestion_id", sa.String(128), nullable=False),
        sa.Column("check_name", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("owner", sa.String(256), nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", TZ, nullable=False),
        sa.Column("who", sa.String(256), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.Text, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("detail", sa.JSON, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("waivers")
    op.drop_index("ix_parity_results_ingestion", table_name="parity_results")
    op.drop_table("parity_results")
    op.drop_table("pause_snapshots")
    op.drop_table("locks")
    op.drop_index("ix_journal_operation", table_name="journal")
    op.drop_table("journal")
    op.drop_table("plans")
    op.drop_table("shadow_forks")
    op.drop_table("cutover_states")
