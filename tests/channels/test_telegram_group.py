"""The counsellors' Telegram group (XINQIAO_TELEGRAM_COUNSELLOR_GROUP) through the real app, the real store
and python-telegram-bot, with the Bot API played by the loopback stand-in (tests/channels/standin.py).

A red message from a child's private chat opens a case; the group's dispatcher round (run by the test:
its background loop is slowed to an hour) posts it with a claim button; a press in the group is posted to
the webhook like any update and is handled before the request ends. What the bot sent, answered or edited
is read back from the stand-in; what changed, from the store."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from telegram import CallbackQuery, Chat, Message, Update, User

from integrations.channels import telegram
from integrations.channels.telegram import SECRET_HEADER, WEBHOOK_PATH, TelegramSettings, telegram_plugin
from integrations.channels.telegram_group import CounsellorGroup
from records import group_pages, watchdog
from records.group_pages import GROUP_PAGE
from records.models import Case, Conversation, Counsellor, OutboxItem, utcnow
from records.models import Message as StoredMessage
from tests.channels import telegram_payloads as tg
from tests.channels.line import Line, Sessions, line_for
from tests.channels.standin import Recorded, StandIn, running_stand_in

RED = "药已经准备好了，今晚我就吃下去"
GROUP_ID = -1001234567890  # the group tg.group_update writes from
PUBLIC_URL = "https://line.example.org"
EDIT = f"{tg.API}/editMessageText"
ANSWER = f"{tg.API}/answerCallbackQuery"
TELEGRAM_ID = 9_000_000  # a counsellor's Telegram user id (their private chat's id) is this plus their id
STRANGER_ID = 42_424_242

_ids = itertools.count(810_000_001)


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    for running in running_stand_in():
        tg.bot_api(running)
        running.answer(EDIT, edited_message)
        yield running


def edited_message(request: Recorded) -> tuple[int, dict[str, Any]]:
    """editMessageText's answer: the message as it now reads."""
    fields = tg.sent_fields(request)
    answer = Message(
        message_id=int(fields["message_id"]),
        date=datetime.now(UTC).replace(microsecond=0),
        chat=Chat(id=int(fields["chat_id"]), type=Chat.SUPERGROUP),
        from_user=tg.BOT,
        text=fields["text"],
    )
    return tg.ok(answer.to_dict())


@dataclass
class GroupLine:
    line: Line
    group: CounsellorGroup | None
    stand_in: StandIn

    @property
    def sessions(self) -> Sessions:
        return self.line.sessions

    async def post(self, update: dict[str, Any]) -> int:
        headers = {"Content-Type": "application/json", SECRET_HEADER: tg.SECRET}
        body = json.dumps(update, ensure_ascii=False).encode()
        _, response = await self.line.app.asgi_client.post(WEBHOOK_PATH, content=body, headers=headers)
        return int(response.status)

    async def staffed(self) -> None:
        """The console's staff on shift, each paged on Telegram at TELEGRAM_ID + their id."""
        await self.line.staff()
        async with self.sessions() as session:
            for counsellor in await session.scalars(select(Counsellor)):
                counsellor.page_channel = "telegram"
                counsellor.page_address = str(TELEGRAM_ID + counsellor.id)
            await session.commit()

    async def red_case(self) -> Case:
        """A child's red message in their private chat: the case it opened."""
        assert await self.post(tg.text_update(RED)) == 200
        [conversation] = {sender for sender, _, _ in self.line.engine.triggered}
        return await self.line.case_of(conversation)

    async def round(self) -> int:
        assert self.group is not None
        return await self.group.run_once()

    def posts(self) -> list[dict[str, str]]:
        return [
            f for f in map(tg.sent_fields, self.stand_in.sent_to(tg.SEND)) if int(f["chat_id"]) == GROUP_ID
        ]

    def edits(self) -> list[dict[str, str]]:
        return [tg.sent_fields(r) for r in self.stand_in.sent_to(EDIT)]

    def answers(self) -> list[dict[str, str]]:
        return [tg.sent_fields(r) for r in self.stand_in.sent_to(ANSWER)]

    async def post_ids(self, case_id: int) -> list[int]:
        """The group messages' ids, as the store remembers them."""
        async with self.sessions() as session:
            items = await session.scalars(
                select(OutboxItem)
                .where(OutboxItem.kind == GROUP_PAGE, OutboxItem.case_id == case_id)
                .order_by(OutboxItem.id)
            )
            return [int(item.payload["message_id"]) for item in items if "message_id" in item.payload]

    async def press(self, case_id: int, user_id: int, message_id: int | None = None) -> None:
        """`user_id` presses the claim button under the group's (first) post about the case."""
        message_id = message_id or (await self.post_ids(case_id))[0]
        assert await self.post(press_update(f"claim:{case_id}", user_id, message_id)) == 200

    async def case(self, case_id: int) -> Case:
        async with self.sessions() as session:
            return await session.get_one(Case, case_id)

    def telegram_id(self, handle: str) -> int:
        return TELEGRAM_ID + self.line.ids[handle]


def press_update(data: str, user_id: int, message_id: int) -> dict[str, Any]:
    """A press on a button under the bot's message `message_id` in the counsellors' group."""
    under = Message(
        message_id=message_id,
        date=datetime.now(UTC).replace(microsecond=0),
        chat=Chat(id=GROUP_ID, type=Chat.SUPERGROUP, title="心桥值班群"),
        from_user=tg.BOT,
        text="【心桥值班群】",
    )
    query = CallbackQuery(
        id=str(next(_ids)),
        from_user=User(id=user_id, first_name="老师", is_bot=False),
        chat_instance="-7001",
        data=data,
        message=under,
    )
    return Update(next(_ids), callback_query=query).to_dict()


def group_line(
    database_url: str, sessions: Sessions, stand_in: StandIn, group: int | None = GROUP_ID
) -> GroupLine:
    settings = TelegramSettings(
        token=tg.TOKEN,
        webhook_secret=tg.SECRET,
        api_base_url=stand_in.url,
        counsellor_group=group,
        counsellor_group_interval_seconds=3600,  # the test runs the rounds itself
    )
    plugin = telegram_plugin(settings)
    return GroupLine(
        line_for(database_url, sessions, plugin, public_url=PUBLIC_URL), plugin.extra["group"], stand_in
    )


@pytest.fixture
def line(database_url: str, sessions: Sessions, stand_in: StandIn) -> GroupLine:
    return group_line(database_url, sessions, stand_in)


async def claimed_case(line: GroupLine) -> tuple[Case, str]:
    """A red case, posted, and claimed in the group by its lead: the case and the lead's handle."""
    await line.staffed()
    case = await line.red_case()
    await line.round()
    lead = await line.line.lead_of(case.id)
    await line.press(case.id, line.telegram_id(lead))
    return case, lead


# --- posting ------------------------------------------------------------------------------------------


async def test_a_red_case_is_posted_to_the_group_once_with_a_claim_button(
    database_url: str, sessions: Sessions, stand_in: StandIn
) -> None:
    line = group_line(database_url, sessions, stand_in)
    other_gateway = group_line(database_url, sessions, stand_in)
    await line.staffed()
    case = await line.red_case()
    await other_gateway.line.get("/console")  # its listeners run: its bot and the group's round start
    assert sorted(await asyncio.gather(line.round(), other_gateway.round())) == [0, 1]
    [posted] = line.posts()
    text = posted["text"]
    assert f"#{case.id}" in text and "红色" in text and "新个案" in text
    assert f"{PUBLIC_URL}/console#case-{case.id}" in text
    for private in (RED, "药", str(tg.CHAT_ID), "小明"):
        assert private not in text  # never the child's words, name or address
    markup = json.loads(posted["reply_markup"])
    assert [[(b["text"], b["callback_data"]) for b in row] for row in markup["inline_keyboard"]] == [
        [("认领", f"claim:{case.id}")]
    ]
    # one post for the event, however many rounds look, while each counsellor is paged too
    assert await line.round() == 0 and await other_gateway.round() == 0
    assert len(line.posts()) == 1
    paged = {p.counsellor_id for p in await line.line.pages()}
    private_pages = [chat for chat, _ in tg.sent(line.stand_in) if chat not in (GROUP_ID, tg.CHAT_ID)]
    assert sorted(private_pages) == sorted(TELEGRAM_ID + i for i in paged if i is not None)


async def test_with_no_group_set_nothing_is_posted_or_written(
    database_url: str, sessions: Sessions, stand_in: StandIn
) -> None:
    line = group_line(database_url, sessions, stand_in, group=None)
    assert line.group is None
    await line.staffed()
    case = await line.red_case()
    await line.line.pages()
    assert line.posts() == [] and not stand_in.sent_to(EDIT)
    async with line.sessions() as session:
        kinds = set(await session.scalars(select(OutboxItem.kind).where(OutboxItem.case_id == case.id)))
    assert kinds == {"page"}


async def test_a_case_still_unclaimed_at_its_deadline_is_posted_again(line: GroupLine) -> None:
    await line.staffed()
    case = await line.red_case()
    await line.round()
    async with line.sessions() as session:
        assert (await watchdog.run_once(session, now=utcnow() + timedelta(minutes=4))).repaged_cases == 1
    assert await line.round() == 1
    _, again = line.posts()
    assert f"#{case.id}" in again["text"] and "还没有人认领" in again["text"] and "尽快" in again["text"]
    assert await line.round() == 0 and len(line.posts()) == 2


async def test_a_post_the_bot_api_refuses_is_sent_on_a_later_round(line: GroupLine) -> None:
    await line.staffed()
    case = await line.red_case()
    failures = iter([(502, {"ok": False, "error_code": 502, "description": "Bad Gateway"})])
    line.stand_in.answer(tg.SEND, lambda request: next(failures, None) or tg.sent_message(request))
    assert await line.round() == 1
    assert len(line.posts()) == 1 and await line.post_ids(case.id) == []  # tried, refused, kept
    async with line.sessions() as session:  # its back-off is over
        await session.execute(
            update(OutboxItem).where(OutboxItem.kind == GROUP_PAGE).values(available_at=utcnow())
        )
        await session.commit()
    assert await line.round() == 1
    assert await line.round() == 0
    refused, posted = line.posts()
    assert posted == refused and f"claim:{case.id}" in posted["reply_markup"]
    assert len(await line.post_ids(case.id)) == 1


async def test_a_case_claimed_before_its_post_went_out_is_not_posted(line: GroupLine) -> None:
    await line.staffed()
    case = await line.red_case()
    async with line.sessions() as session:  # written, then claimed in the console before a round sent it
        assert await group_pages.write_due(session, ["red"]) == 1
    lead = await line.line.lead_of(case.id)
    who = await line.line.sign_in(lead)
    assert (await line.line.post(f"/console/api/cases/{case.id}/claim", who)).status == 200
    assert await line.round() == 1  # taken, and recorded as out of date
    assert line.posts() == [] and await line.round() == 0


async def test_while_the_bot_runs_the_gateway_posts_on_its_own(
    database_url: str, sessions: Sessions, stand_in: StandIn
) -> None:
    line = group_line(database_url, sessions, stand_in)
    await line.staffed()
    case = await line.red_case()
    assert line.group is not None and line.posts() == []
    line.group.interval_seconds = 0.05  # as in production, but quick
    line.group.start(line.line.app)
    try:
        await stand_in.wait_for(tg.SEND, 2)  # the child's reply, then the post
    finally:
        await line.group.stop()
    [posted] = line.posts()
    assert f"claim:{case.id}" in posted["reply_markup"]
    async with line.sessions() as session:  # recorded, not left leased by the stop
        [status] = await session.scalars(select(OutboxItem.status).where(OutboxItem.kind == GROUP_PAGE))
    assert status == "sent"


# --- claiming -------------------------------------------------------------------------------------------


async def test_a_staffed_counsellors_press_claims_edits_the_post_and_stops_the_repaging(
    line: GroupLine,
) -> None:
    case, lead = await claimed_case(line)
    claimed = await line.case(case.id)
    assert claimed.status == "claimed" and claimed.claimed_by == line.line.ids[lead]
    [answer] = line.answers()
    assert answer["show_alert"] == "false" and f"#{case.id}" in answer["text"]
    [edit] = line.edits()
    assert int(edit["chat_id"]) == GROUP_ID and int(edit["message_id"]) == (await line.post_ids(case.id))[0]
    assert f"由 {lead} 认领" in edit["text"] and "工作台" in edit["text"]
    assert f"{PUBLIC_URL}/console#case-{case.id}" in edit["text"]
    assert "reply_markup" not in edit  # the button is gone
    # audited as the console's claim is, and where it came from
    [entry] = await line.line.audit("case_claimed")
    assert entry.actor == f"counsellor:{line.line.ids[lead]}" and entry.detail["case_id"] == case.id
    assert entry.detail["origin"] == "telegram"
    # the claim does not take the chat over: the counsellor opens the console to talk
    async with line.sessions() as session:
        assert (
            await session.scalar(select(Conversation.held_by).where(Conversation.id == case.conversation_id))
            is None
        )
        pages_before = await session.scalar(select(func.count()).select_from(OutboxItem))
        # the watchdog does not page again, and the group hears nothing more
        done = await watchdog.run_once(session, now=utcnow() + timedelta(minutes=30))
        assert done.repaged_cases == 0
        assert await session.scalar(select(func.count()).select_from(OutboxItem)) == pages_before
    assert await line.round() == 0 and len(line.posts()) == 1


async def test_a_supervisor_may_claim_any_case(line: GroupLine) -> None:
    await line.staffed()
    case = await line.red_case()
    await line.round()
    await line.press(case.id, line.telegram_id("s1"))
    assert (await line.case(case.id)).claimed_by == line.line.ids["s1"]


async def test_a_second_press_is_told_who_has_it(line: GroupLine) -> None:
    case, lead = await claimed_case(line)
    second = line.line.handle_of((await line.line.staff_of(case.id))["second"])
    await line.press(case.id, line.telegram_id(second))
    assert (await line.case(case.id)).claimed_by == line.line.ids[lead]
    _, told = line.answers()
    assert told["show_alert"] == "true" and f"已经由 {lead} 认领" in told["text"]
    assert all(f"由 {lead} 认领" in edit["text"] for edit in line.edits())
    assert len(await line.line.audit("case_claimed")) == 1


async def test_a_strangers_press_changes_nothing(line: GroupLine) -> None:
    await line.staffed()
    case = await line.red_case()
    await line.round()
    await line.press(case.id, STRANGER_ID)
    assert (await line.case(case.id)).status == "open"
    [answer] = line.answers()
    assert answer["show_alert"] == "true" and "咨询老师" in answer["text"]
    assert line.edits() == [] and await line.line.audit("case_claimed") == []
    async with line.sessions() as session:  # the watchdog still pages: nobody has it
        assert (await watchdog.run_once(session, now=utcnow() + timedelta(minutes=4))).repaged_cases == 1


async def test_a_counsellor_not_on_the_case_is_refused(line: GroupLine) -> None:
    await line.staffed()
    case = await line.red_case()
    await line.round()
    _, outsider = await line.line.lead_and_outsider(case.id)
    await line.press(case.id, line.telegram_id(outsider))
    assert (await line.case(case.id)).status == "open"
    [answer] = line.answers()
    assert answer["show_alert"] == "true" and "没有分配给你" in answer["text"]
    assert line.edits() == [] and await line.line.audit("case_claimed") == []


async def test_a_counsellor_paged_elsewhere_is_a_stranger_to_the_group(line: GroupLine) -> None:
    """The presser is found by their Telegram page address only: the same number set for SMS is not it."""
    await line.staffed()
    case = await line.red_case()
    await line.round()
    lead = await line.line.lead_of(case.id)
    async with line.sessions() as session:
        counsellor = await session.get_one(Counsellor, line.line.ids[lead])
        counsellor.page_channel = "sms"
        await session.commit()
    await line.press(case.id, line.telegram_id(lead))
    assert (await line.case(case.id)).status == "open"


# --- what the group says is never a child's words -------------------------------------------------------


async def test_the_groups_messages_and_other_buttons_are_never_stored_as_a_childs_words(
    line: GroupLine,
) -> None:
    await line.staffed()
    assert await line.post(tg.group_update(RED)) == 200
    assert await line.post(press_update("我是家长", STRANGER_ID, 77)) == 200
    async with line.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(StoredMessage)) == 0
        assert await session.scalar(select(func.count()).select_from(Case)) == 0
    assert line.line.engine.calls == [] and line.line.engine.triggered == []
    assert tg.sent(line.stand_in) == []
    # and a press on a claim button never reaches the switchboard either
    case = await line.red_case()
    await line.round()
    stored = await line.line.count(StoredMessage)
    await line.press(case.id, STRANGER_ID)
    await line.press(case.id, line.telegram_id(await line.line.lead_of(case.id)))
    assert await line.line.count(StoredMessage) == stored
    refused, claimed = line.answers()[-2:]  # answered as claims: the roster's answer, then the claim's
    assert "咨询老师" in refused["text"] and f"#{case.id}" in claimed["text"]
    assert not any(text.startswith("claim:") for _, text, _ in line.line.engine.calls)


def test_the_group_is_set_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XINQIAO_TELEGRAM_TOKEN", tg.TOKEN)
    monkeypatch.setenv("XINQIAO_TELEGRAM_WEBHOOK_SECRET", tg.SECRET)
    for name in ("MODE", "COUNSELLOR_GROUP"):
        monkeypatch.delenv(f"XINQIAO_TELEGRAM_{name}", raising=False)
    plugin = telegram.from_environment()
    assert plugin is not None and plugin.extra["group"] is None
    monkeypatch.setenv("XINQIAO_TELEGRAM_COUNSELLOR_GROUP", str(GROUP_ID))
    plugin = telegram.from_environment()
    assert plugin is not None and plugin.extra["group"].chat_id == GROUP_ID


async def test_no_telegram_user_id_in_the_logs(line: GroupLine, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="integrations")
    case, lead = await claimed_case(line)
    await line.press(case.id, STRANGER_ID)
    for private in (str(line.telegram_id(lead)), str(STRANGER_ID), str(GROUP_ID)):
        assert private not in caplog.text
