"""The one path every message takes, whatever the channel: store, route, answer, never fall silent.

1. Store the inbound message first (unique on channel + external id). A redelivery is answered from
   what is stored and never processed twice.
2. Screen it with the triage protocol and store the assessment with it. At orange and red the case is
   opened (or raised) in the same transaction, with its staff and pages (records/escalation.py), and the
   page dispatcher is woken; then the crisis path is triggered in the engine directly
   (integrations/triage_gate.py). Otherwise the text goes to the engine with the conversation's
   pseudonymous id. A red message while nobody is on shift also gets the numbers to call now.
3. Store the replies and hand them back. When the engine does not answer within the message's one
   deadline (all its engine calls together), answer with the fail-safe script (hotline numbers) and keep
   the message for the retry worker. When the action server is down the engine's replies may be cut
   short, so the fail-safe script is added to them. When the retries are used up, the message is handed
   to a person (records/unanswered.py) and still retried, so a later recovery answers it.

Once the message is stored it is answered as stored: a store that fails after that (locked, read-only)
never turns into "not sent", which would make the writer send it again. Replies that cannot be stored
yet are answered all the same and kept in memory until the retry worker can store them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from actions.topic_finder import chosen_topic
from integrations.content import failsafe_text, gateway_texts
from integrations.engine_client import BotReply, EngineUnavailable
from integrations.inbound import InboundMessage
from integrations.paging.senders import ChatEvent
from integrations.triage_gate import (
    ASK_WHEN_UNSURE,
    ESCALATING,
    asks_when_unsure,
    present_signal_ids,
    risk_metadata,
    route_for,
    subject_at_risk,
)
from records import handoff, messages, unanswered
from records.escalation import Escalation, EscalationResult
from records.models import Author, InboundStatus, Message, utcnow
from triage_protocols import screen
from triage_protocols.directory import hotline_list

log = logging.getLogger(__name__)

# the rule an assessment records for a guidance topic's button (see screen_message)
TOPIC_CHOICE = "topic_choice"


class Engine(Protocol):
    async def send(self, sender_id: str, text: str, metadata: dict[str, Any]) -> list[BotReply]: ...

    async def set_audience(self, sender_id: str, audience: str) -> None: ...

    async def trigger(self, sender_id: str, intent: str, entities: dict[str, Any]) -> list[BotReply]: ...

    async def active_loop(self, sender_id: str) -> str | None: ...

    async def pause(self, sender_id: str) -> None: ...

    async def resume(self, sender_id: str) -> None: ...


Screen = Callable[[str, str], dict[str, Any]]


def screen_message(text: str, audience: str) -> dict[str, Any]:
    """The triage protocol's assessment as stored with the message. `screen` never raises.

    A guidance topic's button ("我想了解：孩子说想死") is the parent's choice among the topics the line itself
    offered, not their own words: their own words were screened when they asked. Screened as words, five
    titles opened an orange case and paged counsellors instead of showing the chosen guidance."""
    if chosen_topic(text) is not None:
        assessment = screen("", audience=audience).to_dict()  # type: ignore[arg-type]
        return {**assessment, "rule": TOPIC_CHOICE, "reasons": [{"source": "gateway", "rule": TOPIC_CHOICE, "level": "green"}]}
    return screen(text, audience=audience).to_dict()  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Reply:
    id: int
    text: str
    author: str
    buttons: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def of(cls, message: Message) -> Reply:
        return cls(
            id=message.id,
            text=message.text,
            author=message.author,
            buttons=list((message.payload or {}).get("buttons", [])),
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    message_id: int
    status: str
    replies: list[Reply]
    duplicate: bool = False
    case_id: int | None = None


def _always_up() -> bool:
    return True


def _nothing() -> None:
    return None


def _ignore(_: ChatEvent) -> None:
    return None


def _no_case(_: EscalationResult) -> None:
    return None


def escalation_for(inbound: InboundMessage, assessment: dict[str, Any]) -> Escalation | None:
    """The case a screened message opens or raises: orange and red only (yellow opens a case when the
    person accepts a check-in or asks for someone, which the actions decide)."""
    if assessment.get("level") not in ESCALATING:
        return None
    return Escalation(
        conversation_id=inbound.conversation_id,
        level=assessment["level"],
        origin="screen",
        reason=f"screen:{assessment.get('rule') or ''}"[:64],
        signals=tuple(present_signal_ids(assessment)),
        rule=assessment.get("rule"),
        protocol_version=assessment.get("protocol_version"),
        subject=subject_at_risk(assessment),
        audience=inbound.audience,
        channel=inbound.channel,
        flood_key=inbound.flood_key,
    )


def notices_for(case: EscalationResult | None) -> list[str]:
    """What the gateway adds to the reply because of the case: when a red case finds nobody on shift,
    the numbers to call now (the supervisor is paged all the same)."""
    if case is not None and case.level == "red" and not case.on_call_available:
        return [gateway_texts().no_counsellor_on_shift]
    return []


# What a store that is locked, read-only or gone raises. Storing replies is tried once: the store's own
# busy timeout is the wait, and a webhook (Twilio's 15 s) cannot wait for a second one.
STORE_FAULTS = (SQLAlchemyError, OSError)


@dataclass(slots=True)
class _UnstoredReplies:
    """Replies the writer was given while the store refused them, for the retry worker to store."""

    inbound: Message
    replies: list[tuple[str, dict[str, Any] | None]]
    author: Author
    status: InboundStatus
    push: bool


def _retry_order(message: Message) -> tuple[bool, int]:
    """Given-up messages go last, the least tried first, so that one the engine always fails on (it errs
    on those words) cannot hold back the others; a person has each of them already. The sort is stable,
    so the rest keep their order."""
    given_up = message.status == InboundStatus.GAVE_UP
    return given_up, message.attempts if given_up else 0


class Switchboard:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        engine: Engine,
        *,
        actions_up: Callable[[], bool] = _always_up,
        retry_limit: int = 5,
        stale_after_seconds: float = 60.0,
        deadline_seconds: float = 8.0,
        screen: Screen = screen_message,
        on_escalated: Callable[[], None] = _nothing,
        on_case: Callable[[EscalationResult], None] = _no_case,
        on_message_for_counsellor: Callable[[ChatEvent], None] = _ignore,
    ) -> None:
        self._sessions = sessions
        self._engine = engine
        self._screen = screen
        self._actions_up = actions_up
        self._retry_limit = retry_limit
        self._stale_after = timedelta(seconds=stale_after_seconds)
        self._deadline = deadline_seconds
        self._unstored: dict[int, _UnstoredReplies] = {}
        self._on_escalated = on_escalated
        self._on_case = on_case
        self._on_message_for_counsellor = on_message_for_counsellor

    @property
    def engine(self) -> Engine:
        """The engine this switchboard talks to (the console pauses and resumes conversations in it)."""
        return self._engine

    def assess(self, inbound: InboundMessage) -> dict[str, Any]:
        """The message's assessment, before it is stored: a route that must know how urgent a message
        is (the web chat's rate limit never holds back orange or red) screens once and passes it on."""
        return self._screen(inbound.text, inbound.audience or "student")

    async def receive(
        self,
        inbound: InboundMessage,
        *,
        slowed: bool = False,
        on_stored: Callable[[str | None], None] | None = None,
        assessment: dict[str, Any] | None = None,
    ) -> Outcome:
        """`slowed`: the sender is over their channel's rate limit. The message is still stored and
        screened (and opens its case); an orange or red one is answered as usual, anything else gets
        the slow-down text instead of the engine.

        `on_stored` is called with the message's risk level as soon as it is committed, before the engine
        is asked: a channel that must acknowledge or answer within its provider's window (Telegram's
        webhook, WeChat's passive reply) learns then that the message is kept, and how urgent it is.

        `assessment` is the one `assess` gave, when the caller screened the message already."""
        # Screening is pure, never raises and takes well under a millisecond, so the assessment is
        # stored in the same transaction as the message, before the engine sees either.
        if assessment is None:
            assessment = self.assess(inbound)
        async with self._sessions() as session:
            result = await messages.record_inbound(
                session,
                conversation_id=inbound.conversation_id,
                channel=inbound.channel,
                external_id=inbound.external_id,
                text=inbound.text,
                assessment=assessment,
                escalation=escalation_for(inbound, assessment),
            )
            stored = result.message
            if result.duplicate:
                log.info("redelivered message %s answered from the store", stored.id)
                replies = await messages.replies_to(session, stored.id)
                if on_stored is not None:
                    on_stored(stored.risk_level)
                return Outcome(stored.id, stored.status or "", [Reply.of(r) for r in replies], duplicate=True)
        if on_stored is not None:
            on_stored(stored.risk_level)
        case = result.case
        if stored.risk_level in ESCALATING:
            log.warning(
                "message %s screened %s (rule %s), case %s",
                stored.id,
                stored.risk_level,
                assessment.get("rule"),
                case.case_id if case else None,
            )
        if case is not None and case.paged:
            self._on_case(case)  # consoles on this gateway hear of it now; the outbox sends it durably
            self._on_escalated()
        if result.held_by is not None:
            outcome = await self._to_counsellor(stored, result.held_by)
        elif slowed and stored.risk_level not in ESCALATING:
            outcome = await self._slow_down(stored)
        else:
            outcome = await self._process(stored, self._metadata(inbound), notices=notices_for(case))
        return replace(outcome, case_id=case.case_id if case else None)

    async def _to_counsellor(self, inbound: Message, counsellor_id: int, *, push: bool = False) -> Outcome:
        """A counsellor holds the conversation: the message is theirs, the bot stays silent. A red
        message still gets the numbers at once, while the counsellor reads it."""
        replies: list[tuple[str, dict[str, Any] | None]] = []
        if inbound.risk_level == "red":
            replies.append((gateway_texts().with_counsellor_red.format(hotline_list=hotline_list()), None))
        stored = await self._keep(inbound, replies, Author.SYSTEM, InboundStatus.TO_COUNSELLOR, push=push)
        self._on_message_for_counsellor(
            ChatEvent(inbound.conversation_id, inbound.id, counsellor_id, inbound.risk_level)
        )
        return Outcome(inbound.id, InboundStatus.TO_COUNSELLOR, stored)

    async def _slow_down(self, inbound: Message) -> Outcome:
        text = gateway_texts().slow_down.format(hotline_list=hotline_list())
        stored = await self._keep(inbound, [(text, None)], Author.SYSTEM, InboundStatus.SLOWED)
        return Outcome(inbound.id, InboundStatus.SLOWED, stored)

    async def retry_pending(self) -> int:
        """Stores replies a store fault held back, then sends waiting messages to the engine again:
        those it did not answer, those given up (a person has them, but the writer still gets the
        answer), and those a gateway stored but never answered (it died in between; older than
        `stale_after_seconds`, so none still in flight). Returns how many were answered this round."""
        await self._store_held_back()
        async with self._sessions() as session:
            waiting = await messages.pending_retries(session, stale_before=utcnow() - self._stale_after)
        waiting = sorted(waiting, key=_retry_order)
        answered = 0
        for message in waiting:
            if message.id in self._unstored:  # answered already; its replies wait for the store
                continue
            async with self._sessions() as session:
                holder = await handoff.holder_of(session, message.conversation_id)
            if holder is not None:  # a counsellor took the conversation over meanwhile: it is theirs
                await self._to_counsellor(message, holder, push=True)
                continue
            outcome = await self._process(message, {"channel": message.channel, "retry": True}, retry=True)
            if outcome.status == InboundStatus.ANSWERED:
                answered += 1
            else:
                break  # the engine is still down; keep the order and wait for the next round
        return answered

    @staticmethod
    def _metadata(inbound: InboundMessage) -> dict[str, Any]:
        metadata: dict[str, Any] = {"channel": inbound.channel}
        if inbound.audience:
            metadata["audience"] = inbound.audience
        return metadata

    async def _process(
        self, inbound: Message, metadata: dict[str, Any], *, retry: bool = False, notices: Sequence[str] = ()
    ) -> Outcome:
        try:
            # One deadline for every engine call this message makes (an orange one makes two), so that
            # a channel's webhook (Twilio waits 15 s) always hears back in time.
            async with asyncio.timeout(self._deadline):
                bot_replies = await self._ask_engine(inbound, metadata)
        except (EngineUnavailable, TimeoutError) as error:
            log.warning("engine did not answer message %s (%s)", inbound.id, type(error).__name__)
            return await self._failsafe(inbound, retry=retry, notices=notices)
        replies = [(r.text, r.payload()) for r in bot_replies]
        if not self._actions_up():
            log.warning("action server down while answering message %s; fail-safe added", inbound.id)
            replies.append((failsafe_text(), None))
        replies += [(text, None) for text in notices]
        stored = await self._keep(inbound, replies, Author.BOT, InboundStatus.ANSWERED, push=retry)
        return Outcome(inbound.id, InboundStatus.ANSWERED, stored)

    async def _ask_engine(self, inbound: Message, metadata: dict[str, Any]) -> list[BotReply]:
        assessment = inbound.assessment or {}
        audience = await self._audience_to_introduce(inbound)
        if audience is not None:  # before its first turn, the engine learns who writes
            await self._engine.set_audience(inbound.conversation_id, audience)
        # Only an orange message needs to know whether the ASQ is under way (its answers screen orange).
        loop = None
        if assessment.get("level") == "orange":
            loop = await self._engine.active_loop(inbound.conversation_id)
        route = route_for(assessment, loop)
        if route.kind == "intent":
            return await self._engine.trigger(inbound.conversation_id, route.intent, route.entities)
        metadata = {**metadata, "risk": risk_metadata(assessment)} if assessment else metadata
        replies = await self._engine.send(inbound.conversation_id, inbound.text, metadata)
        if asks_when_unsure(assessment):
            replies += await self._ask_when_unsure(inbound.conversation_id, assessment)
        return replies

    async def _ask_when_unsure(self, conversation_id: str, assessment: dict[str, Any]) -> list[BotReply]:
        """After the answer, one gentle question (the engine's rule decides whether it was just asked);
        never inside a form, whose questions come one at a time. The message is answered already, so an
        engine that fails now costs the question, not the answer."""
        try:
            if await self._engine.active_loop(conversation_id) is not None:
                return []
            return await self._engine.trigger(
                conversation_id, ASK_WHEN_UNSURE, {"risk_level": assessment.get("level")}
            )
        except EngineUnavailable as error:
            log.warning("the question after an unsure message was not asked (%s)", type(error).__name__)
            return []

    async def _audience_to_introduce(self, inbound: Message) -> str | None:
        """The conversation's audience, at its first message. A store that fails now (the message is
        stored already) costs the wording, never the answer: the replies then read as for a student."""
        try:
            async with self._sessions() as session:
                return await messages.audience_to_introduce(session, inbound)
        except STORE_FAULTS as error:
            log.warning("audience of message %s not read (%s)", inbound.id, type(error).__name__)
            return None

    async def _keep(
        self,
        inbound: Message,
        replies: list[tuple[str, dict[str, Any] | None]],
        author: Author,
        status: InboundStatus,
        *,
        push: bool = False,
    ) -> list[Reply]:
        """Stores the replies with the message's new status. When the store refuses, the writer is
        answered all the same (negative ids: not stored yet) and the retry worker stores them later; the
        message itself is stored already, so it is never reported as lost, and the engine is not asked
        again. Should this gateway die first, the retry worker of another answers the message anew."""
        try:
            async with self._sessions() as session:
                stored = await messages.store_replies(
                    session, inbound, replies, author=author, status=status, push=push
                )
            return [Reply.of(r) for r in stored]
        except STORE_FAULTS as error:
            log.warning("replies to message %s not stored yet (%s)", inbound.id, type(error).__name__)
        self._unstored[inbound.id] = _UnstoredReplies(inbound, replies, author, status, push)
        return [
            Reply(-(inbound.id * 100 + n), text, author, list((payload or {}).get("buttons", [])))
            for n, (text, payload) in enumerate(replies)
        ]

    async def _store_held_back(self) -> None:
        """Stores the replies a store fault held back, oldest first; stops at the first that still fails."""
        for message_id in sorted(self._unstored):
            held = self._unstored[message_id]
            try:
                async with self._sessions() as session:
                    await messages.store_replies(
                        session,
                        held.inbound,
                        held.replies,
                        author=held.author,
                        status=held.status,
                        push=held.push,
                    )
            except STORE_FAULTS as error:
                log.warning("replies to message %s still not stored (%s)", message_id, type(error).__name__)
                return
            del self._unstored[message_id]

    async def _failsafe(self, inbound: Message, *, retry: bool, notices: Sequence[str] = ()) -> Outcome:
        if retry:  # the user already has the fail-safe script; count the attempt only
            return await self._count_failed_attempt(inbound)
        stored = await self._keep(
            inbound,
            [(failsafe_text(), None), *((text, None) for text in notices)],
            Author.SYSTEM,
            InboundStatus.RETRY_PENDING,
        )
        return Outcome(inbound.id, InboundStatus.RETRY_PENDING, stored)

    async def _count_failed_attempt(self, inbound: Message) -> Outcome:
        """One more failed retry. At the limit the message is given up and handed to a person in the
        same transaction: its case opened or raised, paged, and marked in the console's queue."""
        async with self._sessions() as session:
            updated = await messages.mark_failed_attempt(
                session, inbound, retry_limit=self._retry_limit, commit=False
            )
            case = None
            if updated.status == InboundStatus.GAVE_UP and inbound.status != InboundStatus.GAVE_UP:
                case = await unanswered.hand_to_person(session, updated)
            await session.commit()
            if case is not None:
                log.error(
                    "message %s given up after %s attempts; handed to case %s",
                    updated.id,
                    updated.attempts,
                    case.case_id,
                )
                if case.paged:
                    self._on_case(case)
                    self._on_escalated()
        return Outcome(inbound.id, updated.status or "", [])
