"""When a conversation was rated: a rating waits for its optional comment for at most
[ratings] comment_wait seconds, counted from here, across restarts and on any daemon
(docs/ratings.md).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("conversations") as table:
        table.add_column(sa.Column("rated_at", sa.DateTime(timezone=True), nullable=True))
    # The waiting ratings are looked for every few seconds: an index of those alone.
    op.create_index("ix_conversations_awaiting_comment", "conversations", ["rated_at"],
                    postgresql_where=sa.text("prompt = 'comment'"),
                    sqlite_where=sa.text("prompt = 'comment'"))


def downgrade() -> None:
    op.drop_index("ix_conversations_awaiting_comment", table_name="conversations")
    with op.batch_alter_table("conversations") as table:
        table.drop_column("rated_at")
