"""Support mode of the embedded adapters, in the database rather than in one process's
memory: a restart keeps it, and every daemon of a database knows it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "support_mode",
        sa.Column("platform", sa.String(32), primary_key=True),
        sa.Column("account", sa.String(128), primary_key=True),
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("support_mode")
