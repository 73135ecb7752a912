"""ledger: covering index (ingestion, path, namespace, status, records, processed_at) for parity

Parity groups both namespaces of an ingestion by path in one ordered scan of
this index, instead of joining ten million rows.

Revision ID: a0002
Revises: a0001
Create Date: 2026-11-22
"""

from alembic import op

revision = "a0002"
down_revision = "a0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_processed_files_parity", "processed_files",
                    ["ingestion_id", "path", "namespace", "status", "records_ingested", "processed_at"])


def downgrade() -> None:
    op.drop_index("ix_processed_files_parity", table_name="processed_files")
