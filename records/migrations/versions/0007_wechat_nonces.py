"""wechat nonces: a signed WeChat query string is good once, for one body, within its 300 s window

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 09:00:00

Only digests are kept: a keyed digest of (timestamp, nonce), unique, so that several gateways racing on
the same captured query string are decided by the database; and a keyed digest of what the signature
was seen carrying (body, sender), so that WeChat's own retries of the same delivery still pass. No
openid, text or nonce is stored in clear. A row is purged once its timestamp is past the window, when
the request would be refused as stale anyway (records/nonces.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wechat_nonce",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("nonce_digest", sa.String(length=64), nullable=False),
        sa.Column("body_digest", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wechat_nonce")),
        sa.UniqueConstraint("nonce_digest", name=op.f("uq_wechat_nonce_nonce_digest")),
    )
    with op.batch_alter_table("wechat_nonce", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_wechat_nonce_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("wechat_nonce", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_wechat_nonce_expires_at"))
    op.drop_table("wechat_nonce")
