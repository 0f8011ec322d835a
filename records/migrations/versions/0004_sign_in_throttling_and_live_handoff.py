"""sign-in throttling for the console, and which counsellor holds a conversation (live handoff)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 02:31:47.868580
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("held_by", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("held_since", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_conversation_held_by_counsellor"), "counsellor", ["held_by"], ["id"]
        )

    with op.batch_alter_table("counsellor", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("failed_logins", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch_op.add_column(sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("counsellor", schema=None) as batch_op:
        batch_op.drop_column("last_login_at")
        batch_op.drop_column("locked_until")
        batch_op.drop_column("failed_logins")

    with op.batch_alter_table("conversation", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_conversation_held_by_counsellor"), type_="foreignkey")
        batch_op.drop_column("held_since")
        batch_op.drop_column("held_by")
