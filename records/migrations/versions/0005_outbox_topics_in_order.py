"""outbox topics: the messages to one user go out one after another, in the order they were written

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 04:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox_item", schema=None) as batch_op:
        batch_op.add_column(sa.Column("topic", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_outbox_item_topic_id", ["topic", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox_item", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_item_topic_id")
        batch_op.drop_column("topic")
