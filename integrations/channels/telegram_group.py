"""The counsellors' Telegram group: a post with a 认领 (claim) button for every orange or red case that
opens, is raised, or is still unclaimed at its deadline; the first free counsellor claims it with one tap.

On when XINQIAO_TELEGRAM_COUNSELLOR_GROUP names the group's chat id (the bot must be a member).

The posts go through the outbox (records/group_pages.py): every few seconds each gateway writes the post
for each open case's current event, under a dedupe key of case, level and stage, then leases and sends
what is due like the page dispatcher does. The case row is the record of each event, so a restart or a
Bot API outage loses nothing, several gateways never post twice, and a post whose event is over (the case
was claimed or has moved on) is not sent late. The direct pages to each counsellor go out as before.

A press on the button (callback data `claim:<case id>`, only from the configured group):
- the presser is the active counsellor whose Telegram page address is their user id (their private chat
  with the bot has the same id); anyone else is told so, and nothing changes;
- a counsellor on the case's staff, a supervisor or an admin may claim it (the console's rule); the claim
  is `records.cases.claim` (atomic: a second presser is told who has it), audited like the console's;
- every post about the case is edited to say who took it, and loses its button. Claiming does not take
  the conversation over: the counsellor opens the case in the console to talk with the child.

Nothing from the group ever reaches the switchboard: its messages are not a child's words, and only
private chats are handled as such (telegram.py). Posts carry ids, the level, the reason and the deadline,
never a child's words, name or address; Telegram user ids are compared through the store, never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict
from sanic import Sanic
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.error import BadRequest, ChatMigrated, Forbidden, TelegramError
from telegram.ext import CallbackQueryHandler, ContextTypes

from integrations.outbox_worker import PERMANENT, OutboxWorker, Result
from records import cases, group_pages
from records.models import Case, CaseStatus, Counsellor, OutboxItem

if TYPE_CHECKING:
    from integrations.channels.telegram import TelegramLine, TelegramTexts

log = logging.getLogger(__name__)

# The levels posted to the group: the ones a counsellor must claim within minutes.
GROUP_LEVELS = ("orange", "red")
CLAIM = re.compile(r"^claim:(\d{1,18})$")  # at most 24 bytes: well within the Bot API's 64
SENT_VIA = "telegram_group"
SUPERSEDED = "superseded"  # a post whose event was over before it could be sent: recorded, not sent
STOP_WAIT_SECONDS = 15.0  # how long a stopping gateway lets a round that is sending finish


class GroupTexts(BaseModel):
    """`counsellor_group` in data/content/channels/telegram.yml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str
    button: str
    claimed: str
    closed: str
    claimed_answer: str
    yours_answer: str
    taken_answer: str
    closed_answer: str
    not_on_roster: str
    not_on_case: str


@dataclass(frozen=True, slots=True)
class ClaimAnswer:
    """What a press gets: the answer under the button, and the posts to edit (to `edit`, no button)."""

    text: str
    alert: bool = True
    edit: str | None = None
    posts: list[tuple[int, int]] = field(default_factory=list)


class ClaimButtons(CallbackQueryHandler[Any, None]):
    """Takes only presses of a claim button under a message in the counsellors' group; any other press
    goes on to the next handler (a child's buttons in a private chat)."""

    def __init__(self, chat_id: int, callback: Callable[[Update, ContextTypes.DEFAULT_TYPE], Any]) -> None:
        super().__init__(callback, pattern=CLAIM)
        self.chat_id = chat_id

    def check_update(self, update: object) -> bool | object | None:
        if not isinstance(update, Update) or update.callback_query is None:
            return None
        message = update.callback_query.message
        if message is None or message.chat.id != self.chat_id:
            return None
        return super().check_update(update)


class GroupDispatcher(OutboxWorker[None]):
    """Writes the posts that are due, leases them and sends them to the group (one gateway's round)."""

    def __init__(self, group: CounsellorGroup, gateway: Sanic, max_attempts: int) -> None:
        super().__init__(gateway.ctx.background, {}, max_attempts=max_attempts)
        self._group = group

    async def run_once(self) -> int:
        async with self._sessions() as session:
            await group_pages.write_due(session, GROUP_LEVELS)
            items = await group_pages.lease(session)
            if not items:
                return 0
            live = await group_pages.current(session, items)
        # No session is held while sending, as for pages.
        outcomes = await asyncio.gather(*(self._send(item, item.id in live) for item in items))
        async with self._sessions() as session:
            for item, (_, message) in zip(items, outcomes, strict=True):
                if message is not None:
                    await group_pages.posted(session, item.id, message.chat_id, message.message_id)
        await self.record(items, [result for result, _ in outcomes], failure_action="group_page_failed")
        return len(items)

    async def _send(self, item: OutboxItem, live: bool) -> tuple[Result, Message | None]:
        if not live:
            log.info("telegram group: post %s for case %s is out of date; not sent", item.id, item.case_id)
            return ([SUPERSEDED], None), None
        text, markup = self._group.post(item)
        chat_id = self._group.chat_id
        try:
            message = await self._group.line.with_bot(
                lambda bot: bot.send_message(chat_id=chat_id, text=text, reply_markup=markup)
            )
        except (Forbidden, BadRequest, ChatMigrated) as refused:  # not a member, no such chat: no retry helps
            log.error(
                "telegram group: post %s refused (%s); check XINQIAO_TELEGRAM_COUNSELLOR_GROUP and that the "
                "bot is in the group",
                item.id,
                type(refused).__name__,
            )
            return ([], f"{PERMANENT}{type(refused).__name__}"), None
        except Exception as failure:  # noqa: BLE001 - the Bot API down, a timeout…: retried, like a page
            log.warning("telegram group: post %s not sent (%s); retried", item.id, type(failure).__name__)
            return ([], type(failure).__name__), None
        log.info("telegram group: case %s posted (%s)", item.case_id, item.payload.get("reason"))
        return ([SENT_VIA], None), message


class CounsellorGroup:
    """The group's side of one gateway's bot: its dispatcher (a background loop while the bot runs) and
    the claim button's handler."""

    def __init__(
        self,
        line: TelegramLine,
        chat_id: int,
        texts: Callable[[], TelegramTexts],
        *,
        interval_seconds: float = 2.0,
    ) -> None:
        self.line = line
        self.chat_id = chat_id
        self._texts = texts
        self.interval_seconds = interval_seconds
        self._dispatcher: GroupDispatcher | None = None
        self._loop: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    # --- posting ------------------------------------------------------------------------------------

    def start(self, gateway: Sanic) -> None:
        """Called as the bot starts: the dispatcher on this server's store, and its loop."""
        self._dispatcher = GroupDispatcher(self, gateway, gateway.ctx.settings.page_max_attempts)
        self._stopping = asyncio.Event()
        self._loop = asyncio.create_task(self._run(), name="telegram_group")

    async def stop(self) -> None:
        """Lets a round that is sending finish (its posts are then recorded, not left leased), then ends."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(loop, STOP_WAIT_SECONDS)
        except TimeoutError:
            log.warning("telegram group: a round did not finish in time; its posts are retried later")

    async def run_once(self) -> int:
        """One round: the posts that are due written, sent and recorded. How many were leased."""
        if self._dispatcher is None:
            raise RuntimeError("the Telegram bot has not started yet")
        return await self._dispatcher.run_once()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval_seconds)
                return
            try:
                while await self.run_once():
                    pass
            except Exception:  # a failed round is logged; the next one tries again
                log.exception("telegram group: round failed")

    def post(self, item: OutboxItem) -> tuple[str, InlineKeyboardMarkup]:
        """A post's words and its button, from the item's codes."""
        page, texts = self._texts().page, self._texts().counsellor_group
        payload = item.payload
        deadline = page.no_deadline
        if claim_by := payload.get("claim_by"):
            when = datetime.fromisoformat(str(claim_by)).astimezone(ZoneInfo(self.line.settings.timezone))
            deadline = when.strftime(page.deadline_format)
        level = str(payload.get("level", ""))
        text = texts.text.format(
            level=page.levels.get(level, level),
            case_id=item.case_id,
            reason=page.reasons.get(str(payload.get("reason", "")), page.other_reason),
            deadline=deadline,
        )
        button = InlineKeyboardButton(texts.button, callback_data=f"claim:{item.case_id}")
        return self._with_link(text, item.case_id), InlineKeyboardMarkup([[button]])

    def _with_link(self, text: str, case_id: int | None) -> str:
        gateway = self.line.gateway
        public_url = gateway.ctx.settings.public_url if gateway is not None else None
        if not public_url:
            return text
        link = f"{public_url.rstrip('/')}/console#case-{case_id}"
        return text + "\n" + self._texts().page.console_link.format(url=link)

    # --- claiming -------------------------------------------------------------------------------------

    def handler(self) -> ClaimButtons:
        return ClaimButtons(self.chat_id, self.on_claim)

    async def on_claim(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None and query.data is not None and query.message is not None
        match = CLAIM.match(query.data)
        assert match is not None  # the handler's pattern
        answer = await self.claim(int(match.group(1)), query.from_user.id)
        with contextlib.suppress(TelegramError):  # a late answer (the query expired) changes nothing
            await query.answer(answer.text, show_alert=answer.alert)
        if answer.edit is None:
            return
        pressed = (query.message.chat.id, query.message.message_id)
        for chat_id, message_id in dict.fromkeys([pressed, *answer.posts]):
            await _edit(context.bot, chat_id, message_id, answer.edit)

    async def claim(self, case_id: int, user_id: int) -> ClaimAnswer:
        """The press of `user_id` (a Telegram user) on case `case_id`'s button, decided in the store."""
        texts = self._texts().counsellor_group
        gateway = self.line.gateway
        assert gateway is not None
        async with gateway.ctx.sessions() as session:
            counsellor = await group_pages.counsellor_paged_at(session, "telegram", str(user_id))
            if counsellor is None:
                log.info("telegram group: a press on case %s by someone not on the roster; refused", case_id)
                return ClaimAnswer(texts.not_on_roster)
            case = await session.get(Case, case_id)
            if case is None or case.status == CaseStatus.CLOSED:
                return ClaimAnswer(texts.closed_answer, edit=texts.closed.format(case_id=case_id))
            if case.claimed_by is None:
                if not await cases.may_open(session, counsellor, case):
                    log.info(
                        "telegram group: counsellor %s may not claim case %s; refused", counsellor.id, case_id
                    )
                    return ClaimAnswer(texts.not_on_case)
                if await cases.claim(session, case_id, counsellor.id, origin="telegram"):
                    log.info("telegram group: case %s claimed by counsellor %s", case_id, counsellor.id)
                    return ClaimAnswer(
                        texts.claimed_answer.format(case_id=case_id),
                        alert=False,
                        edit=self._claimed_text(case_id, counsellor.display_name),
                        posts=await group_pages.posts_of(session, case_id),
                    )
                case = await session.get_one(Case, case_id, populate_existing=True)  # someone was faster
                if case.status == CaseStatus.CLOSED or case.claimed_by is None:
                    return ClaimAnswer(texts.closed_answer, edit=texts.closed.format(case_id=case_id))
            holder = await session.get_one(Counsellor, case.claimed_by)
            posts = await group_pages.posts_of(session, case_id)
        edit = self._claimed_text(case_id, holder.display_name)
        if holder.id == counsellor.id:
            return ClaimAnswer(texts.yours_answer, alert=False, edit=edit, posts=posts)
        return ClaimAnswer(texts.taken_answer.format(name=holder.display_name), edit=edit, posts=posts)

    def _claimed_text(self, case_id: int, name: str) -> str:
        claimed = self._texts().counsellor_group.claimed.format(case_id=case_id, name=name)
        return self._with_link(claimed, case_id)


async def _edit(bot: Bot, chat_id: int, message_id: int, text: str) -> None:
    """Rewrites a post; without a reply_markup the Bot API drops its button. A post that cannot be edited
    (deleted, unchanged) is left as it is: the claim stands either way."""
    try:
        await bot.edit_message_text(text, chat_id=chat_id, message_id=message_id)
    except TelegramError as failure:
        log.info("telegram group: a post was not edited (%s)", type(failure).__name__)
