"""Live handoff in the store and the switchboard: a counsellor takes a conversation over, the bot falls
silent, the child's messages go to the counsellor, a red message still gets the numbers at once, and
handing back lets the bot answer again with a closing message in between."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from integrations.content import gateway_texts
from integrations.inbound import InboundMessage
from integrations.paging.senders import ChatEvent
from integrations.switchboard import Switchboard
from records import handoff, messages, watchdog
from records.cases import CaseError, close
from records.models import Author, Case, CaseStatus, InboundStatus, Message, OutboxItem
from records.roster import put_on_call
from tests.unit.fakes import FakeEngine
from triage_protocols.directory import hotline_list

Sessions = async_sessionmaker[AsyncSession]
RED = "药已经准备好了，今晚我就吃下去"
CLOSING = "谢谢你和我聊，接下来由心桥助手陪你。"


class Line:
    """A staffed line with one red case waiting, and a switchboard that records what reaches counsellors."""

    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions
        self.engine = FakeEngine()
        self.events: list[ChatEvent] = []
        self.board = Switchboard(sessions, self.engine, on_message_for_counsellor=self.events.append)
        self.count = 0

    async def start(self) -> tuple[str, int, list[int]]:
        async with self.sessions() as session:
            people = await put_on_call(session, volunteers=["v1", "v2", "v3"], supervisors=["s1"])
            conversation = (await messages.create_conversation(session, "webchat")).id
        outcome = await self.say(conversation, RED)
        assert outcome.case_id is not None
        return conversation, outcome.case_id, [p.id for p in people]

    async def say(self, conversation: str, text: str):  # type: ignore[no-untyped-def]
        self.count += 1
        return await self.board.receive(InboundMessage("webchat", f"m{self.count}", conversation, text))


@pytest.fixture
def line(sessions: Sessions) -> Line:
    return Line(sessions)


async def test_taking_over_claims_the_case_and_holds_the_conversation(sessions: Sessions, line: Line) -> None:
    _conversation, case_id, (v1, v2, *_) = await line.start()
    async with sessions() as session:
        held = await handoff.take_over(session, case_id, v1)
    assert held.held_by == v1
    async with sessions() as session:
        case = await session.get_one(Case, case_id)
        assert (case.status, case.claimed_by, case.next_escalation_at) == (CaseStatus.CLAIMED, v1, None)
        with pytest.raises(CaseError, match="held_by_another"):
            await handoff.take_over(session, case_id, v2)
    async with sessions() as session:  # the holder again is fine (a second tab, a reconnect)
        assert (await handoff.take_over(session, case_id, v1)).held_by == v1


async def test_while_held_the_bot_is_silent_and_the_counsellor_gets_the_message(
    sessions: Sessions, line: Line
) -> None:
    conversation, case_id, (v1, *_) = await line.start()
    async with sessions() as session:
        await handoff.take_over(session, case_id, v1)
    calls_before = (len(line.engine.calls), len(line.engine.triggered))
    outcome = await line.say(conversation, "我还在，就是很难受")
    assert (len(line.engine.calls), len(line.engine.triggered)) == calls_before
    assert outcome.status == InboundStatus.TO_COUNSELLOR and outcome.replies == []
    assert [(e.conversation_id, e.message_id, e.counsellor_id) for e in line.events] == [
        (conversation, outcome.message_id, v1)
    ]


async def test_a_red_message_while_held_gets_the_numbers_at_once(sessions: Sessions, line: Line) -> None:
    conversation, case_id, (v1, *_) = await line.start()
    async with sessions() as session:
        await handoff.take_over(session, case_id, v1)
    outcome = await line.say(conversation, "我已经站在楼顶边上了，现在就跳")
    assert [r.text for r in outcome.replies] == [
        gateway_texts().with_counsellor_red.format(hotline_list=hotline_list())
    ]
    assert "110" in outcome.replies[0].text
    assert line.events[-1].level == "red" and line.events[-1].counsellor_id == v1


async def test_only_the_holder_writes_to_the_child_and_the_child_sees_it(
    sessions: Sessions, line: Line
) -> None:
    conversation, case_id, (v1, v2, *_) = await line.start()
    async with sessions() as session:
        await handoff.take_over(session, case_id, v1)
        with pytest.raises(CaseError, match="not_holding"):
            await handoff.counsellor_says(session, conversation, v2, "你好")
    async with sessions() as session:
        said = await handoff.counsellor_says(session, conversation, v1, "我是心理老师，我在这里陪你。")
        later = await messages.outbound_after(session, conversation, said.id - 1)
    assert [(m.author, m.text) for m in later] == [(Author.COUNSELLOR, "我是心理老师，我在这里陪你。")]


async def test_handing_back_lets_the_bot_answer_again_after_a_closing_message(
    sessions: Sessions, line: Line
) -> None:
    conversation, case_id, (v1, v2, *_) = await line.start()
    async with sessions() as session:
        await handoff.take_over(session, case_id, v1)
    async with sessions() as session:
        with pytest.raises(CaseError, match="not_holding"):
            await handoff.hand_back(session, conversation, v2, CLOSING)
    async with sessions() as session:
        closing = await handoff.hand_back(session, conversation, v1, CLOSING)
        assert (closing.author, closing.text) == (Author.SYSTEM, CLOSING)
        assert await handoff.holder_of(session, conversation) is None
    calls_before = len(line.engine.calls)
    outcome = await line.say(conversation, "谢谢老师")
    assert outcome.status == InboundStatus.ANSWERED and len(line.engine.calls) == calls_before + 1


async def test_a_closed_case_cannot_be_taken_over(sessions: Sessions, line: Line) -> None:
    _, case_id, (v1, *_) = await line.start()
    async with sessions() as session:
        await close(session, case_id, v1, "resolved")
    async with sessions() as session:
        with pytest.raises(CaseError, match="closed"):
            await handoff.take_over(session, case_id, v1)


async def test_a_message_waiting_for_a_retry_goes_to_the_counsellor_who_took_over(
    sessions: Sessions, line: Line
) -> None:
    conversation, case_id, (v1, *_) = await line.start()
    line.engine.down = True
    waiting = await line.say(conversation, "有人吗")
    assert waiting.status == InboundStatus.RETRY_PENDING
    async with sessions() as session:
        await handoff.take_over(session, case_id, v1)
    line.engine.down = False
    calls_before = len(line.engine.calls)
    await line.board.retry_pending()
    assert len(line.engine.calls) == calls_before
    async with sessions() as session:
        stored = await session.get_one(Message, waiting.message_id)
    assert stored.status == InboundStatus.TO_COUNSELLOR
    assert line.events[-1].message_id == waiting.message_id


async def test_a_held_conversation_left_unanswered_pages_the_holder_and_the_supervisor(
    sessions: Sessions, line: Line
) -> None:
    conversation, case_id, (v1, *_, supervisor) = await line.start()
    async with sessions() as session:
        await handoff.take_over(session, case_id, v1)
    waiting = await line.say(conversation, "老师你还在吗")
    red_deadline = timedelta(minutes=3)
    async with sessions() as session:
        written = (await session.get_one(Message, waiting.message_id)).created_at
        early = await watchdog.run_once(session, now=written + red_deadline - timedelta(seconds=5))
    assert early.unanswered_held == 0
    async with sessions() as session:
        late = await watchdog.run_once(session, now=written + red_deadline + timedelta(seconds=5))
        again = await watchdog.run_once(session, now=written + red_deadline + timedelta(seconds=10))
    assert (late.unanswered_held, again.unanswered_held) == (1, 0)  # once per unanswered message
    async with sessions() as session:
        pages = list(
            await session.scalars(
                select(OutboxItem).where(OutboxItem.payload["reason"].as_string() == "held_unanswered")
            )
        )
    assert sorted(p.counsellor_id for p in pages) == sorted([v1, supervisor])


async def test_an_answered_held_message_pages_nobody(sessions: Sessions, line: Line) -> None:
    conversation, case_id, (v1, *_) = await line.start()
    async with sessions() as session:
        await handoff.take_over(session, case_id, v1)
    waiting = await line.say(conversation, "老师你还在吗")
    async with sessions() as session:
        await handoff.counsellor_says(session, conversation, v1, "我在，我一直在。")
        written = (await session.get_one(Message, waiting.message_id)).created_at
        done = await watchdog.run_once(session, now=written + timedelta(hours=1))
    assert done.unanswered_held == 0
