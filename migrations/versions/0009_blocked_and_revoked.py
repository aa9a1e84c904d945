"""Customers an operator blocked, and the file links of forgotten customers, which the
bridge no longer serves (docs/customers.md).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("customers") as table:
        table.add_column(sa.Column("blocked_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "revoked_files",
        sa.Column("path", sa.String(512), primary_key=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("revoked_files")
    with op.batch_alter_table("customers") as table:
        table.drop_column("blocked_at")
