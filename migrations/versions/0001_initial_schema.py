"""Customers, conversations and the two durable queues.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("account", sa.String(128), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("chat_id", sa.String(128), nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False, unique=True),
        sa.Column("language", sa.String(16)),
        sa.Column("active_conversation_id", sa.Integer),
        sa.Column("unreachable", sa.Boolean, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.UniqueConstraint("platform", "account", "user_id"),
    )
    op.create_table(
        "conversations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("ticket_chat_id", sa.String(128), unique=True),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("handler", sa.String(16), nullable=False),
        sa.Column("agent_name", sa.String(128)),
        sa.Column("prompt", sa.String(16)),
        sa.Column("prompt_ref", sa.String(128)),
        sa.Column("rating", sa.Integer),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("closed_at", TZ),
    )
    op.create_index("ix_conversations_customer_id", "conversations", ["customer_id"])
    for table in ("to_helpdesk", "to_customer"):
        columns = [
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=False),
            sa.Column("conversation_id", sa.Integer, sa.ForeignKey("conversations.id")),
            sa.Column("body", sa.JSON, nullable=False),
            sa.Column("dedupe_key", sa.String(255), unique=True),
            sa.Column("status", sa.String(12), nullable=False),
            sa.Column("attempts", sa.Integer, nullable=False),
            sa.Column("created_at", TZ, nullable=False),
        ]
        if table == "to_helpdesk":
            columns += [sa.Column("kind", sa.String(24), nullable=False),
                        sa.Column("error", sa.Text), sa.Column("done_at", TZ)]
        else:
            columns += [sa.Column("platform_ref", sa.String(128)),
                        sa.Column("delivered_at", TZ)]
        op.create_table(table, *columns)
        op.create_index(f"ix_{table}_customer_id", table, ["customer_id"])
        op.create_index(f"ix_{table}_status", table, ["status"])


def downgrade() -> None:
    for table in ("to_customer", "to_helpdesk", "conversations", "customers"):
        op.drop_table(table)
