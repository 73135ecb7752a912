"""ingestions: deploy (work pool, image, env, resources, code delivery of the Prefect deployment)

Revision ID: a0007
Revises: a0006
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "a0007"
down_revision = "a0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ingestions") as b:
        b.add_column(sa.Column("deploy", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ingestions") as b:
        b.drop_column("deploy")
