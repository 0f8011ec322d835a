"""triage assessment on inbound messages

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 23:25:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("risk_level", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("assessment", sa.JSON(), nullable=True))
        batch_op.create_index(batch_op.f("ix_message_risk_level"), ["risk_level"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_message_risk_level"))
        batch_op.drop_column("assessment")
        batch_op.drop_column("risk_level")
