"""The outbox's side of sending: leases that keep two dispatchers apart, deliveries, back-off, failure."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from records import outbox, paging
from records.models import OutboxItem, OutboxStatus
from tests.records.conftest import Sessions, Staff, audit_entries, open_case, pages

LEASE = timedelta(seconds=30)


@pytest.fixture
async def case_id(sessions: Sessions, staff: Staff, now: datetime) -> int:
    """An orange case (its own opening page is due at `now`)."""
    return (await open_case(sessions, "orange", now=now))[1]


async def _page(sessions: Sessions, case_id: int, counsellor_id: int, reason: str, at: datetime) -> int:
    async with sessions() as session:
        assert await paging.page(
            session, case_id=case_id, counsellor_id=counsellor_id, reason=reason, level="orange", at=at
        )
        await session.commit()
    [item] = [p for p in await pages(sessions, case_id) if p.payload["reason"] == reason]
    return item.id


async def _item(sessions: Sessions, item_id: int) -> OutboxItem:
    async with sessions() as session:
        return await session.get_one(OutboxItem, item_id)


async def _lease(sessions: Sessions, at: datetime, **kwargs: int) -> list[int]:
    async with sessions() as session:
        return [item.id for item in await outbox.lease(session, now=at, **kwargs)]


async def test_a_page_is_written_once_per_key(
    sessions: Sessions, staff: Staff, case_id: int, now: datetime
) -> None:
    async with sessions() as session:
        first = await paging.page(
            session, case_id=case_id, counsellor_id=staff.supervisor, reason="test", level="orange", at=now
        )
        again = await paging.page(
            session, case_id=case_id, counsellor_id=staff.supervisor, reason="test", level="orange", at=now
        )
        await session.commit()
    assert (first, again) == (True, False)
    assert len(await pages(sessions, case_id, reason="test")) == 1


async def test_lease_takes_the_due_pending_items_and_marks_them_sending(
    sessions: Sessions, staff: Staff, case_id: int, now: datetime
) -> None:
    [opening] = [p.id for p in await pages(sessions, case_id)]  # due at now
    earlier = await _page(sessions, case_id, staff.volunteers[3], "earlier", now - timedelta(minutes=5))
    later = await _page(sessions, case_id, staff.volunteers[4], "later", now + timedelta(minutes=1))
    sent = await _page(sessions, case_id, staff.supervisor, "sent", now - timedelta(minutes=5))
    async with sessions() as session:
        await outbox.mark_sent(session, {sent: ["console"]}, now=now - timedelta(minutes=4))

    assert await _lease(sessions, now) == [opening, earlier]  # oldest first
    for item_id in (opening, earlier):
        item = await _item(sessions, item_id)
        assert item.status == OutboxStatus.SENDING and item.lease_until == now + LEASE
    assert (await _item(sessions, later)).status == OutboxStatus.PENDING
    assert (await _item(sessions, sent)).status == OutboxStatus.SENT


async def test_lease_takes_at_most_its_limit_oldest_first(
    sessions: Sessions, staff: Staff, case_id: int, now: datetime
) -> None:
    ids = [p.id for p in await pages(sessions, case_id)]
    ids += [await _page(sessions, case_id, c, f"extra{c}", now) for c in staff.volunteers]
    assert await _lease(sessions, now, limit=2) == ids[:2]
    assert await _lease(sessions, now, limit=2) == ids[2:4]


async def test_a_second_lease_at_the_same_time_gets_none_of_them(
    sessions: Sessions, staff: Staff, case_id: int, now: datetime
) -> None:
    first = await _lease(sessions, now)
    assert len(first) == 1
    assert await _lease(sessions, now) == []
    assert await _lease(sessions, now + LEASE - timedelta(seconds=1)) == []


async def test_two_dispatchers_leasing_at_once_share_nothing(
    sessions: Sessions, staff: Staff, case_id: int, now: datetime
) -> None:
    for n in range(12):
        await _page(sessions, case_id, staff.volunteers[n % 5], f"burst{n}", now)
    every = {p.id for p in await pages(sessions, case_id)}

    results = await asyncio.gather(_lease(sessions, now), _lease(sessions, now), return_exceptions=True)
    assert [r for r in results if isinstance(r, BaseException)] == []
    one, two = results
    assert set(one).isdisjoint(two)  # type: ignore[arg-type]
    assert set(one) | set(two) == every  # type: ignore[arg-type]


async def test_an_expired_lease_is_taken_again(
    sessions: Sessions, staff: Staff, case_id: int, now: datetime
) -> None:
    [taken] = await _lease(sessions, now)
    retaken_at = now + LEASE + timedelta(seconds=1)
    assert await _lease(sessions, retaken_at) == [taken]
    assert (await _item(sessions, taken)).lease_until == retaken_at + LEASE


async def test_mark_sent_records_the_delivery(
    sessions: Sessions, staff: Staff, case_id: int, now: datetime
) -> None:
    [taken] = await _lease(sessions, now)
    async with sessions() as session:
        await outbox.mark_sent(session, {taken: ["console", "log"]}, now=now + timedelta(seconds=2))
    item = await _item(sessions, taken)
    assert item.status == OutboxStatus.SENT
    assert item.delivered_via == ["console", "log"]
    assert item.sent_at == now + timedelta(seconds=2)
    assert item.lease_until is None and item.attempts == 1
    assert await _lease(sessions, now + timedelta(hours=1)) == []


async def test_failed_attempts_back_off_then_fail_for_good_and_are_audited(
    sessions: Sessions, staff: Staff, case_id: int, now: datetime
) -> None:
    at = now
    delays = []
    for attempt in (1, 2):
        async with sessions() as session:
            [item] = await outbox.lease(session, now=at)
            status = await outbox.mark_failed_attempt(
                session, item, delivered_via=["console"], error="sms:TimeoutError", max_attempts=3, now=at
            )
        assert status == OutboxStatus.PENDING
        stored = await _item(sessions, item.id)
        assert stored.status == OutboxStatus.PENDING and stored.attempts == attempt
        assert stored.lease_until is None and stored.delivered_via == ["console"]
        assert stored.last_error == "sms:TimeoutError"
        delays.append(stored.available_at - at)
        assert await _lease(sessions, stored.available_at - timedelta(milliseconds=1)) == []  # not before
        at = stored.available_at
    assert delays == [timedelta(seconds=2), timedelta(seconds=4)]
    assert await audit_entries(sessions, "page_failed") == []

    async with sessions() as session:
        [item] = await outbox.lease(session, now=at)
        status = await outbox.mark_failed_attempt(
            session, item, delivered_via=["console"], error="sms:TimeoutError", max_attempts=3, now=at
        )
    assert status == OutboxStatus.FAILED
    stored = await _item(sessions, item.id)
    assert stored.status == OutboxStatus.FAILED and stored.attempts == 3
    assert await _lease(sessions, at + timedelta(days=1)) == []

    [entry] = await audit_entries(sessions, "page_failed")
    assert entry.actor == "dispatcher"
    assert entry.detail["outbox_id"] == item.id
    assert entry.detail["counsellor_id"] == item.counsellor_id
    assert entry.detail["attempts"] == 3 and entry.detail["error"] == "sms:TimeoutError"
