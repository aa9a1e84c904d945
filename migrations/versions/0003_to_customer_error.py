"""A message that could not be shown keeps the reason (status "rejected").

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("to_customer") as table:
        table.add_column(sa.Column("error", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("to_customer") as table:
        table.drop_column("error")
