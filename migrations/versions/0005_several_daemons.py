"""What several daemons share: the inbound events a standing-by daemon received, kept
until the working daemon has handled them, and each conversation's latest voice call,
which the call page on any daemon reads (docs/postgresql.md, "Several daemons").

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "forwarded",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("event", sa.JSON, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.add_column("conversations", sa.Column("call_key", sa.String(16), nullable=True))
    op.add_column("conversations", sa.Column("call_state", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch:  # SQLite rebuilds the table
        batch.drop_column("call_state")
        batch.drop_column("call_key")
    op.drop_table("forwarded")
