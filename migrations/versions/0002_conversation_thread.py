"""Conversations remember their platform thread (Slack shows each one as a thread).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("conversations") as table:
        table.add_column(sa.Column("thread_ref", sa.String(128)))


def downgrade() -> None:
    with op.batch_alter_table("conversations") as table:
        table.drop_column("thread_ref")
