"""Property tests of the counsellor console's write routes, in-process on a migrated SQLite store with a
staffed line: sign-in with any handle and password (any type, any code point, malformed bodies), and a
signed-in supervisor's case messages and notes with any body (valid CSRF token), on any case id, huge
ones included. Each answer is a 2xx, a 4xx JSON refusal with an `error` code naming no secret (no
password, cookie, CSRF token), or a 503 with the numbers; what is accepted is stored as it was cleaned."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from sanic import Sanic
from sqlalchemy import select

from records.models import Message, Note
from tests.fault import support
from tests.fault.conftest import Forbidden
from tests.fault.support import MISSING, Runner, Store, examples, field, without_missing
from tests.unit.console_client import PASSWORD, SUPERVISOR, Console, console_app
from tests.unit.fakes import FakeEngine

Sanic.test_mode = True


class ConsoleLine:
    def __init__(self, url: str, forbidden: Forbidden) -> None:
        self.runner = Runner()
        self.store = Store(url)
        engine = FakeEngine()
        app = console_app(
            url, "fault_console", engine, rasa_token=support.RASA_TOKEN, session_secret=support.SESSION_SECRET
        )
        self.console = Console(app, engine, self.store.sessions)
        self.forbidden = forbidden
        forbidden.add("counsellor password", PASSWORD)
        forbidden.add("Rasa token", support.RASA_TOKEN)
        forbidden.add("session secret", support.SESSION_SECRET)
        for text in support.RED_TEXTS:
            forbidden.add("red text", text)
        self.who: dict[str, str] = {}
        self.case_id = 0

    @property
    def app(self) -> Sanic:
        return self.console.app

    def fresh_limits(self) -> None:
        """A new sign-in rate window and no lockouts each example: they are not what these tests are about."""
        self.app.ctx.console_sign_in_limiter = None
        self.app.ctx.console_sign_in_lockouts = None

    async def start(self) -> None:
        await self.console.staff()
        self.who = await self.console.sign_in(SUPERVISOR)
        cookie = self.who["cookie"].split("=", 1)[1]
        self.forbidden.add("console cookie", cookie)
        self.forbidden.add("CSRF token", self.who["X-CSRF-Token"])
        _, self.case_id = await self.console.red_case()
        claimed = await self.console.post(f"/console/api/cases/{self.case_id}/claim", self.who)
        assert claimed.status == 200, claimed.json

    def secrets(self, *more: str) -> list[str]:
        cookie = self.who.get("cookie", "=").split("=", 1)[1]
        return [
            PASSWORD,
            support.RASA_TOKEN,
            support.SESSION_SECRET,
            cookie,
            self.who.get("X-CSRF-Token", ""),
            *more,
        ]

    async def post(
        self, path: str, body: bytes, headers: dict[str, str], *secrets: str, known_g: bool = True
    ) -> Any:
        self.fresh_limits()
        self.app.asgi_client.cookies.clear()
        _, response = await self.app.asgi_client.post(
            path, content=body, headers={"content-type": "application/json", **headers}
        )
        support.assert_no_bare_5xx(response)
        support.assert_no_secret(response, self.secrets(*secrets))
        if known_g and response.status == 400 and decoded(body) is MISSING and sanic_json_error(response):
            return response  # defect G (test_a_body_that_is_not_json_is_refused_with_a_code)
        if 400 <= response.status < 500 and response.status != 413:
            assert isinstance(response.json, dict) and isinstance(response.json.get("error"), str), (
                response.text
            )
        return response

    def close(self) -> None:
        self.runner.run(self.store.close())
        self.runner.close()


def sanic_json_error(response: Any) -> bool:
    """Sanic's own English error, as JSON (FALLBACK_ERROR_FORMAT)."""
    body = response.json
    return isinstance(body, dict) and "description" in body and "error" not in body


@pytest.fixture
def console(db: str, forbidden: Forbidden, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleLine]:
    support.light_hashing(monkeypatch)
    made = ConsoleLine(db, forbidden)
    made.runner.run(made.start())
    yield made
    made.close()


# --- sign-in ------------------------------------------------------------------------------------------


def test_any_sign_in_is_answered_with_a_code(console: ConsoleLine) -> None:
    credentials = st.fixed_dictionaries(
        {
            # a lone surrogate in either is defect D (test_a_lone_surrogate_in_a_sign_in_is_a_wrong_password)
            "handle": field(
                st.one_of(
                    support.GARBAGE_NO_SURROGATE,
                    st.sampled_from(["v1", "s1", "admin", "v1\x00", "ｖ1"]),
                    st.text(min_size=200, max_size=300),
                )
            ),
            "password": field(
                st.one_of(
                    support.GARBAGE_NO_SURROGATE,
                    st.just(PASSWORD + "\x00"),
                    st.text(st.characters(exclude_categories=["Cs"]), min_size=1000, max_size=1100),
                )
            ),
        },
        optional={"extra": support.JSON_VALUES},
    ).map(without_missing)
    bodies = st.one_of(
        credentials.map(support.json_bytes),
        support.MALFORMED_BODIES,
        support.JSON_VALUES.map(support.json_bytes),
    )

    @examples(20)
    @given(body=bodies)
    def check(body: bytes) -> None:
        value = decoded(body)
        if isinstance(value, dict):
            console.forbidden.add_typed("password typed", value.get("password"))
            console.forbidden.add_typed("handle typed", value.get("handle"))
        response = console.runner.run(console.post("/console/api/login", body, {}))
        assert response.status in (400, 401, 413, 423, 429), (response.status, response.text)

    check()


def test_a_near_miss_password_is_a_wrong_password(console: ConsoleLine) -> None:
    async def go() -> None:
        for password in (PASSWORD + "\x00", "\x00" * 12, PASSWORD.upper(), PASSWORD + " "):
            body = support.json_bytes({"handle": SUPERVISOR, "password": password})
            response = await console.post("/console/api/login", body, {})
            assert response.status == 401, (password, response.status, response.text)

    console.runner.run(go())


# --- a case's messages and notes ------------------------------------------------------------------------


def case_bodies(name: str) -> st.SearchStrategy[bytes]:
    fields = st.fixed_dictionaries({name: field(support.texts())}, optional={"extra": support.JSON_VALUES})
    return st.one_of(
        fields.map(without_missing).map(support.json_bytes),
        fields.map(without_missing).map(support.json_bytes),
        support.MALFORMED_BODIES,
        support.JSON_VALUES.map(support.json_bytes),
    )


SURROGATE = re.compile(r"[\ud800-\udfff]")


def decoded(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return MISSING


def test_any_message_to_the_child_is_kept_or_refused(console: ConsoleLine) -> None:
    @examples(20)
    @given(body=case_bodies("text"))
    def check(body: bytes) -> None:
        value = decoded(body)
        text = value.get("text", MISSING) if isinstance(value, dict) else MISSING
        console.forbidden.add_text(text)
        console.forbidden.add_text(support.cleaned(text))

        async def go() -> None:
            path = f"/console/api/cases/{console.case_id}/messages"
            response = await console.post(path, body, console.who)
            words = support.cleaned(text) if isinstance(text, str) else None
            if words is None:
                assert response.status in (400, 413), (response.status, response.text)
                return
            assert response.status == 201, (response.status, response.text)
            async with console.store.sessions() as session:
                stored = await session.get(Message, response.json["id"])
            assert stored is not None and stored.direction == "out" and stored.text == words

        console.runner.run(go())

    check()


def test_any_note_is_kept_or_refused(console: ConsoleLine) -> None:
    @examples(20)
    @given(body=case_bodies("body"))
    def check(body: bytes) -> None:
        value = decoded(body)
        note = value.get("body", MISSING) if isinstance(value, dict) else MISSING
        assume(not (isinstance(note, str) and SURROGATE.search(note)))  # defect E (test_a_note_with_a_lone_…)
        console.forbidden.add_text(note)

        async def go() -> None:
            response = await console.post(f"/console/api/cases/{console.case_id}/notes", body, console.who)
            if not isinstance(note, str) or not note.strip():
                assert response.status in (400, 413), (response.status, response.text)
                return
            assert response.status == 201, (response.status, note, response.text)
            async with console.store.sessions() as session:
                stored = await session.scalar(select(Note).where(Note.id == response.json["id"]))
            assert stored is not None and stored.body.strip()

        console.runner.run(go())

    check()


def test_any_case_id_and_csrf_token_are_answered_with_a_code(console: ConsoleLine) -> None:
    @examples(25)
    @given(
        # from 2**63 on, defect F (test_a_case_id_no_database_integer_holds_is_not_found)
        case_id=st.integers(min_value=-(2**63), max_value=2**63 - 1),
        route=st.sampled_from(
            ["messages", "notes", "claim", "release", "close", "level", "referrals", "follow-ups"]
        ),
        csrf=st.sampled_from(["good", "missing", "wrong"]),
    )
    def check(case_id: int, route: str, csrf: str) -> None:
        headers = dict(console.who)
        if csrf == "missing":
            headers.pop("X-CSRF-Token")
        elif csrf == "wrong":
            headers["X-CSRF-Token"] = uuid.uuid4().hex
        body = support.json_bytes(
            {"text": "你好", "body": "记录", "outcome": "resolved", "level": "red", "reason": "x"}
        )
        response = console.runner.run(console.post(f"/console/api/cases/{case_id}/{route}", body, headers))
        assert response.status in (200, 201, 400, 403, 404, 409), (response.status, response.text)

    check()


def test_any_care_plan_write_is_answered_with_a_code(console: ConsoleLine) -> None:
    """The care-plan routes (level, referrals, family contact, follow-ups, return to school, a referral's
    status, a follow-up done) with any body; text without lone surrogates here (defect E covers them)."""
    from datetime import date

    days = st.one_of(
        st.dates(min_value=date(2025, 1, 1), max_value=date(2028, 12, 31)).map(date.isoformat),
        st.sampled_from(
            ["9999-12-31", "0001-01-01", "2026-02-30", "2026-13-01", "２０２６-１２-０５", "2026-12-5", ""]
        ),
        support.GARBAGE_NO_SURROGATE,
    )
    words = st.one_of(
        support.GARBAGE_NO_SURROGATE,
        st.text(min_size=2000, max_size=2100).map(lambda t: SURROGATE.sub("", t)),
        st.sampled_from(["", "   ", "\x00\x00", "家长说孩子今晚在家"]),
    )
    body = st.fixed_dictionaries(
        {},
        optional={
            "level": field(st.sampled_from(["red", "orange", "yellow", "green", "RED", "purple", ""])),
            "reason": field(words),
            "entry_id": field(st.one_of(support.GARBAGE_NO_SURROGATE, st.integers())),
            "follow_up_on": field(days),
            "status": field(
                st.sampled_from(
                    ["accepted", "attended", "closed", "proposed", "done", "not_safe", "unreachable", "x"]
                )
            ),
            "relation": field(words),
            "summary": field(words),
            "due_on": field(days),
            "what": field(words),
            "first_day": field(days),
        },
    ).map(without_missing)
    routes = st.sampled_from(["level", "referrals", "family-contact", "follow-ups", "return-to-school"])

    @examples(25)
    @given(route=routes, body=body, row=st.integers(min_value=-5, max_value=50), other=st.booleans())
    def check(route: str, body: dict[str, Any], row: int, other: bool) -> None:
        for value in body.values():
            console.forbidden.add_text(value)
        if other:  # a referral's status or a follow-up's done, by any id
            path = (
                f"/console/api/referrals/{row}/status"
                if route == "referrals"
                else f"/console/api/follow-ups/{row}/done"
            )
        else:
            path = f"/console/api/cases/{console.case_id}/{route}"
        response = console.runner.run(console.post(path, support.json_bytes(body), console.who))
        assert response.status in (200, 201, 400, 403, 404, 409), (response.status, path, body, response.text)

    check()


# --- defects found ---------------------------------------------------------------------------------------


def test_a_lone_surrogate_in_a_sign_in_is_a_wrong_password(console: ConsoleLine) -> None:
    async def go() -> None:
        answers = []
        for handle, password in [
            (SUPERVISOR, "\ud83d" + PASSWORD),
            ("nobody", "\udfff" * 12),
            ("s1\ud800", PASSWORD),
        ]:
            body = support.json_bytes({"handle": handle, "password": password})
            response = await console.post("/console/api/login", body, {})
            answers.append((handle, password, response.status))
        assert all(status == 401 for *_, status in answers), answers

    console.runner.run(go())


def test_a_note_with_a_lone_surrogate_is_kept(console: ConsoleLine) -> None:
    async def go() -> None:
        body = support.json_bytes({"body": "家长已联系\ud83d"})
        response = await console.post(f"/console/api/cases/{console.case_id}/notes", body, console.who)
        assert response.status == 201, (response.status, response.text)

    console.runner.run(go())


def test_care_plan_words_with_a_lone_surrogate_are_kept(console: ConsoleLine) -> None:
    from datetime import date, timedelta

    async def go() -> None:
        tomorrow = (date.today() + timedelta(days=2)).isoformat()
        answers = []
        for route, body in (
            ("family-contact", {"status": "done", "relation": "母亲", "summary": "已联系\ud83d"}),
            ("follow-ups", {"due_on": tomorrow, "what": "回访\udfff"}),
            ("level", {"level": "orange", "reason": "已安全\ud83d"}),
        ):
            path = f"/console/api/cases/{console.case_id}/{route}"
            response = await console.post(path, support.json_bytes(body), console.who)
            answers.append((route, response.status))
        assert all(status < 500 for _, status in answers), answers

    console.runner.run(go())


def test_a_case_id_no_database_integer_holds_is_not_found(console: ConsoleLine) -> None:
    async def go() -> None:
        answers = []
        body = support.json_bytes({"text": "你好", "body": "记录"})
        for case_id in (2**63, 2**64 + 1):
            for route in ("messages", "notes", "claim"):
                response = await console.post(f"/console/api/cases/{case_id}/{route}", body, console.who)
                answers.append((case_id, route, response.status))
        assert all(status == 404 for *_, status in answers), answers

    console.runner.run(go())


def test_a_body_that_is_not_json_is_refused_with_a_code(console: ConsoleLine) -> None:
    async def go() -> None:
        answers = []
        for route in ("messages", "notes", "close"):
            path = f"/console/api/cases/{console.case_id}/{route}"
            response = await console.post(path, b"{", console.who, known_g=False)
            answers.append((route, response.status, response.text))
        assert all(status == 400 and '"error"' in text for _, status, text in answers), answers

    console.runner.run(go())


def test_supervision_figures_with_any_days(console: ConsoleLine) -> None:
    """A huge integer (or anything) in a query parameter of the console."""
    days = st.one_of(
        st.integers(min_value=-(2**80), max_value=2**80).map(str),
        support.GARBAGE_NO_SURROGATE,
        st.sampled_from(["99999999999999999999999", "1e3", "０７", "14 ", ""]),
    )

    @examples(15)
    @given(days=days)
    def check(days: str) -> None:
        async def go() -> None:
            console.app.asgi_client.cookies.clear()
            _, response = await console.app.asgi_client.get(
                "/console/api/supervision/figures", params={"days": days}, headers=console.who
            )
            support.assert_no_bare_5xx(response)
            support.assert_no_secret(response, console.secrets())
            assert response.status in (200, 400), (response.status, response.text)

        console.runner.run(go())

    check()
