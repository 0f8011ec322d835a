"""End to end in a real browser: the supervisor view in headless Chromium (Debian's /usr/bin/chromium,
driven by Playwright; `make browser` installs it) against the gateway alone, on a loopback port, with a
stand-in engine: the view reads only the store, so Rasa is not needed.

The store holds five cases on known days, one follow-up overdue and a red case whose lead talks with the
child. Signed out, the page points to the console; a volunteer is refused. A supervisor signs in on the
console, opens /console/supervisor and reads the chart, the time-to-claim table, the follow-ups and the
counsellors' load with the numbers expected; then moves the red case's lead to another volunteer: the
conversation goes with it (still held, never handed to the bot) and the load table shows the change.
Each step's screenshot is kept in test-artifacts/supervisor/ at the repository root."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from integrations.launcher import free_port
from records import accounts, escalation, handoff, messages, reports, roster
from records.db import with_session
from records.escalation import Escalation
from records.migrate import upgrade
from records.models import Assignment, CaseStatus, FollowUp, utcnow
from tests.e2e.browser import PASSWORD, Pages, artifacts_folder, pages_for, sign_in
from tests.records.support import write_case
from tests.support import ROOT

# The gateway with a stand-in engine, as the in-process tests build it, on a real socket.
SERVE = """
import sys
from integrations.gateway.app import create_app
from tests.unit.apps import gateway_settings
from tests.unit.fakes import FakeEngine

app = create_app(gateway_settings(sys.argv[1]), engine=FakeEngine(), actions_up=lambda: True, name="supervisor_e2e")
app.run(host="127.0.0.1", port=int(sys.argv[2]), single_process=True, access_log=False, motd=False)
"""


@dataclass
class Line:
    """What the store was given, and what the view must therefore show."""

    url: str
    base_url: str = ""
    ids: dict[str, int] = field(default_factory=dict)
    red_case: int = 0
    red_conversation: str = ""
    per_day: Counter[tuple[str, str]] = field(default_factory=Counter)  # (China day, level) → cases


async def _case(
    session: AsyncSession,
    line: Line,
    level: str,
    opened_at: datetime,
    *,
    lead: int | None = None,
    **given: Any,
) -> int:
    """A case written as it stands, on a conversation of its own (see `write_case`)."""
    case = await write_case(session, level, opened_at, closed_after=timedelta(hours=2), **given)
    if lead is not None:
        session.add(Assignment(case_id=case.id, counsellor_id=lead, role="lead", assigned_at=opened_at))
    await session.commit()
    line.per_day[(reports.china_today(opened_at).isoformat(), level)] += 1
    return case.id


async def _fill(session: AsyncSession, line: Line) -> None:
    people = await roster.put_on_call(session, volunteers=["v1", "v2", "v3", "v4"], supervisors=["s1"])
    for person in people:
        await accounts.set_password(session, person.handle, PASSWORD)
        line.ids[person.handle] = person.id
    now = utcnow()

    # The red case: opened two minutes ago, staffed 三包一 (v1 leads), taken over by v1 a minute later.
    opened = now - timedelta(minutes=2)
    conversation = (await messages.create_conversation(session, "webchat")).id
    result = await escalation.escalate(
        session,
        Escalation(conversation_id=conversation, level="red", origin="screen", reason="test:red"),
        now=opened,
    )
    await session.commit()
    assert result.case_id is not None
    line.red_case, line.red_conversation = result.case_id, conversation
    line.per_day[(reports.china_today(opened).isoformat(), "red")] += 1
    await handoff.take_over(session, result.case_id, line.ids["v1"], now=opened + timedelta(seconds=60))
    session.add(  # a step of a return-to-school plan, due yesterday and not done
        FollowUp(case_id=result.case_id, kind="return_to_school", due_at=now - timedelta(days=1))
    )
    await session.commit()

    # Four more: an orange case waiting (v4 leads it), and three from earlier days.
    await _case(session, line, "orange", now - timedelta(minutes=5), lead=line.ids["v4"])
    # late: red's claim limit is 3 minutes
    await _case(session, line, "red", now - timedelta(days=1), claimed_after=240)
    await _case(session, line, "yellow", now - timedelta(days=1, hours=2), status=CaseStatus.CLOSED)
    await _case(session, line, "red", now - timedelta(days=3), claimed_after=120, status=CaseStatus.CLOSED)


@pytest.fixture(scope="module")
def line(playwright_api: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Line]:
    folder = tmp_path_factory.mktemp("supervisor")
    found = Line(url=f"sqlite+aiosqlite:///{folder / 'xinqiao.db'}")
    upgrade(found.url)
    asyncio.run(with_session(found.url, lambda session: _fill(session, found)))
    port = free_port()
    found.base_url = f"http://127.0.0.1:{port}"
    log = (folder / "gateway.log").open("w")
    gateway = subprocess.Popen(
        [sys.executable, "-c", SERVE, found.url, str(port)],
        cwd=ROOT,
        env=os.environ.copy(),
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if gateway.poll() is not None:
                pytest.fail(
                    f"the gateway stopped: {(folder / 'gateway.log').read_text()[-2000:]}", pytrace=False
                )
            try:
                if httpx.get(f"{found.base_url}/console/supervisor", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the gateway did not start within 60 s", pytrace=False)
            time.sleep(0.2)
        yield found
    finally:
        gateway.terminate()
        try:
            gateway.wait(timeout=15)
        except subprocess.TimeoutExpired:
            gateway.kill()
        log.close()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    return artifacts_folder("supervisor")


@pytest.fixture
def pages(browser: Any, line: Line, artifacts: Path, request: pytest.FixtureRequest) -> Iterator[Pages]:
    viewport = {"width": 1280, "height": 900}
    with pages_for(request, Pages(browser, line.base_url, artifacts, viewport=viewport)) as opened:
        yield opened


def sign_in_on_the_console(page: Any, expect: Any, handle: str) -> None:
    page.goto("/console")
    sign_in(page, expect, handle)


def expect_load(page: Any, expect: Any, counsellor_id: int, **shown: str) -> None:
    """The load table's row of `counsellor_id` shows each column's text (red="1", holding="0", …)."""
    for column, text in shown.items():
        expect(page.get_by_test_id(f"load-{counsellor_id}-{column}")).to_have_text(text)


def test_signed_out_the_page_points_to_the_console_and_a_volunteer_is_refused(
    line: Line, pages: Pages, playwright_api: Any
) -> None:
    expect = playwright_api.expect
    stranger = pages.open("stranger", "/console/supervisor")
    expect(stranger.get_by_test_id("signed-out")).to_be_visible()
    expect(stranger.get_by_test_id("sign-in-link")).to_have_attribute("href", "/console")
    expect(stranger.get_by_test_id("supervisor-view")).to_be_hidden()
    pages.shot(stranger, "01-signed-out")

    volunteer = pages.open("volunteer", "/console")
    sign_in_on_the_console(volunteer, expect, "v2")
    volunteer.goto("/console/supervisor")
    expect(volunteer.get_by_test_id("forbidden")).to_be_visible()
    expect(volunteer.get_by_test_id("supervisor-view")).to_be_hidden()
    pages.shot(volunteer, "02-volunteer-refused")
    assert pages.errors == []


def test_a_supervisor_reads_the_figures_and_moves_a_case_with_its_conversation(
    line: Line, pages: Pages, playwright_api: Any
) -> None:
    expect = playwright_api.expect
    page = pages.open("supervisor", "/console")
    sign_in_on_the_console(page, expect, "s1")
    page.goto("/console/supervisor")
    expect(page.get_by_test_id("supervisor-view")).to_be_visible()
    expect(page.get_by_test_id("me-name")).to_have_text("s1")

    # The chart: 14 days, each day's bar with its cases by level.
    expect(page.get_by_test_id("cases-total")).to_have_text("5")
    expect(page.locator("[data-testid^=day-]")).to_have_count(14)
    for (day, level), n in line.per_day.items():
        expect(page.get_by_test_id(f"bar-{day}-{level}")).to_have_attribute("data-count", str(n))
    for day in {day for day, _ in line.per_day}:
        total = sum(n for (d, _), n in line.per_day.items() if d == day)
        expect(page.get_by_test_id(f"day-{day}")).to_have_attribute("data-total", str(total))
    expect(page.locator(".bar.level-red")).not_to_have_count(0)

    # Time to claim: red claims took 60, 120 and 240 s; the 240 s one was late.
    expect(page.get_by_test_id("claim-red-opened")).to_have_text("3")
    expect(page.get_by_test_id("claim-red-claimed")).to_have_text("3")
    expect(page.get_by_test_id("claim-red-median")).to_have_text("2分0秒")
    expect(page.get_by_test_id("claim-red-p90")).to_have_text("3分36秒")  # 120 + 0.8 × 120
    expect(page.get_by_test_id("claim-red-late")).to_have_text("1")
    expect(page.get_by_test_id("claim-orange-unclaimed")).to_have_text("1")
    expect(page.get_by_test_id("claim-orange-median")).to_have_text("—")
    expect(page.get_by_test_id("claim-yellow-opened")).to_have_text("1")

    # Follow-ups: the red case's first check-in (not due yet) and the overdue return-to-school step.
    expect(page.get_by_test_id("follow-ups-open")).to_have_text("2")
    expect(page.get_by_test_id("follow-ups-overdue")).to_have_text("1")
    expect(page.get_by_test_id("overdue-box")).to_have_class("overdue-box alarm")
    expect(page.get_by_test_id("follow-up-return_to_school-overdue")).to_have_text("1")
    expect(page.get_by_test_id("follow-up-check_in-overdue")).to_have_text("0")

    # Load: v1 leads the red case and talks with the child; v4 leads the orange one.
    v1, v4 = line.ids["v1"], line.ids["v4"]
    expect_load(page, expect, v1, red="1", holding="1", shift="在班")
    expect_load(page, expect, v4, orange="1", red="0", holding="0")
    pages.shot(page, "03-figures")

    # A case that does not exist is refused in words.
    page.get_by_test_id("reassign-case").fill("999999")
    page.get_by_test_id("reassign-counsellor").select_option(str(v4))
    page.get_by_test_id("reassign-submit").click()
    expect(page.get_by_test_id("reassign-error")).to_have_text("找不到这个个案")

    # The red case's lead goes to v4, and the conversation with it.
    page.get_by_test_id("reassign-case").fill(str(line.red_case))
    page.get_by_test_id("reassign-role").select_option("lead")
    page.get_by_test_id("reassign-counsellor").select_option(str(v4))
    page.get_by_test_id("reassign-submit").click()
    expect(page.get_by_test_id("reassign-result")).to_contain_text(
        f"个案 #{line.red_case} 的主责老师已交给 v4"
    )
    expect(page.get_by_test_id("reassign-result")).to_contain_text("助手仍然暂停")
    expect(page.get_by_test_id("reassign-error")).to_be_hidden()
    expect_load(page, expect, v4, red="1", holding="1")
    expect_load(page, expect, v1, red="0", holding="0")
    pages.shot(page, "04-reassigned")

    # Someone already on the case in another role is refused.
    page.get_by_test_id("reassign-role").select_option("second")
    page.get_by_test_id("reassign-submit").click()
    expect(page.get_by_test_id("reassign-error")).to_have_text("这位老师已经在这个个案里担任其他角色")
    pages.shot(page, "05-refused")

    # The store agrees: v4 leads, has the claim and holds the conversation (the bot was never given it).
    read = page.request.get(f"/console/api/cases/{line.red_case}")
    assert read.status == 200
    case = read.json()
    assert (case["case"]["claimed_by"], case["case"]["held_by"]) == (v4, v4)
    assert {a["role"]: a["counsellor_id"] for a in case["assignments"]}["lead"] == v4
    assert pages.errors == []
