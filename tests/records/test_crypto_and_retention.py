"""Encryption at rest, key rotation, the append-only audit log, retention and the audited export."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError, StatementError

from records import cases, contacts, crypto, keys, messages, outbox, retention
from records.crypto import KeysMissing
from records.db import create_engine, session_factory
from records.migrate import alembic_config, upgrade
from records.models import (
    Assignment,
    AuditEntry,
    Author,
    Case,
    Contact,
    Counsellor,
    FamilyContact,
    FamilyContactStatus,
    FollowUp,
    InboundStatus,
    Message,
    Note,
    OutboxItem,
    Referral,
    utcnow,
)
from tests.records.conftest import (
    Sessions,
    Staff,
    add_counsellor,
    audit_entries,
    count,
    escalate,
    new_conversation,
    open_case,
    pages,
)
from tests.records.support import SCHOOL_ROOM

ADDRESS = "test-chat-0000001"  # a made-up channel address
PAGE_ADDRESS = "test-pager-0000009"
UseKeys = Callable[[str], None]


@pytest.fixture
def use_keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[UseKeys]:
    """Sets XINQIAO_ENCRYPTION_KEYS for the rest of the test; the run's own keys come back afterwards."""

    def use(value: str) -> None:
        monkeypatch.setenv(crypto.KEYS_VARIABLE, value)
        crypto.reload_keys()

    yield use
    monkeypatch.undo()
    crypto.reload_keys()


async def _raw(sessions: Sessions, sql: str) -> list[tuple]:  # type: ignore[type-arg]
    async with sessions() as session:
        return [tuple(row) for row in (await session.execute(text(sql))).all()]


async def _talk(sessions: Sessions, conversation_id: str, n: int = 2) -> None:
    """`n` inbound messages, each with a reply pointing at it."""
    for i in range(n):
        async with sessions() as session:
            stored = await messages.record_inbound(
                session,
                conversation_id=conversation_id,
                channel="webchat",
                external_id=f"{conversation_id}-{i}",
                text="测试消息",
            )
            await messages.store_replies(
                session,
                stored.message,
                [("测试回复", None)],
                author=Author.BOT,
                status=InboundStatus.ANSWERED,
            )


# ---------------------------------------------------------------- contacts


async def test_a_contact_is_found_again_by_its_address_which_is_never_stored_plain(
    sessions: Sessions,
) -> None:
    async with sessions() as session:
        first = await contacts.contact_for(session, "telegram", ADDRESS)
    async with sessions() as session:
        again = await contacts.contact_for(session, "telegram", ADDRESS)
    async with sessions() as session:
        other_address = await contacts.contact_for(session, "telegram", ADDRESS + "2")
    async with sessions() as session:
        other_channel = await contacts.contact_for(session, "sms", ADDRESS)
    assert again.id == first.id
    assert len({first.id, other_address.id, other_channel.id}) == 3

    rows = await _raw(sessions, "SELECT id, channel, address_digest, address FROM contact")
    assert len(rows) == 3
    for row in rows:
        assert not any(ADDRESS in str(value) for value in row)
    [(digest, token)] = [(r[2], r[3]) for r in rows if r[0] == first.id]
    assert digest == crypto.lookup_digest("telegram", ADDRESS) and len(digest) == 64
    assert crypto.decrypt(token) == ADDRESS
    async with sessions() as session:
        assert (await session.get_one(Contact, first.id)).address == ADDRESS


FOLLOW_UP_WORDS = "周五放学后和小林的班主任王老师见面"  # made-up words that name people


async def test_the_words_of_a_follow_up_are_stored_encrypted(sessions: Sessions, staff: Staff) -> None:
    _, case_id = await open_case(sessions, "orange", now=utcnow())
    async with sessions() as session:
        added = await cases.add_follow_up(
            session, case_id, staff.volunteers[0], date(2026, 12, 4), FOLLOW_UP_WORDS
        )
    [(token,)] = await _raw(sessions, f"SELECT what FROM follow_up WHERE id = {added.id}")
    assert FOLLOW_UP_WORDS not in token and crypto.decrypt(token) == FOLLOW_UP_WORDS
    async with sessions() as session:
        assert (await session.get_one(FollowUp, added.id)).what == FOLLOW_UP_WORDS


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_migration_encrypts_follow_up_words_written_before_it(
    request: pytest.FixtureRequest, database: str
) -> None:
    """Words stored plain by an older version are encrypted by `alembic upgrade`, and given back plain
    by a downgrade; the protocol's own check-ins, without words, stay empty."""
    url = request.getfixturevalue("sqlite_url" if database == "sqlite" else "postgres_url")
    upgrade(url, "0005")

    async def before() -> int:
        engine = create_engine(url)
        sessions = session_factory(engine)
        _, case_id = await open_case(sessions, "orange", now=utcnow())
        async with sessions() as session:
            await session.execute(  # a counsellor's follow-up, due with the protocol's check-in
                text(
                    "INSERT INTO follow_up (case_id, kind, what, due_at)"
                    " SELECT case_id, kind, :what, due_at FROM follow_up WHERE case_id = :case"
                ),
                {"case": case_id, "what": FOLLOW_UP_WORDS},
            )
            await session.commit()
        await engine.dispose()
        return case_id

    async def stored(case_id: int) -> list[str | None]:
        engine = create_engine(url)
        async with session_factory(engine)() as session:
            rows = await session.execute(
                text("SELECT what FROM follow_up WHERE case_id = :case ORDER BY id"), {"case": case_id}
            )
            values = [row[0] for row in rows]
        await engine.dispose()
        return values

    case_id = asyncio.run(before())
    upgrade(url)
    [check_in, written] = asyncio.run(stored(case_id))
    assert check_in is None
    assert (
        written is not None and FOLLOW_UP_WORDS not in written and crypto.decrypt(written) == FOLLOW_UP_WORDS
    )

    command.downgrade(alembic_config(url), "0005")
    assert asyncio.run(stored(case_id)) == [None, FOLLOW_UP_WORDS]


async def test_two_first_messages_racing_make_one_contact(sessions: Sessions) -> None:
    async def first_contact() -> str:
        async with sessions() as session:
            return (await contacts.contact_for(session, "telegram", ADDRESS)).id

    results = await asyncio.gather(*(first_contact() for _ in range(6)), return_exceptions=True)
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert len(set(results)) == 1
    assert await count(sessions, Contact) == 1


# ---------------------------------------------------------------- keys


async def test_rotated_values_decrypt_once_the_old_key_is_gone(
    sessions: Sessions, staff: Staff, now: datetime, use_keys: UseKeys
) -> None:
    key_a, key_b = crypto.new_key(), crypto.new_key()
    use_keys(key_a)
    pager = await add_counsellor(sessions, "pager", page_address=PAGE_ADDRESS)
    _, case_id = await open_case(sessions, "orange", now=now)
    async with sessions() as session:
        first = await cases.add_note(session, case_id, staff.volunteers[0], "测试记录一")
        second = await cases.add_note(session, case_id, staff.volunteers[0], "测试记录二")
        await cases.record_family_contact(
            session, case_id, staff.volunteers[0], status=FamilyContactStatus.DONE, summary="测试摘要"
        )
        contact = await contacts.contact_for(session, "telegram", ADDRESS)
    before = dict(await _raw(sessions, "SELECT id, body FROM note"))

    use_keys(f"{key_b},{key_a}")
    async with sessions() as session:
        counts = await keys.rotate_all(session, batch=1)  # one row per batch: every page of rows is seen
    assert counts["note.body"] == 2
    assert counts["family_contact.summary"] == 1
    assert counts["contact.address"] == 1
    assert counts["counsellor.page_address"] == 1  # the other counsellors have no page address
    after = dict(await _raw(sessions, "SELECT id, body FROM note"))
    assert all(after[i] != before[i] for i in before)

    use_keys(key_b)
    async with sessions() as session:
        assert (await session.get_one(Note, first.id)).body == "测试记录一"
        assert (await session.get_one(Note, second.id)).body == "测试记录二"
        assert (await session.scalar(select(FamilyContact.summary))) == "测试摘要"
        assert (await session.get_one(Contact, contact.id)).address == ADDRESS
        assert (await session.get_one(Counsellor, pager)).page_address == PAGE_ADDRESS

    use_keys(crypto.new_key())  # a wrong key
    async with sessions() as session:
        with pytest.raises(KeysMissing):
            await session.get_one(Note, first.id)


async def test_values_not_rotated_are_unreadable_once_their_key_is_dropped(
    sessions: Sessions, staff: Staff, now: datetime, use_keys: UseKeys
) -> None:
    key_a, key_b = crypto.new_key(), crypto.new_key()
    use_keys(key_a)
    _, case_id = await open_case(sessions, "orange", now=now)
    async with sessions() as session:
        note = await cases.add_note(session, case_id, staff.volunteers[0], "测试记录")

    use_keys(f"{key_b},{key_a}")  # both keys: readable, new values go under B
    async with sessions() as session:
        assert (await session.get_one(Note, note.id)).body == "测试记录"

    use_keys(key_b)  # A dropped without rotate-keys
    async with sessions() as session:
        with pytest.raises(KeysMissing):
            await session.get_one(Note, note.id)


async def test_no_key_configured_refuses_to_write(
    sessions: Sessions, staff: Staff, now: datetime, use_keys: UseKeys
) -> None:
    _, case_id = await open_case(sessions, "orange", now=now)
    use_keys("")
    async with sessions() as session:
        with pytest.raises((KeysMissing, StatementError)) as refused:
            await cases.add_note(session, case_id, staff.volunteers[0], "测试记录")
    # on a write SQLAlchemy wraps what the column type raised; the cause is still KeysMissing
    assert isinstance(getattr(refused.value, "orig", refused.value), KeysMissing)
    assert await count(sessions, Note) == 0


# ---------------------------------------------------------------- the audit log


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_entry SET action = 'rewritten'",
        "UPDATE audit_entry SET detail = '{}' WHERE action = 'case_opened'",
        "DELETE FROM audit_entry",
        "DELETE FROM audit_entry WHERE action = 'case_opened'",
    ],
)
async def test_the_audit_log_refuses_update_and_delete_in_the_database(
    sessions: Sessions, staff: Staff, now: datetime, statement: str
) -> None:
    await open_case(sessions, "red", now=now)
    before = await _raw(sessions, "SELECT id, action, detail FROM audit_entry ORDER BY id")
    assert before

    async with sessions() as session:
        with pytest.raises(DBAPIError, match="append-only"):
            await session.execute(text(statement))
            await session.commit()
        await session.rollback()
    assert await _raw(sessions, "SELECT id, action, detail FROM audit_entry ORDER BY id") == before


async def test_the_audit_log_refuses_an_orm_update_too(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    await open_case(sessions, "red", now=now)
    async with sessions() as session:
        with pytest.raises(DBAPIError, match="append-only"):
            await session.execute(update(AuditEntry).values(actor="someone_else"))
    assert {e.actor for e in await audit_entries(sessions)} == {"gateway"}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_the_audit_log_refuses_truncate_on_postgresql(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    await open_case(sessions, "red", now=now)
    async with sessions() as session:  # PostgreSQL only: SQLite has no TRUNCATE
        with pytest.raises(DBAPIError, match="append-only"):
            await session.execute(text("TRUNCATE audit_entry"))
    assert len(await audit_entries(sessions)) == 1


# ---------------------------------------------------------------- retention


async def _close_long_ago(sessions: Sessions, case_id: int, closer: int, days: int) -> None:
    async with sessions() as session:
        await cases.close(session, case_id, closer, "resolved")
    async with sessions() as session:
        await session.execute(
            update(Case).where(Case.id == case_id).values(closed_at=utcnow() - timedelta(days=days))
        )
        await session.commit()


async def test_purge_removes_a_case_closed_long_ago_and_keeps_the_rest_and_the_audit_log(
    sessions: Sessions, staff: Staff, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("records.cases.entries", lambda: (SCHOOL_ROOM,))
    worker = staff.volunteers[0]

    old_conversation = await new_conversation(sessions)
    await _talk(sessions, old_conversation)
    old = (await escalate(sessions, old_conversation, "red", now=now)).case_id
    assert old is not None
    async with sessions() as session:
        await cases.add_note(session, old, worker, "测试记录")
        await cases.refer(session, old, worker, SCHOOL_ROOM.id, follow_up_on=date(2026, 3, 9))
        await cases.plan_return_to_school(session, old, worker, date(2026, 3, 2))
        await cases.record_family_contact(
            session, old, worker, status=FamilyContactStatus.DONE, summary="测试"
        )
    await _close_long_ago(sessions, old, worker, days=400)

    open_conversation = await new_conversation(sessions)
    await _talk(sessions, open_conversation)
    still_open = (await escalate(sessions, open_conversation, "orange", now=now)).case_id
    recent_conversation = await new_conversation(sessions)
    await _talk(sessions, recent_conversation)
    recent = (await escalate(sessions, recent_conversation, "orange", now=now)).case_id
    async with sessions() as session:
        await cases.add_note(session, recent, worker, "测试记录")  # type: ignore[arg-type]
        await cases.close(session, recent, worker, "resolved")  # type: ignore[arg-type]

    for model in (Assignment, Note, Referral, FollowUp, FamilyContact, OutboxItem):
        assert await count(sessions, model, model.case_id == old) > 0, model.__name__
    audit_before = await _raw(sessions, "SELECT id, action FROM audit_entry ORDER BY id")

    async with sessions() as session:
        purged = await retention.purge_closed(session, older_than=timedelta(days=365))
    assert purged == [old]

    assert await count(sessions, Case, Case.id == old) == 0
    for model in (Assignment, Note, Referral, FollowUp, FamilyContact, OutboxItem):
        assert await count(sessions, model, model.case_id == old) == 0, model.__name__
    assert await count(sessions, Message, Message.conversation_id == old_conversation) == 0
    for conversation_id, case_id in ((open_conversation, still_open), (recent_conversation, recent)):
        assert await count(sessions, Case, Case.id == case_id) == 1
        assert await count(sessions, Message, Message.conversation_id == conversation_id) == 4
        assert await count(sessions, Assignment, Assignment.case_id == case_id) == 3
        assert len(await pages(sessions, case_id)) == 1
    assert await count(sessions, Note, Note.case_id == recent) == 1

    audit_after = await _raw(sessions, "SELECT id, action FROM audit_entry ORDER BY id")
    assert audit_after[: len(audit_before)] == audit_before
    [(_, action)] = audit_after[len(audit_before) :]
    assert action == "case_purged"
    [entry] = await audit_entries(sessions, "case_purged", old_conversation)
    assert entry.actor == "retention" and entry.detail["case_id"] == old and entry.detail["level"] == "red"
    assert entry.detail["deleted"]["note"] == 1 and entry.detail["deleted"]["message"] == 4


async def test_purge_keeps_the_messages_of_a_conversation_with_another_case(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    conversation_id = await new_conversation(sessions)
    await _talk(sessions, conversation_id)
    first = (await escalate(sessions, conversation_id, "orange", now=now)).case_id
    await _close_long_ago(sessions, first, staff.volunteers[0], days=400)  # type: ignore[arg-type]
    second = (await escalate(sessions, conversation_id, "orange", now=now)).case_id
    assert second != first

    async with sessions() as session:
        assert await retention.purge_closed(session, older_than=timedelta(days=365)) == [first]
    assert await count(sessions, Message, Message.conversation_id == conversation_id) == 4
    assert await count(sessions, Case, Case.conversation_id == conversation_id) == 1


async def test_purge_of_nothing_old_enough_purges_nothing(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    _, case_id = await open_case(sessions, "orange", now=now)
    await _close_long_ago(sessions, case_id, staff.volunteers[0], days=30)
    async with sessions() as session:
        assert await retention.purge_closed(session, older_than=timedelta(days=365)) == []
    assert await count(sessions, Case) == 1
    assert await audit_entries(sessions, "case_purged") == []


# ---------------------------------------------------------------- export


async def test_an_export_holds_the_decrypted_notes_and_the_audit_trail_and_is_audited(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    conversation_id = await new_conversation(sessions)
    await _talk(sessions, conversation_id, n=1)
    case_id = (await escalate(sessions, conversation_id, "red", now=now)).case_id
    assert case_id is not None
    async with sessions() as session:
        note = await cases.add_note(session, case_id, staff.volunteers[0], "测试记录：需要转介")

    async with sessions() as session:
        document = await retention.export_case(session, case_id, actor="test_supervisor")

    assert document["format"] == retention.EXPORT_FORMAT
    assert document["case"]["id"] == case_id and document["case"]["level"] == "red"
    assert [(n["id"], n["body"]) for n in document["notes"]] == [(note.id, "测试记录：需要转介")]
    assert len(document["assignments"]) == 3 and len(document["family_contacts"]) == 1
    assert [m["text"] for m in document["messages"]] == ["测试消息", "测试回复"]
    assert all("assessment" not in m for m in document["messages"])
    assert [e["action"] for e in document["audit"]] == ["case_opened", "note_added"]
    json.dumps(document, ensure_ascii=False)  # the command line writes it as JSON

    [entry] = await audit_entries(sessions, "case_exported", conversation_id)
    assert entry.actor == "test_supervisor" and entry.detail == {"case_id": case_id}


async def test_an_export_of_a_case_that_does_not_exist_is_refused(sessions: Sessions) -> None:
    async with sessions() as session:
        with pytest.raises(LookupError):
            await retention.export_case(session, 4242, actor="test_supervisor")
    assert await audit_entries(sessions, "case_exported") == []


async def test_an_export_trail_includes_a_page_of_the_case_that_failed_for_good(
    sessions: Sessions, staff: Staff, now: datetime
) -> None:
    """A red page that never reached anyone is part of what happened to the case."""
    _, case_id = await open_case(sessions, "red", now=now)
    async with sessions() as session:
        [item, *_] = await outbox.lease(session, now=now)
        await outbox.mark_failed_attempt(
            session, item, delivered_via=[], error="sms:TimeoutError", max_attempts=1, now=now
        )
    [failed] = await audit_entries(sessions, "page_failed")
    assert failed.detail["outbox_id"] == item.id

    async with sessions() as session:
        document = await retention.export_case(session, case_id, actor="test_supervisor")
    assert "page_failed" in [e["action"] for e in document["audit"]]
