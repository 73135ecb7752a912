"""waivers: a removed waiver stays as a row (removed_at, removed_by), so its id is never reused

Revision ID: s0002
Revises: s0001
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "s0002"
down_revision = "s0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("waivers") as b:
        b.add_column(sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True))
        b.add_column(sa.Column("removed_by", sa.String(256), nullable=True))


def downgrade() -> None:
    # removed waivers go with the columns that say they were removed
    op.execute("DELETE FROM waivers WHERE removed_at IS NOT NULL")
    with op.batch_alter_table("waivers") as b:
        b.drop_column("removed_by")
        b.drop_column("removed_at")
