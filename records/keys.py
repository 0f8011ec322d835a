"""Key rotation: re-encrypt every stored secret under the newest key, so an old key can be retired.

Run `python -m records rotate-keys` after putting a new key first in XINQIAO_ENCRYPTION_KEYS (old keys
after it); once it reports, the old keys can be removed. Values are read as raw tokens, rotated, and
written back in batches; nothing is decrypted into a log.
"""

from __future__ import annotations

from sqlalchemy import Column, Table, Text, select, type_coerce, update
from sqlalchemy.ext.asyncio import AsyncSession

from records.crypto import EncryptedText, rotate
from records.models import Base


def encrypted_columns() -> list[tuple[Table, Column]]:  # type: ignore[type-arg]
    return [
        (table, column)
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if isinstance(column.type, EncryptedText)
    ]


async def rotate_all(session: AsyncSession, batch: int = 500) -> dict[str, int]:
    """Rotates every encrypted value; returns how many per table.column. Commits per batch."""
    counts: dict[str, int] = {}
    for table, column in encrypted_columns():
        primary = next(iter(table.primary_key.columns))
        raw = type_coerce(column, Text)
        last = None
        done = 0
        while True:
            query = select(primary, raw).where(column.is_not(None)).order_by(primary).limit(batch)
            if last is not None:
                query = query.where(primary > last)
            rows = (await session.execute(query)).all()
            if not rows:
                break
            for key, token in rows:
                await session.execute(
                    update(table)
                    .where(primary == key)
                    .values({column.name: type_coerce(rotate(token), Text)})
                )
            await session.commit()
            done += len(rows)
            last = rows[-1][0]
        counts[f"{table.name}.{column.name}"] = done
    return counts
