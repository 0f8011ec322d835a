"""A supervisor moves one role of a case to another counsellor: the claim and the live conversation go with
it (never back to the bot), the newcomer is paged once, the audit log gets ids and codes; closed cases,
unknown or inactive counsellors and people already on the case are refused, and nothing changes then."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from sqlalchemy import select, update

from records import cases, handoff, supervision
from records.cases import CaseError
from records.models import AuditEntry, Case, CaseStatus, Conversation, Counsellor, OutboxItem
from tests.records.conftest import (
    Sessions,
    Staff,
    add_counsellor,
    assignments,
    audit_entries,
    count,
    get_case,
    open_case,
    pages,
)


async def reassign(
    sessions: Sessions, case_id: int, actor: int, role: str, to: int
) -> supervision.Reassignment:
    async with sessions() as session:
        return await supervision.reassign(session, case_id, actor, role, to)


async def holder(sessions: Sessions, conversation_id: str) -> int | None:
    async with sessions() as session:
        return await handoff.holder_of(session, conversation_id)


@pytest.fixture
async def red(sessions: Sessions, staff: Staff, now: datetime) -> tuple[str, int]:
    """A red case staffed 三包一 by the first three volunteers on shift (lead, second, third)."""
    conversation_id, case_id = await open_case(sessions, "red", now=now)
    assert await assignments(sessions, case_id) == dict(
        zip(("lead", "second", "third"), staff.volunteers[:3])
    )
    return conversation_id, case_id


async def test_the_lead_who_talks_with_the_child_is_replaced_and_the_talk_goes_with_the_role(
    sessions: Sessions, staff: Staff, red: tuple[str, int]
) -> None:
    conversation_id, case_id = red
    lead, newcomer = staff.volunteers[0], staff.volunteers[3]
    async with sessions() as session:
        await handoff.take_over(session, case_id, lead)
    claimed_at = (await get_case(sessions, case_id)).claimed_at

    done = await reassign(sessions, case_id, staff.supervisor, "lead", newcomer)

    assert done == supervision.Reassignment(
        case_id=case_id,
        level="red",
        role="lead",
        from_counsellor_id=lead,
        to_counsellor_id=newcomer,
        moved_claim=True,
        moved_hold=True,
        paged=True,
    )
    assert (await assignments(sessions, case_id))["lead"] == newcomer
    case = await get_case(sessions, case_id)
    assert (case.status, case.claimed_by, case.claimed_at) == (CaseStatus.CLAIMED, newcomer, claimed_at)
    assert await holder(sessions, conversation_id) == newcomer  # never None: the bot was not given it back
    # the newcomer may now write to the child; the one who left may not
    async with sessions() as session:
        await handoff.counsellor_says(session, conversation_id, newcomer, "我是接手的老师，我在。")
    async with sessions() as session:
        with pytest.raises(CaseError, match="not_holding"):
            await handoff.counsellor_says(session, conversation_id, lead, "还在吗")


async def test_the_newcomer_is_paged_once_and_the_audit_holds_codes_and_ids_only(
    sessions: Sessions, staff: Staff, red: tuple[str, int]
) -> None:
    conversation_id, case_id = red
    newcomer = staff.volunteers[3]
    before = await count(sessions, OutboxItem)
    await reassign(sessions, case_id, staff.supervisor, "second", newcomer)

    sent = await pages(sessions, case_id, reason=supervision.REASON)
    assert [(p.counsellor_id, p.payload["as_role"], p.payload["level"]) for p in sent] == [
        (newcomer, "second", "red")
    ]
    assert await count(sessions, OutboxItem) == before + 1  # nobody else is paged
    [entry] = await audit_entries(sessions, supervision.REASON)
    assert (entry.actor, entry.subject) == (f"counsellor:{staff.supervisor}", conversation_id)
    assert entry.detail == {
        "case_id": case_id,
        "role": "second",
        "from_counsellor": staff.volunteers[1],
        "to_counsellor": newcomer,
        "moved_claim": False,
        "moved_hold": False,
        "paged": [newcomer],
    }


async def test_given_the_case_again_later_the_counsellor_is_paged_again(
    sessions: Sessions, staff: Staff, red: tuple[str, int]
) -> None:
    _, case_id = red
    first, other = staff.volunteers[3], staff.volunteers[4]
    await reassign(sessions, case_id, staff.supervisor, "third", first)
    await reassign(sessions, case_id, staff.supervisor, "third", other)
    await reassign(sessions, case_id, staff.supervisor, "third", first)
    assert [p.counsellor_id for p in await pages(sessions, case_id, reason=supervision.REASON)] == [
        first,
        other,
        first,
    ]


async def test_a_claim_moves_without_a_hold(sessions: Sessions, staff: Staff, red: tuple[str, int]) -> None:
    conversation_id, case_id = red
    lead, newcomer = staff.volunteers[0], staff.volunteers[3]
    async with sessions() as session:
        assert await cases.claim(session, case_id, lead)
    done = await reassign(sessions, case_id, staff.supervisor, "lead", newcomer)
    assert (done.moved_claim, done.moved_hold) == (True, False)
    assert (await get_case(sessions, case_id)).claimed_by == newcomer
    assert await holder(sessions, conversation_id) is None


async def test_someone_else_who_holds_the_conversation_keeps_it(
    sessions: Sessions, staff: Staff, red: tuple[str, int]
) -> None:
    conversation_id, case_id = red
    async with sessions() as session:  # the supervisor, on no role of the case, talks with the child
        await handoff.take_over(session, case_id, staff.supervisor)
    done = await reassign(sessions, case_id, staff.supervisor, "lead", staff.volunteers[3])
    assert (done.moved_claim, done.moved_hold) == (False, False)
    assert (await get_case(sessions, case_id)).claimed_by == staff.supervisor
    assert await holder(sessions, conversation_id) == staff.supervisor


async def test_an_empty_role_is_filled(sessions: Sessions, staff: Staff, now: datetime) -> None:
    _, case_id = await open_case(sessions, "yellow", now=now, origin="handoff")  # 二包一: lead and second
    assert set(await assignments(sessions, case_id)) == {"lead", "second"}
    done = await reassign(sessions, case_id, staff.supervisor, "third", staff.volunteers[4])
    assert (done.from_counsellor_id, done.moved_claim, done.moved_hold) == (None, False, False)
    assert (await assignments(sessions, case_id))["third"] == staff.volunteers[4]
    assert [p.counsellor_id for p in await pages(sessions, case_id, reason=supervision.REASON)] == [
        staff.volunteers[4]
    ]


async def _refused(sessions: Sessions, code: str, case_id: int, actor: int, role: str, to: int) -> None:
    staff_before = await assignments(sessions, case_id)
    outbox_before = await count(sessions, OutboxItem)
    async with sessions() as session:
        with pytest.raises(CaseError) as refused:
            await supervision.reassign(session, case_id, actor, role, to)
    assert str(refused.value) == code
    assert await assignments(sessions, case_id) == staff_before
    assert await count(sessions, OutboxItem) == outbox_before
    assert await count(sessions, AuditEntry, AuditEntry.action == supervision.REASON) == 0


async def test_refusals_change_nothing(sessions: Sessions, staff: Staff, red: tuple[str, int]) -> None:
    conversation_id, case_id = red
    v1, v2, _, v4, _ = staff.volunteers
    inactive = await add_counsellor(sessions, "left", active=False)
    async with sessions() as session:
        await handoff.take_over(session, case_id, v1)

    await _refused(sessions, "already_on_case", case_id, staff.supervisor, "lead", v2)  # v2 is the second
    await _refused(sessions, "already_in_role", case_id, staff.supervisor, "lead", v1)
    await _refused(sessions, "no_counsellor", case_id, staff.supervisor, "lead", inactive)
    await _refused(sessions, "no_counsellor", case_id, staff.supervisor, "lead", 999_999)
    await _refused(sessions, "no_case", 999_999, staff.supervisor, "lead", v4)
    await _refused(sessions, "bad_role", case_id, staff.supervisor, "fourth", v4)
    await _refused(sessions, "forbidden", case_id, v2, "lead", v4)  # a volunteer may not
    assert (await get_case(sessions, case_id)).claimed_by == v1
    assert await holder(sessions, conversation_id) == v1

    async with sessions() as session:
        await session.execute(
            update(Counsellor).where(Counsellor.id == staff.supervisor).values(active=False)
        )
        await session.commit()
    await _refused(sessions, "forbidden", case_id, staff.supervisor, "lead", v4)


async def test_a_closed_case_is_refused(sessions: Sessions, staff: Staff, red: tuple[str, int]) -> None:
    _, case_id = red
    async with sessions() as session:
        await cases.close(session, case_id, staff.volunteers[0], "resolved")
    await _refused(sessions, "closed", case_id, staff.supervisor, "lead", staff.volunteers[3])


async def test_the_session_is_usable_after_a_refusal(
    sessions: Sessions, staff: Staff, red: tuple[str, int]
) -> None:
    _, case_id = red
    async with sessions() as session:
        with pytest.raises(CaseError):
            await supervision.reassign(session, case_id, staff.supervisor, "lead", staff.volunteers[1])
        done = await supervision.reassign(session, case_id, staff.supervisor, "lead", staff.volunteers[3])
        assert done.to_counsellor_id == staff.volunteers[3]
        lead = await session.scalar(select(Case.claimed_by).where(Case.id == case_id))
    assert lead is None  # nobody had claimed it
    async with sessions() as session:
        assert await session.scalar(select(Conversation.held_by).where(Conversation.id == red[0])) is None


async def test_two_supervisors_at_once_cannot_put_one_counsellor_in_two_roles(
    sessions: Sessions, staff: Staff, red: tuple[str, int]
) -> None:
    _, case_id = red
    newcomer = staff.volunteers[3]

    async def attempt(role: str) -> str:
        try:
            await reassign(sessions, case_id, staff.supervisor, role, newcomer)
        except CaseError as refused:
            return str(refused)
        return "done"

    outcomes = sorted(await asyncio.gather(attempt("lead"), attempt("second")))
    assert outcomes[1] == "done" and outcomes[0] in ("already_on_case", "conflict")
    assert list((await assignments(sessions, case_id)).values()).count(newcomer) == 1
    assert len(await pages(sessions, case_id, reason=supervision.REASON)) == 1
