"""ingestions: values_spec, the `values:` block of a definition (key, tolerances, sensitive columns)

The values check of `cutover parity` (checks/values.py) matches rows by this key and
compares columns under these tolerances.

Revision ID: a0006
Revises: a0005
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "a0006"
down_revision = "a0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ingestions") as b:
        b.add_column(sa.Column("values_spec", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ingestions") as b:
        b.drop_column("values_spec")
