"""Customers spread over several daemons: an event one daemon stores for another names the
shard of its customer, and the daemon holding that shard handles it (bridge/shards.py).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows stored by a daemon of the version before were for the one working daemon: the
    # holder of shard 0 handles them.
    op.add_column("forwarded", sa.Column("shard", sa.Integer, nullable=False,
                                         server_default="0"))
    op.create_index("forwarded_shard", "forwarded", ["shard", "id"])


def downgrade() -> None:
    op.drop_index("forwarded_shard", "forwarded")
    with op.batch_alter_table("forwarded") as batch:  # SQLite rebuilds the table
        batch.drop_column("shard")
