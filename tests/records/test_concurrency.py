"""Escalations and claims racing each other: one case per conversation, one page per recipient, one winner.

Each racer has its own session from the factory and commits, as concurrent gateway requests and action
server calls do. Failures are collected, not retried: a racer that fails here would fail in production.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import datetime, timedelta

from records import cases, escalation
from records.escalation import Escalation, EscalationResult
from records.models import AssignmentRole, CaseStatus
from tests.records.conftest import (
    Sessions,
    assignments,
    audit_entries,
    cases_of,
    get_case,
    new_conversation,
    open_case,
    pages,
    seed_staff,
)

CONVERSATIONS = 50
ESCALATIONS = 200
ORANGE_ONLY = 10  # the first ten conversations never reach red


async def _escalate_alone(sessions: Sessions, request: Escalation, now: datetime) -> EscalationResult:
    async with sessions() as session:
        result = await escalation.escalate(session, request, now=now)
        await session.commit()
        return result


def _failures(results: list[object]) -> list[str]:
    return [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]


async def test_two_hundred_racing_escalations_make_one_staffed_case_and_one_page_each(
    sessions: Sessions, now: datetime
) -> None:
    staff = await seed_staff(sessions, now, volunteers=8)
    conversations = [await new_conversation(sessions) for _ in range(CONVERSATIONS)]
    chooser = random.Random(20261126)
    requests = []
    for i in range(ESCALATIONS):
        index = i % CONVERSATIONS
        level = "orange" if index < ORANGE_ONLY else chooser.choice(["orange", "red"])
        requests.append(Escalation(conversations[index], level, "screen", f"race:{i}"))
    chooser.shuffle(requests)

    results = await asyncio.gather(
        *(_escalate_alone(sessions, r, now) for r in requests), return_exceptions=True
    )
    assert _failures(results) == []

    found = await cases_of(sessions)
    assert len(found) == CONVERSATIONS
    assert {c.conversation_id for c in found} == set(conversations)
    assert {c.status for c in found} == {CaseStatus.OPEN}
    reached_red = {r.conversation_id for r in requests if r.level == "red"}
    for case in found:
        assert case.level == ("red" if case.conversation_id in reached_red else "orange")

    expected: set[tuple[int, str, str, int]] = set()
    for case in found:
        staffed = await assignments(sessions, case.id)
        assert set(staffed) == {AssignmentRole.LEAD, AssignmentRole.SECOND, AssignmentRole.THIRD}
        assert len(set(staffed.values())) == 3
        lead = staffed[AssignmentRole.LEAD]
        if case.level == "orange":
            expected.add((case.id, "case_opened", "orange", lead))
        elif case.raised_at is None:  # opened at red
            expected |= {
                (case.id, "case_opened", "red", lead),
                (case.id, "case_opened", "red", staff.supervisor),
            }
        else:  # opened at orange, raised to red
            expected |= {
                (case.id, "case_opened", "orange", lead),
                (case.id, "case_raised", "red", lead),
                (case.id, "case_raised", "red", staff.supervisor),
            }

    written = [
        (p.case_id, p.payload["reason"], p.payload["level"], p.counsellor_id) for p in await pages(sessions)
    ]
    assert [key for key, n in Counter(written).items() if n > 1] == []
    assert len(written) == len(expected)
    assert set(written) == expected

    opened = Counter(e.subject for e in await audit_entries(sessions, "case_opened"))
    assert opened == Counter(conversations)
    raised = {e.detail["case_id"] for e in await audit_entries(sessions, "case_raised")}
    assert raised == {c.id for c in found if c.raised_at is not None}
    assert sum(1 for r in results if isinstance(r, EscalationResult) and r.opened) == CONVERSATIONS


async def test_two_concurrent_claims_have_one_winner(sessions: Sessions, now: datetime) -> None:
    staff = await seed_staff(sessions, now)
    _, case_id = await open_case(sessions, "red", now=now)
    first, second = staff.volunteers[:2]

    async def claim(counsellor_id: int) -> bool:
        async with sessions() as session:
            return await cases.claim(session, case_id, counsellor_id, now=now + timedelta(minutes=1))

    results = await asyncio.gather(claim(first), claim(second), return_exceptions=True)
    assert _failures(list(results)) == []
    assert sorted(results) == [False, True]
    winner = first if results[0] else second
    case = await get_case(sessions, case_id)
    assert case.status == CaseStatus.CLAIMED and case.claimed_by == winner
    [entry] = await audit_entries(sessions, "case_claimed")
    assert entry.actor == f"counsellor:{winner}"


async def test_racing_escalations_of_a_conversation_the_store_never_saw_make_one_case(
    sessions: Sessions, now: datetime
) -> None:
    """The action server escalates a Rasa sender the gateway never stored (escalation.py creates the
    conversation); two of its escalations at once must still take turns like any other."""
    staff = await seed_staff(sessions, now)
    conversation_id = "unstoredsender00000000000000001"
    requests = [
        Escalation(conversation_id, level, "intent", f"race:{i}")
        for i, level in enumerate(["orange", "red"] * 4)
    ]

    results = await asyncio.gather(
        *(_escalate_alone(sessions, r, now) for r in requests), return_exceptions=True
    )
    assert _failures(list(results)) == []
    [case] = await cases_of(sessions, conversation_id)
    assert case.level == "red"
    supervisor_pages = [p for p in await pages(sessions, case.id) if p.counsellor_id == staff.supervisor]
    assert len(supervisor_pages) == 1
