"""generic jobs: callables and commands beside the ingestions, and their runs' output

Issue #15: a team's own jobs (APScheduler callables, crontab commands, RQ functions) in the
inventory. Kind-specific fields are one JSON ``spec`` column. ``job_run_output`` holds what a
run record has no column for (exit code, signal, the output tail, redacted).

Revision ID: a0005
Revises: a0004
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "a0005"
down_revision = "a0004"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("target", sa.Text, nullable=True),
        sa.Column("schedule", sa.JSON, nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("timeout_s", sa.Float, nullable=True),
        sa.Column("retries", sa.Integer, nullable=False, server_default="0"),
        sa.Column("shadow", sa.String(16), nullable=True),
        sa.Column("owner", sa.String(256), nullable=True),
        sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("legacy", sa.JSON, nullable=False),
        sa.Column("prefect_deployment_id", sa.String(64), nullable=True),
        sa.Column("prefect_flow_id", sa.String(64), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "job_run_output",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("job_id", sa.String(128), nullable=False),
        sa.Column("exit_code", sa.Integer, nullable=True),
        sa.Column("signal", sa.Integer, nullable=True),
        sa.Column("output_tail", sa.Text, nullable=True),
        sa.Column("command", sa.Text, nullable=True),
    )
    op.create_index("ix_job_run_output_job", "job_run_output", ["job_id"])


def downgrade() -> None:
    op.drop_index("ix_job_run_output_job", table_name="job_run_output")
    op.drop_table("job_run_output")
    op.drop_table("jobs")
