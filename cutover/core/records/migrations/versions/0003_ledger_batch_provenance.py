"""ledger: batch_id and data_files per source file (batch commits)

One Iceberg commit now holds a batch of files; each source file is its own data
file(s). The ledger records, before the commit, the batch id and the data file
paths, so crash recovery finds the batch in the table's current state.

Revision ID: a0003
Revises: a0002
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "a0003"
down_revision = "a0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("processed_files") as b:
        b.add_column(sa.Column("batch_id", sa.String(64), nullable=True))
        b.add_column(sa.Column("data_files", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("processed_files") as b:
        b.drop_column("data_files")
        b.drop_column("batch_id")
