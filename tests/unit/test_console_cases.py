"""The console's case API through the real app (sanic-testing's ASGI client) and the real store: the
queue, an audited read, who may open which case, taking over (the bot paused), writing to the child
(who reads it through the web chat's polling), handing back (the bot resumed), notes, closing."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from integrations.console.content import console_texts
from records import messages
from records.models import Author, Conversation, Message
from tests.unit.console_client import RED, Console, Sessions, console_for


@pytest.fixture
def console(database_url: str, sessions: Sessions) -> Console:
    return console_for(database_url, sessions, "cases")


async def test_the_queue_puts_red_first_and_shows_no_words(console: Console) -> None:
    _, case_id, lead, _ = await console.start()
    who = await console.sign_in(lead)
    response = await console.get("/console/api/queue", who)
    assert response.status == 200
    [entry] = response.json["cases"]
    assert (entry["id"], entry["level"], entry["assigned_to_me"]) == (case_id, "red", True)
    assert RED not in str(response.json)


async def test_a_volunteer_opens_only_cases_assigned_to_them_and_every_read_is_audited(
    console: Console,
) -> None:
    _, case_id, lead, other = await console.start()
    outsider = await console.sign_in(other)
    assert (await console.get(f"/console/api/cases/{case_id}", outsider)).status == 403
    assert (await console.post(f"/console/api/cases/{case_id}/claim", outsider)).status == 403
    response = await console.get(f"/console/api/cases/{case_id}", await console.sign_in(lead))
    assert response.status == 200
    assert [m["text"] for m in response.json["messages"] if m["author"] == "user"] == [RED]
    supervisor = await console.get(f"/console/api/cases/{case_id}", await console.sign_in("s1"))
    assert supervisor.status == 200
    assert set(supervisor.json["names"].values()) >= {lead}  # people by name (roster names are handles)
    reads = await console.audit("case_read")
    assert sorted(e.actor for e in reads) == sorted(
        [f"counsellor:{console.ids[lead]}", f"counsellor:{console.ids['s1']}"]
    )


async def test_a_takeover_pauses_the_bot_and_the_child_reads_the_counsellor(console: Console) -> None:
    conversation, case_id, lead, _ = await console.start()
    who = await console.sign_in(lead)
    claimed = await console.post(f"/console/api/cases/{case_id}/claim", who)
    assert claimed.status == 200 and claimed.json["held_by"] == console.ids[lead]
    assert conversation in console.engine.paused
    sent = await console.post(f"/console/api/cases/{case_id}/messages", who, {"text": "我在这里陪着你。"})
    assert sent.status == 201
    async with console.sessions() as session:
        later = await messages.outbound_after(session, conversation, sent.json["id"] - 1)
    assert [(m.author, m.text) for m in later] == [(Author.COUNSELLOR, "我在这里陪着你。")]


async def test_only_one_counsellor_holds_a_conversation(console: Console) -> None:
    _, case_id, lead, _ = await console.start()
    assert (
        await console.post(f"/console/api/cases/{case_id}/claim", await console.sign_in(lead))
    ).status == 200
    supervisor = await console.sign_in("s1")
    refused = await console.post(f"/console/api/cases/{case_id}/claim", supervisor)
    assert (refused.status, refused.json["error"]) == (409, "held_by_another")
    writes = await console.post(f"/console/api/cases/{case_id}/messages", supervisor, {"text": "你好"})
    assert (writes.status, writes.json["error"]) == (409, "not_holding")


async def test_handing_back_resumes_the_bot_with_the_closing_message(console: Console) -> None:
    conversation, case_id, lead, _ = await console.start()
    who = await console.sign_in(lead)
    await console.post(f"/console/api/cases/{case_id}/claim", who)
    released = await console.post(f"/console/api/cases/{case_id}/release", who)
    assert released.status == 200 and conversation not in console.engine.paused
    async with console.sessions() as session:
        last = await session.scalar(
            select(Message)
            .where(Message.conversation_id == conversation)
            .order_by(Message.id.desc())
            .limit(1)
        )
    assert (last.author, last.text) == (Author.SYSTEM, console_texts().hand_back)


async def test_notes_and_closing_with_an_outcome(console: Console) -> None:
    conversation, case_id, lead, _ = await console.start()
    who = await console.sign_in(lead)
    await console.post(f"/console/api/cases/{case_id}/claim", who)
    assert (await console.post(f"/console/api/cases/{case_id}/notes", who, {"body": "  "})).status == 400
    assert (
        await console.post(f"/console/api/cases/{case_id}/notes", who, {"body": "已联系班主任"})
    ).status == 201
    closed = await console.post(f"/console/api/cases/{case_id}/close", who, {"outcome": "referred_hospital"})
    assert closed.status == 200 and conversation not in console.engine.paused  # handed back on close
    read = await console.get(f"/console/api/cases/{case_id}", who)
    assert read.json["case"]["status"] == "closed" and read.json["case"]["outcome"] == "referred_hospital"
    assert [n["body"] for n in read.json["notes"]] == ["已联系班主任"]


async def test_a_case_closed_while_another_counsellor_holds_it_hands_the_child_back(console: Console) -> None:
    """Nobody is left talking to a closed case: a supervisor closing it ends the holder's hold (the
    child reads the hand-back), and another volunteer on the case may not close it under the holder."""
    conversation, case_id, lead, _ = await console.start()
    await console.post(f"/console/api/cases/{case_id}/claim", await console.sign_in(lead))
    second = (await console.staff_of(case_id))["second"]
    colleague = await console.sign_in(console.handle_of(second))
    refused = await console.post(f"/console/api/cases/{case_id}/close", colleague, {"outcome": "resolved"})
    assert (refused.status, refused.json["error"]) == (409, "held_by_another")
    closed = await console.post(
        f"/console/api/cases/{case_id}/close", await console.sign_in("s1"), {"outcome": "resolved"}
    )
    assert closed.status == 200 and conversation not in console.engine.paused
    async with console.sessions() as session:
        held = await session.scalar(select(Conversation.held_by).where(Conversation.id == conversation))
        last = await session.scalar(
            select(Message)
            .where(Message.conversation_id == conversation)
            .order_by(Message.id.desc())
            .limit(1)
        )
    assert held is None and (last.author, last.text) == (Author.SYSTEM, console_texts().hand_back)


async def test_writing_needs_the_csrf_token(console: Console) -> None:
    _, case_id, lead, _ = await console.start()
    who = await console.sign_in(lead)
    forged = {**who, "X-CSRF-Token": "forged"}
    assert (await console.post(f"/console/api/cases/{case_id}/claim", forged)).status == 403


async def test_quick_replies_come_from_the_content_file(console: Console) -> None:
    await console.start()
    response = await console.get("/console/api/quick-replies", await console.sign_in("v1"))
    assert response.json["quick_replies"] == list(console_texts().quick_replies)
