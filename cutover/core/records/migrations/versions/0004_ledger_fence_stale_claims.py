"""ledger: fencing token per claim, and a partial index on claims in flight

``fence`` is bumped every time a claim is taken over (a run declared dead loses
the file to another run). A batch commit re-reads the tokens of its claims in
its commit path, so a run frozen past its claim timeout cannot append after its
claim changed hands (see cutover.core.records.ledger).

``ix_processed_files_processing``: only the PROCESSING rows (a handful among
millions), by claim age, so the parity ledger check finds stale claims without
scanning the ledger.

Revision ID: a0004
Revises: a0003
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "a0004"
down_revision = "a0003"
branch_labels = None
depends_on = None

_PROCESSING = sa.text("status = 'PROCESSING'")


def upgrade() -> None:
    with op.batch_alter_table("processed_files") as b:
        b.add_column(sa.Column("fence", sa.BigInteger, nullable=False, server_default="0"))
    op.create_index("ix_processed_files_processing", "processed_files", ["ingestion_id", "namespace", "claimed_at"],
                    postgresql_where=_PROCESSING, sqlite_where=_PROCESSING)


def downgrade() -> None:
    op.drop_index("ix_processed_files_processing", table_name="processed_files")
    with op.batch_alter_table("processed_files") as b:
        b.drop_column("fence")
