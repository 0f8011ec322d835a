"""The supervisor view through the real app (sanic-testing) and the real store: the figures and the
counsellors for supervisors and admins only (a volunteer gets 403 on every route), bounded days, and
reassigning a case's role: the claim and the live conversation move to the new counsellor (the bot stays
paused), who is paged once, heard at once on the live feed; bad input, unknown cases and conflicts are
refused. Then the page: served like the console's, with its own files by name only, and no words in its
script."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sanic import Sanic
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from integrations.console.page import SECURITY_HEADERS, SHARED, STATIC_DIR, SUPERVISOR_STATIC
from integrations.console.sessions import COOKIE
from integrations.inbound import InboundMessage
from integrations.paging.dispatcher import PageDispatcher
from records import escalation, handoff, messages, reports, supervision
from records.db import with_session
from records.escalation import Escalation
from records.models import Assignment, AuditEntry, Counsellor, OutboxItem
from tests.unit.console_client import PASSWORD, RED, Console, Sessions, console_app, console_for, staff_line
from tests.unit.test_console_page import (
    CJK,
    PAGE_SOURCE,
    api_calls,
    assert_no_inline_code,
    assert_served_as_a_page,
    assert_writes_no_markup,
    get_static,
    is_route,
    parse,
    resources,
    unique_test_ids,
)

FIGURES = "/console/api/supervision/figures"
COUNSELLORS = "/console/api/supervision/counsellors"
HTML = (STATIC_DIR / "supervisor.html").read_text(encoding="utf-8")
SCRIPT = (STATIC_DIR / "supervisor.js").read_text(encoding="utf-8")
STYLE = (STATIC_DIR / "supervisor.css").read_text(encoding="utf-8")


def reassign_path(case_id: int) -> str:
    return f"/console/api/supervision/cases/{case_id}/reassign"


@pytest.fixture
def console(database_url: str, sessions: Sessions) -> Console:
    return console_for(database_url, sessions, "sup", admins=["a1"])


@pytest.fixture
def woken(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the page dispatcher's wake-ups (the app makes its dispatcher anew for each test request)."""
    calls: list[int] = []
    original = PageDispatcher.wake

    def wake(self: PageDispatcher) -> None:
        calls.append(1)
        original(self)

    monkeypatch.setattr(PageDispatcher, "wake", wake)
    return calls


async def _start(console: Console) -> tuple[str, int, dict[str, int]]:
    conversation, case_id, _, _ = await console.start()
    return conversation, case_id, await console.staff_of(case_id)


# ---- who may ----------------------------------------------------------------------------------------


async def test_a_volunteer_is_refused_every_route_and_a_stranger_is_signed_out(console: Console) -> None:
    _, case_id, staff = await _start(console)
    volunteer = await console.sign_in(console.handle_of(staff["lead"]))
    body = {"role": "second", "counsellor_id": console.ids["v4"]}
    for response in (
        await console.get(FIGURES, volunteer),
        await console.get(COUNSELLORS, volunteer),
        await console.post(reassign_path(case_id), volunteer, body),
    ):
        assert (response.status, response.json) == (403, {"error": "forbidden"})
    for response in (
        await console.get(FIGURES),
        await console.get(COUNSELLORS),
        await console.post(reassign_path(case_id), None, body),
    ):
        assert (response.status, response.json) == (401, {"error": "signed_out"})
    assert await console.staff_of(case_id) == staff


async def test_an_admin_may_read_the_figures(console: Console) -> None:
    await _start(console)
    admin = await console.sign_in("a1")
    assert (await console.get(FIGURES, admin)).status == 200
    assert (await console.get(COUNSELLORS, admin)).status == 200


# ---- figures ----------------------------------------------------------------------------------------


async def test_the_figures_show_the_red_case_and_no_words_or_conversation_ids(console: Console) -> None:
    conversation, _, staff = await _start(console)
    response = await console.get(FIGURES, await console.sign_in("s1"))
    assert response.status == 200
    found = response.json
    assert found["levels"] == ["red", "orange", "yellow", "green"]
    assert (found["days"], len(found["cases_per_day"])) == (14, 14)
    assert found["cases_per_day"][-1]["levels"] == {"red": 1, "orange": 0, "yellow": 0, "green": 0}
    assert sum(day["total"] for day in found["cases_per_day"]) == 1
    red = found["time_to_claim"][0]
    assert (red["level"], red["opened"], red["claimed"], red["unclaimed"], red["median_seconds"]) == (
        "red",
        1,
        0,
        1,
        None,
    )
    assert found["follow_ups"]["by_kind"][0] == {"kind": "check_in", "open": 1, "overdue": 0}
    load = {row["id"]: row for row in found["load"]}
    assert set(load) == set(console.ids.values())
    for counsellor_id in staff.values():
        assert load[counsellor_id]["open_cases"]["red"] == 1 and load[counsellor_id]["on_shift"] is True
    assert load[console.ids["a1"]]["on_shift"] is False
    text = json.dumps(found, ensure_ascii=False)
    assert RED not in text and conversation not in text


@pytest.mark.parametrize("days", ["0", "91", "-1", "x", "1.5", "７", "0014", "1e1"])
async def test_days_outside_one_to_ninety_are_refused(console: Console, days: str) -> None:
    await _start(console)
    response = await console.get(f"{FIGURES}?days={days}", await console.sign_in("s1"))
    assert (response.status, response.json) == (400, {"error": "bad_request"})


@pytest.mark.parametrize("days", [1, 30, 90])
async def test_days_within_bounds(console: Console, days: int) -> None:
    await _start(console)
    response = await console.get(f"{FIGURES}?days={days}", await console.sign_in("s1"))
    assert response.status == 200 and len(response.json["cases_per_day"]) == days


async def test_the_counsellors_a_case_can_go_to(console: Console) -> None:
    await _start(console)
    async with console.sessions() as session:
        session.add(Counsellor(handle="gone", display_name="gone", active=False))
        await session.commit()
    response = await console.get(COUNSELLORS, await console.sign_in("s1"))
    listed = response.json["counsellors"]
    assert {c["id"] for c in listed} == set(console.ids.values())  # not the inactive one
    assert {c["id"]: (c["role"], c["on_shift"]) for c in listed}[console.ids["v1"]] == ("volunteer", True)
    assert {c["id"]: (c["role"], c["on_shift"]) for c in listed}[console.ids["a1"]] == ("admin", False)
    assert set(listed[0]) == {"id", "display_name", "role", "on_shift"}


# ---- reassigning ------------------------------------------------------------------------------------


async def test_reassigning_the_lead_moves_the_live_talk_and_pages_the_newcomer_once(
    console: Console, woken: list[int]
) -> None:
    conversation, case_id, staff = await _start(console)
    lead = console.handle_of(staff["lead"])
    newcomer = console.free_volunteer(staff)
    old = await console.sign_in(lead)
    assert (await console.post(f"/console/api/cases/{case_id}/claim", old, {})).status == 200
    assert conversation in console.engine.paused
    woken.clear()

    supervisor = await console.sign_in("s1")
    moved = await console.post(
        reassign_path(case_id), supervisor, {"role": "lead", "counsellor_id": console.ids[newcomer]}
    )
    assert moved.status == 200, moved.json
    assert moved.json == {
        "case_id": case_id,
        "role": "lead",
        "from_counsellor_id": staff["lead"],
        "counsellor_id": console.ids[newcomer],
        "moved_claim": True,
        "moved_hold": True,
    }
    assert woken == [1]
    assert conversation in console.engine.paused  # the bot was never given the child back
    assert (await console.staff_of(case_id))["lead"] == console.ids[newcomer]

    # The newcomer writes to the child; the one who left is off the case and may not even open it.
    new = await console.sign_in(newcomer)
    written = await console.post(
        f"/console/api/cases/{case_id}/messages", new, {"text": "我在，我们继续聊。"}
    )
    assert written.status == 201
    refused = await console.post(f"/console/api/cases/{case_id}/messages", old, {"text": "还在吗"})
    assert (refused.status, refused.json["error"]) == (403, "forbidden")
    # The child's next message goes to the newcomer, not to the bot.
    calls_before = len(console.engine.calls)
    await console.app.ctx.switchboard.receive(InboundMessage("webchat", uuid.uuid4().hex, conversation, "嗯"))
    assert len(console.engine.calls) == calls_before
    async with console.sessions() as session:
        assert await handoff.holder_of(session, conversation) == console.ids[newcomer]
    assert console.app.ctx.alerts.chat[-1].counsellor_id == console.ids[newcomer]

    async with console.sessions() as session:
        pages = list(await session.scalars(select(OutboxItem).where(OutboxItem.case_id == case_id)))
        entries = list(
            await session.scalars(select(AuditEntry).where(AuditEntry.action == supervision.REASON))
        )
    reassigned = [p for p in pages if p.payload.get("reason") == supervision.REASON]
    assert [p.counsellor_id for p in reassigned] == [console.ids[newcomer]]
    [entry] = entries
    assert entry.actor == f"counsellor:{console.ids['s1']}"
    assert entry.detail["moved_hold"] is True and RED not in json.dumps(entry.detail, ensure_ascii=False)


async def test_an_empty_role_is_filled_from_the_console(console: Console) -> None:
    await console.staff()
    await console.sign_in("s1")
    async with console.sessions() as session:  # a yellow case opens when asked for: 二包一
        conversation = (await messages.create_conversation(session, "webchat")).id
        opened = await escalation.escalate(
            session,
            Escalation(conversation_id=conversation, level="yellow", origin="handoff", reason="test:ask"),
        )
        await session.commit()
    assert opened.case_id is not None
    staff = await console.staff_of(opened.case_id)
    assert set(staff) == {"lead", "second"}
    newcomer = console.ids[console.free_volunteer(staff)]
    response = await console.post(
        reassign_path(opened.case_id),
        await console.sign_in("s1"),
        {"role": "third", "counsellor_id": newcomer},
    )
    assert response.status == 200 and response.json["from_counsellor_id"] is None
    assert (await console.staff_of(opened.case_id))["third"] == newcomer


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {},
        {"role": "lead"},
        {"counsellor_id": 1},
        {"role": "boss", "counsellor_id": 1},
        {"role": "lead", "counsellor_id": "1"},
        {"role": "lead", "counsellor_id": True},
        {"role": "lead", "counsellor_id": -1},
        {"role": "lead", "counsellor_id": 1.0},
    ],
)
async def test_bad_input_is_refused(console: Console, body: Any) -> None:
    _, case_id, staff = await _start(console)
    response = await console.post(reassign_path(case_id), await console.sign_in("s1"), body)
    assert (response.status, response.json) == (400, {"error": "bad_request"})
    assert await console.staff_of(case_id) == staff


async def test_unknown_cases_conflicts_and_forged_tokens_are_refused(
    console: Console, woken: list[int]
) -> None:
    _, case_id, staff = await _start(console)
    supervisor = await console.sign_in("s1")
    free = console.ids[console.free_volunteer(staff)]

    async def attempt(case: int, role: str, to: int, who: dict[str, str] = supervisor) -> tuple[int, Any]:
        response = await console.post(reassign_path(case), who, {"role": role, "counsellor_id": to})
        return response.status, response.json

    woken.clear()
    assert await attempt(999_999, "lead", free) == (404, {"error": "no_case"})
    assert await attempt(case_id, "lead", staff["second"]) == (409, {"error": "already_on_case"})
    assert await attempt(case_id, "lead", staff["lead"]) == (409, {"error": "already_in_role"})
    assert await attempt(case_id, "lead", 999_999) == (409, {"error": "no_counsellor"})
    forged = {**supervisor, "X-CSRF-Token": "forged"}
    assert await attempt(case_id, "lead", free, forged) == (403, {"error": "csrf"})
    lead = await console.sign_in(console.handle_of(staff["lead"]))
    closed = await console.post(f"/console/api/cases/{case_id}/close", lead, {"outcome": "resolved"})
    assert closed.status == 200
    assert await attempt(case_id, "lead", free) == (409, {"error": "closed"})
    assert await console.staff_of(case_id) == staff
    assert woken == []


# ---- the live feed, through a real server -----------------------------------------------------------


def test_the_newcomer_hears_of_the_reassignment_on_the_live_feed(database_url: str) -> None:
    ids: dict[str, int] = {}

    async def prepare(session: AsyncSession) -> int:
        await staff_line(session, ids)
        conversation = (await messages.create_conversation(session, "webchat")).id
        result = await escalation.escalate(
            session, Escalation(conversation_id=conversation, level="red", origin="screen", reason="test:red")
        )
        await session.commit()
        assert result.case_id is not None
        return result.case_id

    case_id = asyncio.run(with_session(database_url, prepare))
    staff = asyncio.run(with_session(database_url, lambda s: _assigned(s, case_id)))
    newcomer = next(h for h, i in ids.items() if h.startswith("v") and i not in staff)
    app = console_app(database_url, "sup_feed", dispatch_interval_seconds=30)  # only a wake-up sends at once

    def sign_in(handle: str) -> tuple[str, str]:
        _, response = app.test_client.post(
            "/console/api/login", json={"handle": handle, "password": PASSWORD}
        )
        assert response.status == 200, response.json
        return f"{COOKIE}={response.cookies[COOKIE]}", response.json["csrf"]

    supervisor_cookie, csrf = sign_in("s1")
    newcomer_cookie, _ = sign_in(newcomer)
    heard: list[dict[str, Any]] = []

    async def newcomer_listens(ws: Any) -> None:
        url = f"http://127.0.0.1:{app.test_client.port}{reassign_path(case_id)}"
        async with httpx.AsyncClient() as http:
            moved = await http.post(
                url,
                json={"role": "lead", "counsellor_id": ids[newcomer]},
                headers={"cookie": supervisor_cookie, "X-CSRF-Token": csrf},
            )
        assert moved.status_code == 200, moved.text
        while True:  # pages of the case's opening may still arrive: they are not this counsellor's
            event = json.loads(await asyncio.wait_for(ws.recv(), timeout=5))
            heard.append(event)
            if event.get("reason") == supervision.REASON:
                return

    app.test_client.websocket(
        "/console/ws", mimic=newcomer_listens, extra_headers={"cookie": newcomer_cookie}
    )
    assert heard[-1] == {"kind": "page", "case_id": case_id, "level": "red", "reason": "case_reassigned"}


async def _assigned(session: AsyncSession, case_id: int) -> list[int]:
    return list(await session.scalars(select(Assignment.counsellor_id).where(Assignment.case_id == case_id)))


# ---- the page ---------------------------------------------------------------------------------------


@pytest.fixture
def app(sqlite_url: str) -> Sanic:
    return console_app(sqlite_url, "sp")


async def test_the_supervisor_page_is_served_with_the_consoles_security_headers(app: Sanic) -> None:
    _, console_page = await app.asgi_client.get("/console")
    _, response = await app.asgi_client.get("/console/supervisor")
    assert_served_as_a_page(response)
    for header, value in SECURITY_HEADERS.items():
        assert response.headers[header] == value == console_page.headers[header]
    assert response.body.decode("utf-8") == HTML

    page = parse(HTML)
    assert_no_inline_code(page)
    assert sorted(resources(page)) == sorted(
        f"/console/static/{name}" for name in {**SHARED, **SUPERVISOR_STATIC}
    )
    # the shared API client runs before the view's script, which uses it
    srcs = [attrs["src"] for tag, attrs in page.tags if tag == "script"]
    assert srcs == ["/console/static/api.js", "/console/static/supervisor.js"]


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("supervisor.js", "text/javascript; charset=utf-8"),
        ("supervisor.css", "text/css; charset=utf-8"),
        ("api.js", "text/javascript; charset=utf-8"),
    ],
)
async def test_its_files_are_served_by_name_with_their_types(
    app: Sanic, name: str, content_type: str
) -> None:
    await get_static(app, name, content_type)


@pytest.mark.parametrize(
    "path",
    [
        "/console/static/supervisor.html",  # in the folder, but the page has its own address
        "/console/static/index.html",
        "/console/static/supervisor.js.map",
        "/console/static/..%2fsupervision.py",
        "/console/static/%2e%2e%2fsupervision.py",
        "/console/static/supervisor.js%00.py",
        "/console/supervisor/../page.py",
    ],
)
async def test_nothing_else_is_served(app: Sanic, path: str) -> None:
    _, response = await app.asgi_client.get(path)
    assert response.status in (400, 404)
    assert b"<html" not in response.body


def test_every_element_a_test_reads_has_its_id() -> None:
    test_ids = unique_test_ids(parse(HTML))
    for control in (
        "signed-out",
        "sign-in-link",
        "forbidden",
        "supervisor-view",
        "days",
        "cases-chart",
        "cases-total",
        "claim-rows",
        "follow-ups-open",
        "follow-ups-overdue",
        "load-rows",
        "reassign-case",
        "reassign-role",
        "reassign-counsellor",
        "reassign-submit",
        "reassign-result",
        "reassign-error",
    ):
        assert control in test_ids, control
    for made in ("`day-${", "`bar-${", "`claim-row-${", "`load-row-${", "`follow-up-${"):
        assert made in SCRIPT, made


def test_every_word_is_in_the_page_and_none_in_the_script() -> None:
    assert not CJK.search(SCRIPT), "a word in supervisor.js: it belongs in supervisor.html"
    assert not CJK.search((STATIC_DIR / "api.js").read_text(encoding="utf-8")), "a word in api.js"
    assert not CJK.search(PAGE_SOURCE.read_text(encoding="utf-8"))
    page = parse(HTML)
    levels = [a["data-level"] for t, a in page.tags if a.get("data-level")]
    assert levels == list(reports.LEVELS)
    roles = {a["data-role"] for _, a in page.tags if a.get("data-role")}
    assert roles == {"volunteer", "supervisor", "admin", "lead", "second", "third"}
    kinds = {a["data-kind"] for _, a in page.tags if a.get("data-kind")}
    assert kinds == set(reports.FOLLOW_UP_KINDS)
    codes = {a["data-code"] for _, a in page.tags if a.get("data-code")}
    refusals = set(
        re.findall(r'CaseError\("(\w+)"\)', Path(supervision.__file__).read_text(encoding="utf-8"))
    )
    assert refusals <= codes and {"bad_request", "csrf", "network", "server", "unknown"} <= codes
    offered = [a["value"] for t, a in page.tags if t == "option" and a.get("value")]
    assert offered[-3:] == ["lead", "second", "third"]


def test_every_api_path_the_script_calls_is_a_route(app: Sanic) -> None:
    called = api_calls(SCRIPT)
    assert len(called) == 4
    for method, path in called:
        assert is_route(app, method, path), f"{method} {path}"


def test_the_script_writes_no_markup_and_loads_nothing_from_elsewhere() -> None:
    assert_writes_no_markup(SCRIPT)
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", SCRIPT + HTML + STYLE)
    assert "@import" not in STYLE
