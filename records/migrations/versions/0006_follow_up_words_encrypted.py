"""follow-up words encrypted at rest: what a counsellor writes on a dated follow-up may name a child, a
school or a family, like a note, so it is kept as a note is (records/crypto.py)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 07:40:00

The words already stored are encrypted here, under the newest key of XINQIAO_ENCRYPTION_KEYS (needed
only when there are some). Downgrading decrypts them back into the plain column.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from records.crypto import decrypt, encrypt

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

FOLLOW_UP = sa.table("follow_up", sa.column("id", sa.Integer), sa.column("what", sa.Text))


def _rewrite(change) -> None:  # type: ignore[no-untyped-def]
    bind = op.get_bind()
    rows = bind.execute(sa.select(FOLLOW_UP.c.id, FOLLOW_UP.c.what).where(FOLLOW_UP.c.what.is_not(None)))
    for key, value in rows.all():
        bind.execute(sa.update(FOLLOW_UP).where(FOLLOW_UP.c.id == key).values(what=change(value)))


def upgrade() -> None:
    with op.batch_alter_table("follow_up", schema=None) as batch_op:
        batch_op.alter_column("what", existing_type=sa.String(length=200), type_=sa.Text())
    _rewrite(encrypt)


def downgrade() -> None:
    _rewrite(decrypt)
    with op.batch_alter_table("follow_up", schema=None) as batch_op:
        batch_op.alter_column("what", existing_type=sa.Text(), type_=sa.String(length=200))
