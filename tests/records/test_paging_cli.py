"""Where a counsellor's pages go, set from the command line: the address is encrypted at rest, the change
is audited without it, and the dispatcher then pages on that channel."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

import records.__main__ as records_cli
from records.db import with_session
from records.models import AuditEntry, Counsellor

PHONE = "+8613800138000"


def _counsellor(database_url: str, handle: str) -> Counsellor:
    async def find(session: AsyncSession) -> Counsellor:
        return await session.scalar(select(Counsellor).where(Counsellor.handle == handle))  # type: ignore[return-value]

    return asyncio.run(with_session(database_url, find))


def test_paging_is_set_when_adding_and_changed_later(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XINQIAO_DATABASE_URL", database_url)
    argv = ["add-counsellor", "li", "--name", "李老师", "--page-channel", "sms", "--page-address", PHONE]
    assert records_cli.main(argv) == 0
    added = _counsellor(database_url, "li")
    assert (added.page_channel, added.page_address) == ("sms", PHONE)

    assert records_cli.main(["set-paging", "li", "--channel", "telegram", "--address", "123456789"]) == 0
    changed = _counsellor(database_url, "li")
    assert (changed.page_channel, changed.page_address) == ("telegram", "123456789")

    async def stored(session: AsyncSession) -> tuple[str, list[AuditEntry]]:
        raw = (await session.execute(text("SELECT page_address FROM counsellor"))).scalar_one()
        return raw, list(await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))

    raw, audit = asyncio.run(with_session(database_url, stored))
    assert "123456789" not in raw  # encrypted at rest
    assert [e.action for e in audit] == ["counsellor_added", "paging_changed"]
    logged = json.dumps([e.detail for e in audit]) + capsys.readouterr().out
    assert PHONE not in logged and "123456789" not in logged
