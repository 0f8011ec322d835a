"""Opening and raising cases as the triage protocol says, staffing them and paging the right people.

One function, `escalate`, used by the gateway (a message screened orange or red, in the same transaction
that stores the message) and by the action server (Rasa's crisis intents, screening results, a request
for a person, an accepted check-in). It works inside the caller's transaction and never commits, so the
case, its assignments, its pages and its audit entries commit together with whatever caused them.

Every rule comes from the protocol (`triage_protocols/protocols/levels.yml`): whether a level opens a
case (`case.opens`), how many staff follow it (`staffing`: yellow 二包一, orange and red 三包一 with the
family), who is paged at once (`case.page_at_once`), the claim deadline (`case.claim_within_minutes`),
the response deadline and the first check-in (`respond_within_minutes`, `follow_up_days`).

Red pages two different people at once (the lead and a supervisor): when they are one person, the
next in the protocol's fallback order is paged too (`staffing.backups`); only a line with one active
person pages one, and the audit log says so (`too_few_to_page`).

A flood: when the gateway marks an escalation with a `flood_key` (a digest naming a source over its
rate limit), the cases it opens are opened, staffed and queued as usual, but within `FLOOD_WINDOW` only
the first one at a level pages; the others are audited as `flood_grouped` with that case's id. A red
case is only ever grouped behind a red page. The flood's pages are recorded in the audit log
(`flood_paged`, under the flood key), so every gateway sees them.

Concurrency: the first statement updates the conversation's row. On SQLite that takes the database's
write lock, on PostgreSQL the row's lock, so escalations of one conversation take turns and the second
sees the first one's case. The partial unique index (one open case per conversation) and the outbox's
unique dedupe key are the backstops. Escalations of one flood take turns on the flood key: SQLite's
write lock is already held, PostgreSQL takes a transaction-scoped advisory lock named by the key.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from records import audit, paging, staffing
from records.models import (
    Assignment,
    AssignmentRole,
    AuditEntry,
    Case,
    CaseStatus,
    Conversation,
    Counsellor,
    FamilyContact,
    FollowUp,
    utcnow,
)
from triage_protocols import Level, level_spec, protocol_version

log = logging.getLogger(__name__)

# Where an escalation comes from ("question": the person said yes to the assistant's gentle question about
# thoughts of self-harm or suicide). A level whose case policy is `on_request` opens a case only for the
# origins in REQUESTED; `always` opens one for every origin.
Origin = Literal["screen", "intent", "instrument", "handoff", "checkin", "counsellor", "question"]
REQUESTED: frozenset[str] = frozenset({"instrument", "handoff", "checkin", "counsellor"})
ROLES = (AssignmentRole.LEAD, AssignmentRole.SECOND, AssignmentRole.THIRD)
# How long one page covers the later cases of a flood from the same source: long enough that a flood
# pages the on-call counsellor a few times an hour, not once a case; short enough that a flood that goes
# on is paged again while the first page is still being answered (orange must be claimed within 20).
FLOOD_WINDOW = timedelta(minutes=10)
FLOOD_PAGED = "flood_paged"


@dataclass(frozen=True, slots=True)
class Escalation:
    """What is known when a level is reached: codes only, never a word of the conversation."""

    conversation_id: str
    level: Level | str
    origin: Origin
    reason: str  # e.g. "screen:plan_with_time", "crisis:suicidal_thoughts", "asq:acute_positive"
    signals: tuple[str, ...] = ()
    rule: str | None = None
    protocol_version: str | None = None
    subject: Literal["self", "other"] = "self"
    audience: str | None = None
    channel: str = "engine"  # only used when the conversation is not yet stored (a bare Rasa session)
    actor: str | None = None  # who escalates, for the audit log; by default read from the origin
    # a digest naming the source that is over its rate limit (the gateway's), never an address in clear
    flood_key: str | None = None


@dataclass(slots=True)
class EscalationResult:
    case_id: int | None
    level: str | None
    opened: bool = False
    raised: bool = False
    paged: list[int] = field(default_factory=list)  # counsellor ids with a new page
    understaffed: bool = False
    on_call_available: bool = True  # False: nobody is on shift; the user must be told to call now
    flood_grouped_with: int | None = None  # a flood's case whose page covers this one (nobody paged now)


async def escalate(
    session: AsyncSession, request: Escalation, *, now: datetime | None = None
) -> EscalationResult:
    """Opens the conversation's case, or raises it, or leaves it as it is (never lowers, never doubles)."""
    now = now or utcnow()
    level = Level(request.level)
    policy = level_spec(level).case
    if policy.opens == "never" or (policy.opens == "on_request" and request.origin not in REQUESTED):
        return EscalationResult(None, None)

    await _take_conversation_lock(session, request, now)
    case = await session.scalar(
        select(Case)
        .where(Case.conversation_id == request.conversation_id, Case.status != CaseStatus.CLOSED)
        .options(selectinload(Case.assignments))
        .execution_options(populate_existing=True)  # read under the lock: what the last escalation left
    )
    if case is None:
        case = await _open(session, request, level, now)
        result = EscalationResult(case.id, case.level, opened=True)
        audit_action = "case_opened"
    elif case.level_rank < level.rank:
        _raise(case, request, level, now)
        result = EscalationResult(case.id, case.level, raised=True)
        audit_action = "case_raised"
    else:  # the same or a lower level: nothing to raise, but a case left short of staff is topped up
        result = EscalationResult(case.id, case.level)
        audit_action = "case_staffed"

    on_call = list(await staffing.on_call(session, now))
    result.on_call_available = bool(on_call)
    added, result.understaffed = await staff_case(session, case, on_call, now)
    if audit_action == "case_staffed" and not added:
        return result
    await _page_or_group(session, request, case, result, now)
    await _family_and_check_in(session, case, now)
    audit.append(
        session,
        actor=request.actor or _actor(request.origin),
        action=audit_action,
        subject=request.conversation_id,
        case_id=case.id,
        level=case.level,
        origin=request.origin,
        reason=request.reason,
        rule=request.rule,
        signals=list(request.signals),
        protocol_version=case.protocol_version,
        paged=result.paged,
        understaffed=result.understaffed,
        on_call_available=result.on_call_available,
    )
    if not result.paged and result.flood_grouped_with is None:
        log.error(
            "case %s (%s) has nobody to page: no counsellor on shift and no supervisor", case.id, case.level
        )
    return result


def _actor(origin: str) -> str:
    return "gateway" if origin == "screen" else "counsellor" if origin == "counsellor" else "action_server"


async def _take_conversation_lock(session: AsyncSession, request: Escalation, now: datetime) -> None:
    touched = await session.execute(
        update(Conversation).where(Conversation.id == request.conversation_id).values(escalated_at=now)
    )
    if touched.rowcount == 0:
        # A conversation the gateway never stored (a Rasa shell, a test tracker). Racing escalations may
        # all get here: insert-if-absent, then take the lock like everyone else.
        dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
        await session.execute(
            dialect.insert(Conversation)
            .values(id=request.conversation_id, channel=request.channel, audience=request.audience)
            .on_conflict_do_nothing(index_elements=["id"])
        )
        await session.execute(
            update(Conversation).where(Conversation.id == request.conversation_id).values(escalated_at=now)
        )


def _deadlines(level: Level, now: datetime) -> tuple[datetime | None, datetime | None]:
    spec = level_spec(level)
    respond = (
        None if spec.respond_within_minutes is None else now + timedelta(minutes=spec.respond_within_minutes)
    )
    claim = now + timedelta(minutes=spec.case.claim_within_minutes or 0)
    return respond, claim


async def _open(session: AsyncSession, request: Escalation, level: Level, now: datetime) -> Case:
    respond_by, claim_by = _deadlines(level, now)
    case = Case(
        conversation_id=request.conversation_id,
        level=level.value,
        level_rank=level.rank,
        status=CaseStatus.OPEN,
        audience=request.audience,
        subject=request.subject,
        opened_reason=request.reason[:64],
        protocol_version=request.protocol_version or protocol_version(),
        rule=request.rule,
        signals=sorted(set(request.signals)),
        opened_at=now,
        respond_by=respond_by,
        claim_by=claim_by,
        next_escalation_at=claim_by,
        escalation_stage=0,
        assignments=[],
    )
    session.add(case)
    await session.flush()
    return case


def _raise(case: Case, request: Escalation, level: Level, now: datetime) -> None:
    """A higher level: the tighter deadlines win and the watchdog's ladder starts again from its first step."""
    respond_by, claim_by = _deadlines(level, now)
    case.level, case.level_rank, case.raised_at = level.value, level.rank, now
    case.protocol_version = request.protocol_version or protocol_version()
    case.rule = request.rule or case.rule
    case.signals = sorted(set(case.signals) | set(request.signals))
    if request.subject == "self":
        case.subject = "self"
    case.respond_by = min(filter(None, (case.respond_by, respond_by)), default=None)
    if case.status == CaseStatus.OPEN:
        case.claim_by = min(filter(None, (case.claim_by, claim_by)))
        case.next_escalation_at = case.claim_by
        case.escalation_stage = 0


async def staff_case(
    session: AsyncSession, case: Case, on_call: list[Counsellor], now: datetime
) -> tuple[int, bool]:
    """Tops the case up to the level's staffing from the on-call pool, least loaded first. Returns how
    many were added, and whether the pool was too small (the supervisor is then paged to find people)."""
    needed = level_spec(case.level).staffing.staff
    assigned = case.assignments  # loaded once (empty for a new case), kept current as people are added
    taken_roles = {a.role for a in assigned}
    taken_people = {a.counsellor_id for a in assigned}
    free_roles = [role for role in ROLES[:needed] if role not in taken_roles]
    candidates = [c for c in on_call if c.id not in taken_people]
    added = list(zip(free_roles, candidates, strict=False))
    for role, counsellor in added:
        case.assignments.append(Assignment(counsellor_id=counsellor.id, role=role, assigned_at=now))
    await session.flush()
    return len(added), len(candidates) < len(free_roles)


async def _lead(session: AsyncSession, case: Case) -> int | None:
    if case.claimed_by is not None:  # whoever holds the conversation hears of a raise first
        return case.claimed_by
    return next((a.counsellor_id for a in case.assignments if a.role == AssignmentRole.LEAD), None)


async def _page_or_group(
    session: AsyncSession, request: Escalation, case: Case, result: EscalationResult, now: datetime
) -> None:
    """Pages who the level asks for at once, unless the case opens or rises in a flood whose page within
    the window already reached someone at this level or above: then the case is only recorded as grouped,
    so the on-call counsellor is not paged once per conversation of one flooding source."""
    flood_key = request.flood_key if result.opened or result.raised else None
    if flood_key is not None:
        result.flood_grouped_with = await _flood_cover(session, flood_key, case, now)
    if result.flood_grouped_with is not None:
        _audit_grouped(session, request, case, result.flood_grouped_with)
        return
    recipients = await _recipients(session, case, result, now)
    result.paged = await _page_at_once(session, case, result, recipients, now)
    _audit_if_too_few(session, request, case, recipients)
    if flood_key is not None and result.paged:
        _audit_flood_page(session, request, flood_key, case, result.paged, now)


def _people_needed(level: str) -> int:
    """How many different people the level pages at once: one for each role in `page_at_once`
    (red: the lead and a supervisor, two people even when the lead is a supervisor)."""
    return len(set(level_spec(level).case.page_at_once))


async def _recipients(
    session: AsyncSession, case: Case, result: EscalationResult, now: datetime
) -> dict[int, str]:
    """Who is paged at once, each person once, with the role they are paged as, in the order paged."""
    policy = level_spec(case.level).case
    recipients: dict[int, str] = {}
    lead = await _lead(session, case) if "lead" in policy.page_at_once else None
    if lead is not None:
        recipients[lead] = "lead"
    # The supervisor hears at once when the level asks for it, when there is no lead to page, or when
    # the case could not be fully staffed.
    if "supervisor" in policy.page_at_once or lead is None or result.understaffed:
        for supervisor in await staffing.supervisors(session, now):
            recipients.setdefault(supervisor.id, "supervisor")
    needed = _people_needed(case.level)
    if len(recipients) < needed:  # one person in two roles: the protocol's fallback order fills in
        for counsellor, as_role in await staffing.backups(session, now, following=_staff_in_order(case)):
            if len(recipients) >= needed:
                break
            recipients.setdefault(counsellor.id, as_role)
    return recipients


def _staff_in_order(case: Case) -> list[int]:
    """The case's staff, lead, second, third: the next of them on call is the first to fall back to."""
    return [a.counsellor_id for a in sorted(case.assignments, key=lambda a: ROLES.index(a.role))]


async def _page_at_once(
    session: AsyncSession, case: Case, result: EscalationResult, recipients: dict[int, str], now: datetime
) -> list[int]:
    """Writes the pages; returns who got a new one (a page already written is not written again)."""
    reason = "case_raised" if result.raised else "case_opened"
    paged: list[int] = []
    for counsellor_id, as_role in recipients.items():
        is_new = await paging.page(
            session,
            case_id=case.id,
            counsellor_id=counsellor_id,
            reason=reason,
            level=case.level,
            at=now,
            as_role=as_role,
            claim_by=case.claim_by.isoformat() if case.claim_by else None,
            understaffed=result.understaffed,
            on_call_available=result.on_call_available,
        )
        if is_new:
            paged.append(counsellor_id)
    return paged


def _audit_if_too_few(
    session: AsyncSession, request: Escalation, case: Case, recipients: dict[int, str]
) -> None:
    """Fewer people than the level pages at once were found anywhere on the line (a line of one active
    person): on record, so a supervisor sees that this case rested on one person, or on nobody."""
    needed = _people_needed(case.level)
    if len(recipients) >= needed:
        return
    audit.append(
        session,
        actor=request.actor or _actor(request.origin),
        action="too_few_to_page",
        subject=request.conversation_id,
        case_id=case.id,
        level=case.level,
        needed=needed,
        paged=list(recipients),
    )
    log.warning(
        "case %s (%s) paged %s of the %s people it needs", case.id, case.level, len(recipients), needed
    )


def _flood_subject(flood_key: str) -> str:
    """The audit subject the flood's pages are filed under: the key itself (a digest, never an address),
    or its SHA-256 when it is longer than the column."""
    if len(flood_key) <= AuditEntry.subject.type.length:
        return flood_key
    return hashlib.sha256(flood_key.encode()).hexdigest()


async def _take_flood_lock(session: AsyncSession, flood_key: str) -> None:
    """Escalations of one flood take turns, whichever gateway runs them, so two cases arriving together
    cannot both find no page and both page. SQLite: the database's write lock is already held (the
    conversation's row was updated). PostgreSQL: an advisory lock on the key until the transaction ends."""
    if session.bind.dialect.name != "postgresql":
        return
    digest = hashlib.sha256(flood_key.encode()).digest()
    await session.execute(select(func.pg_advisory_xact_lock(int.from_bytes(digest[:8], "big", signed=True))))


async def _flood_cover(session: AsyncSession, flood_key: str, case: Case, now: datetime) -> int | None:
    """The case whose flood page, within the window, reached someone at this case's level or above (the
    earliest); None when this case must page. An orange page never covers red."""
    await _take_flood_lock(session, flood_key)
    entries = await session.scalars(
        select(AuditEntry)
        .where(
            AuditEntry.action == FLOOD_PAGED,
            AuditEntry.subject == _flood_subject(flood_key),
            AuditEntry.at >= now - FLOOD_WINDOW,
        )
        .order_by(AuditEntry.at, AuditEntry.id)
    )
    for entry in entries:
        if Level(entry.detail["level"]).rank >= case.level_rank:
            return int(entry.detail["case_id"])
    return None


def _audit_flood_page(
    session: AsyncSession, request: Escalation, flood_key: str, case: Case, paged: list[int], now: datetime
) -> None:
    """Records that this case paged for its flood; later cases of the flood find it here. Dated by the
    escalation's own clock, the one the window is measured on."""
    entry = audit.append(
        session,
        actor=request.actor or _actor(request.origin),
        action=FLOOD_PAGED,
        subject=_flood_subject(flood_key),
        case_id=case.id,
        level=case.level,
        paged=paged,
    )
    entry.at = now


def _audit_grouped(session: AsyncSession, request: Escalation, case: Case, first_case_id: int) -> None:
    """A case that paged nobody because of its flood is on record with the case whose page covers it, so
    a supervisor can tell grouped from unreachable."""
    audit.append(
        session,
        actor=request.actor or _actor(request.origin),
        action="flood_grouped",
        subject=request.conversation_id,
        case_id=case.id,
        first_case_id=first_case_id,
        level=case.level,
        flood_key=request.flood_key,
    )


async def _family_and_check_in(session: AsyncSession, case: Case, now: datetime) -> None:
    """三包一 opens a task to bring the family in; every case gets its first check-in date."""
    spec = level_spec(case.level)
    days = timedelta(days=spec.follow_up_days or 1)
    if spec.staffing.family:
        unsafe = sorted({s.split(".")[0] for s in case.signals} & set(spec.case.family_safety_first_for))
        task = await session.scalar(select(FamilyContact).where(FamilyContact.case_id == case.id).limit(1))
        if task is None:
            detail = {"level": case.level, "check_safety_first": bool(unsafe), "because": unsafe}
            session.add(FamilyContact(case_id=case.id, due_by=now + days, detail=detail))
        elif unsafe and not task.detail.get("check_safety_first"):
            task.detail = {**task.detail, "check_safety_first": True, "because": unsafe}
    due = now + days
    current = await session.scalar(  # the protocol's own check-in: a counsellor's dated ones have words
        select(FollowUp).where(
            FollowUp.case_id == case.id,
            FollowUp.kind == "check_in",
            FollowUp.what.is_(None),
            FollowUp.done_at.is_(None),
        )
    )
    if current is None:
        session.add(FollowUp(case_id=case.id, kind="check_in", due_at=due))
    elif current.due_at > due:
        current.due_at = due
    await session.flush()
