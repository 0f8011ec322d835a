"""The page dispatcher with the real store: every page reaches the console and the counsellor's channel,
once, and a failing channel is retried without sending again what already went out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from integrations.paging.dispatcher import PageDispatcher
from integrations.paging.senders import LogSender, Page
from records import paging
from records.db import create_engine, session_factory
from records.models import AuditEntry, Counsellor, OutboxItem, OutboxStatus, Shift, utcnow
from tests.records.conftest import around, escalate, new_conversation

Sessions = async_sessionmaker[AsyncSession]

ADDRESS = "+86 138 0013 8000"  # made up
TEXT = "我今晚就想结束这一切"  # what a child might write: it must never reach a page's log line


class Recorder:
    """A stand-in sender: keeps every page it took; raises for the first `fail` calls (or always)."""

    def __init__(self, name: str, *, fail: int = 0, always_fail: bool = False) -> None:
        self.name = name
        self.fail = fail
        self.always_fail = always_fail
        self.calls = 0
        self.pages: list[Page] = []

    async def send(self, page: Page) -> None:
        self.calls += 1
        if self.always_fail or self.calls <= self.fail:
            raise ConnectionError("test: gateway down")
        self.pages.append(page)

    @property
    def ids(self) -> list[int]:
        return [p.outbox_id for p in self.pages]


async def _counsellor(sessions: Sessions, handle: str, channel: str, now: datetime) -> int:
    """An on-shift volunteer reached through `channel` at ADDRESS."""
    async with sessions() as session:
        counsellor = Counsellor(
            handle=handle, display_name=f"测试{handle}", page_channel=channel, page_address=ADDRESS
        )
        session.add(counsellor)
        await session.flush()
        start, end = around(now)
        session.add(Shift(counsellor_id=counsellor.id, starts_at=start, ends_at=end))
        await session.commit()
        return counsellor.id


async def _orange_case(sessions: Sessions, now: datetime) -> tuple[str, int]:
    """An orange case with its one opening page (the only counsellor is its lead; there is no supervisor)."""
    conversation = await new_conversation(sessions)
    result = await escalate(sessions, conversation, "orange", now=now)
    assert result.case_id is not None and len(result.paged) == 1
    return conversation, result.case_id


async def _items(sessions: Sessions) -> list[OutboxItem]:
    async with sessions() as session:
        return list(await session.scalars(select(OutboxItem).order_by(OutboxItem.id)))


async def _make_due(sessions: Sessions) -> None:
    """Time passes: every back-off is over."""
    async with sessions() as session:
        await session.execute(update(OutboxItem).values(available_at=utcnow() - timedelta(seconds=1)))
        await session.commit()


@pytest.fixture
def now() -> datetime:
    return utcnow().replace(microsecond=0)


@pytest.fixture
async def sms_case(sessions: Sessions, now: datetime) -> tuple[str, int, int]:
    """(conversation, case, counsellor): one pending page for a counsellor paged by "sms"."""
    counsellor = await _counsellor(sessions, "vol_sms", "sms", now)
    conversation, case_id = await _orange_case(sessions, now)
    return conversation, case_id, counsellor


async def test_a_pending_page_goes_to_the_console_and_the_counsellors_channel(
    sessions: Sessions, sms_case: tuple[str, int, int]
) -> None:
    _, case_id, counsellor = sms_case
    console, sms = Recorder("console"), Recorder("sms")
    before = utcnow()
    assert await PageDispatcher(sessions, {"console": console, "sms": sms}).run_once() == 1

    [item] = await _items(sessions)
    assert console.ids == [item.id] and sms.ids == [item.id]
    page = sms.pages[0]
    assert (page.case_id, page.counsellor_id, page.level, page.reason) == (
        case_id,
        counsellor,
        "orange",
        "case_opened",
    )
    assert item.status == OutboxStatus.SENT
    assert item.delivered_via == ["console", "sms"]
    assert item.attempts == 1 and item.lease_until is None
    assert item.sent_at is not None and item.sent_at >= before - timedelta(seconds=1)


async def test_a_failing_channel_is_retried_later_without_sending_the_others_again(
    sessions: Sessions, sms_case: tuple[str, int, int]
) -> None:
    console, sms = Recorder("console"), Recorder("sms", fail=1)
    dispatcher = PageDispatcher(sessions, {"console": console, "sms": sms})
    before = utcnow()
    assert await dispatcher.run_once() == 1

    [item] = await _items(sessions)
    assert item.status == OutboxStatus.PENDING
    assert item.attempts == 1
    assert item.delivered_via == ["console"]
    assert item.last_error == "sms:ConnectionError"
    assert item.available_at > before  # backed off, not taken again at once
    assert len(console.pages) == 1 and sms.pages == []
    assert await dispatcher.run_once() == 0  # not due yet

    await _make_due(sessions)
    assert await dispatcher.run_once() == 1
    [item] = await _items(sessions)
    assert item.status == OutboxStatus.SENT
    assert item.delivered_via == ["console", "sms"]
    assert item.attempts == 2
    assert console.ids == [item.id]  # the console had it already
    assert sms.ids == [item.id] and sms.calls == 2


async def test_a_page_that_keeps_failing_is_failed_and_audited_for_its_case(
    sessions: Sessions, sms_case: tuple[str, int, int]
) -> None:
    conversation, case_id, counsellor = sms_case
    dispatcher = PageDispatcher(
        sessions, {"console": Recorder("console"), "sms": Recorder("sms", always_fail=True)}, max_attempts=3
    )
    for attempt in (1, 2):
        assert await dispatcher.run_once() == 1
        [item] = await _items(sessions)
        assert (item.status, item.attempts) == (OutboxStatus.PENDING, attempt)
        async with sessions() as session:
            assert (
                await session.scalars(select(AuditEntry).where(AuditEntry.action == "page_failed"))
            ).all() == []
        await _make_due(sessions)
    assert await dispatcher.run_once() == 1

    [item] = await _items(sessions)
    assert (item.status, item.attempts) == (OutboxStatus.FAILED, 3)
    async with sessions() as session:
        [entry] = (await session.scalars(select(AuditEntry).where(AuditEntry.action == "page_failed"))).all()
    assert entry.subject == conversation
    assert entry.detail["case_id"] == case_id
    assert entry.detail["outbox_id"] == item.id
    assert entry.detail["counsellor_id"] == counsellor
    assert entry.detail["error"] == "sms:ConnectionError"
    await _make_due(sessions)
    assert await dispatcher.run_once() == 0  # failed for good: a supervisor reads the audit log


async def test_a_channel_without_a_sender_is_recorded_and_not_retried(
    sessions: Sessions, now: datetime
) -> None:
    await _counsellor(sessions, "vol_pigeon", "pigeon", now)
    await _orange_case(sessions, now)
    console = Recorder("console")
    dispatcher = PageDispatcher(sessions, {"console": console, "sms": Recorder("sms")})
    assert await dispatcher.run_once() == 1

    [item] = await _items(sessions)
    assert console.ids == [item.id]
    assert item.status == OutboxStatus.SENT
    assert item.delivered_via == ["console", "pigeon:unconfigured"]
    assert item.last_error is None
    await _make_due(sessions)
    assert await dispatcher.run_once() == 0
    assert len(console.pages) == 1


@pytest.fixture
async def second_sessions(database_url: str) -> AsyncIterator[Sessions]:
    """Another gateway's connection to the same store."""
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


async def test_two_dispatchers_at_once_send_each_page_exactly_once(
    sessions: Sessions, second_sessions: Sessions, sms_case: tuple[str, int, int], now: datetime
) -> None:
    _, case_id, counsellor = sms_case
    async with sessions() as session:
        for n in range(11):
            assert await paging.page(
                session, case_id=case_id, counsellor_id=counsellor, reason=f"burst{n}", level="orange", at=now
            )
        await session.commit()
    every = [item.id for item in await _items(sessions)]
    assert len(every) == 12

    consoles = [Recorder("console"), Recorder("console")]
    smses = [Recorder("sms"), Recorder("sms")]
    dispatchers = [
        PageDispatcher(store, {"console": console, "sms": sms}, max_attempts=3)
        for store, console, sms in zip((sessions, second_sessions), consoles, smses, strict=True)
    ]
    for _ in range(3):  # a few rounds each, at the same time, until nothing is left
        await asyncio.gather(*(d.run_once() for d in dispatchers))

    assert sorted(consoles[0].ids + consoles[1].ids) == every
    assert sorted(smses[0].ids + smses[1].ids) == every
    items = await _items(sessions)
    assert {item.status for item in items} == {OutboxStatus.SENT}
    assert all(item.attempts == 1 and item.delivered_via == ["console", "sms"] for item in items)


async def test_the_sender_gets_the_decrypted_address_and_the_repr_hides_it(
    sessions: Sessions, sms_case: tuple[str, int, int]
) -> None:
    sms = Recorder("sms")
    await PageDispatcher(sessions, {"console": Recorder("console"), "sms": sms}).run_once()
    [page] = sms.pages
    assert page.address == ADDRESS
    assert ADDRESS not in repr(page) and "0013 8000" not in repr(page)
    assert str(page.outbox_id) in repr(page)
    async with sessions() as session:  # stored encrypted, not as written
        stored = await session.scalar(text("SELECT page_address FROM counsellor"))
    assert stored and ADDRESS not in stored


async def test_the_log_sender_writes_ids_and_codes_only(caplog: pytest.LogCaptureFixture) -> None:
    page = Page(
        outbox_id=41,
        counsellor_id=7,
        case_id=1234,
        level="red",
        reason="case_opened",
        payload={"case_id": 1234, "level": "red", "note": TEXT},
        address=ADDRESS,
    )
    with caplog.at_level(logging.DEBUG, logger="integrations.paging"):
        await LogSender().send(page)
    [record] = [r for r in caplog.records if r.name == "integrations.paging.senders"]
    line = record.getMessage()
    for expected in ("case=1234", "level=red", "reason=case_opened", "counsellor=7", "outbox=41"):
        assert expected in line
    assert ADDRESS not in line and "0013 8000" not in line
    assert TEXT not in line and "note" not in line


async def test_no_log_line_of_a_dispatch_shows_the_address(
    sessions: Sessions, now: datetime, caplog: pytest.LogCaptureFixture
) -> None:
    await _counsellor(sessions, "vol_log", "log", now)
    await _orange_case(sessions, now)
    with caplog.at_level(logging.DEBUG):
        await PageDispatcher(sessions, {"console": Recorder("console"), "log": LogSender()}).run_once()
    [item] = await _items(sessions)
    assert item.delivered_via == ["console", "log"]
    assert any("PAGE" in r.getMessage() for r in caplog.records)
    assert all(ADDRESS not in r.getMessage() for r in caplog.records)


async def test_run_forever_sends_at_once_when_woken_and_stops_when_cancelled(
    sessions: Sessions, sms_case: tuple[str, int, int], now: datetime
) -> None:
    _, case_id, counsellor = sms_case
    console = Recorder("console")
    # an hour between rounds: a page that goes out within the test's few seconds went because of wake()
    dispatcher = PageDispatcher(sessions, {"console": console, "sms": Recorder("sms")}, interval_seconds=3600)
    rounds: list[int] = []
    first_round = asyncio.Event()
    run_once = dispatcher.run_once

    async def counted() -> int:
        leased = await run_once()
        rounds.append(leased)
        first_round.set()
        return leased

    dispatcher.run_once = counted  # type: ignore[method-assign]
    task = asyncio.create_task(dispatcher.run_forever())
    try:
        await asyncio.wait_for(first_round.wait(), timeout=5)
        for _ in range(100):  # the opening page, then an empty round: the loop now sleeps for an hour
            if rounds[-1] == 0:
                break
            await asyncio.sleep(0.01)
        assert rounds == [1, 0] and len(console.pages) == 1

        async with sessions() as session:
            await paging.page(
                session, case_id=case_id, counsellor_id=counsellor, reason="later", level="orange", at=now
            )
            await session.commit()
        await asyncio.sleep(0.3)
        assert len(console.pages) == 1  # nobody asked: it waits for its interval

        dispatcher.wake()
        for _ in range(1000):
            if len(console.pages) == 2:
                break
            await asyncio.sleep(0.01)
        assert len(console.pages) == 2
        assert console.pages[1].reason == "later"
        for _ in range(200):  # the round records the delivery right after sending
            if (await _items(sessions))[1].status == OutboxStatus.SENT:
                break
            await asyncio.sleep(0.01)
        assert (await _items(sessions))[1].status == OutboxStatus.SENT
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=5)
    assert task.cancelled()
    assert rounds[-1] == 0 and len(console.pages) == 2  # nothing more after the page went out
