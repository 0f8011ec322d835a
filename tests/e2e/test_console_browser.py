"""End to end in a real browser: the counsellor console and the student's web chat page in headless
Chromium (Debian's /usr/bin/chromium, driven by Playwright; `make browser` installs it), against the
real engine, action server and gateway on loopback ports, as `make run` starts them.

A student sends a red message from the web chat page; a volunteer on shift sees the red alert and the
case, takes the conversation over, writes twice (the student's page shows both), reads the student's
answer, writes a note and closes the case. A volunteer not assigned to a case is refused it, and a POST
with a forged CSRF token from the browser is refused. Each step's screenshot is kept in
test-artifacts/console/ at the repository root."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from integrations.launcher import Stack, StackConfig, running
from records.accounts import set_password
from records.db import with_session
from records.migrate import upgrade
from records.models import CounsellorRole
from records.roster import add_counsellor, put_on_call
from tests.e2e.browser import PASSWORD, Pages, artifacts_folder, pages_for, sign_in
from tests.support import require_trained_model

pytestmark = pytest.mark.engine

ON_SHIFT = ["v1", "v2", "v3"]  # three volunteers: every red case is staffed 三包一 by all three
OUTSIDER = "v4"  # a volunteer with a password and no shift: assigned to nothing
RED = "药我已经准备好了，今晚就全吃下去"
FORBIDDEN = "你没有查看这个个案的权限"


@pytest.fixture(scope="module")
def stack(playwright_api: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_trained_model()
    config = StackConfig.isolated(
        tmp_path_factory.mktemp("console-stack"),
        {"XINQIAO_ENGINE_TIMEOUT_SECONDS": "20", "XINQIAO_PROBE_INTERVAL_SECONDS": "0.5"},
    )
    upgrade(config.database_url)

    async def staff(session: Any) -> None:
        await put_on_call(session, volunteers=ON_SHIFT, supervisors=["s1"], supervisors_on_shift=False)
        await add_counsellor(session, OUTSIDER, OUTSIDER, CounsellorRole.VOLUNTEER)
        for handle in [*ON_SHIFT, "s1", OUTSIDER]:
            await set_password(session, handle, PASSWORD)

    asyncio.run(with_session(config.database_url, staff))
    with running(config, timeout=300) as started:
        yield started


@pytest.fixture(scope="module")
def artifacts() -> Path:
    return artifacts_folder("console")


@pytest.fixture
def pages(browser: Any, stack: Stack, artifacts: Path, request: pytest.FixtureRequest) -> Iterator[Pages]:
    with pages_for(request, Pages(browser, stack.config.gateway_url, artifacts)) as opened:
        yield opened


def student_says(page: Any, expect: Callable[..., Any], text: str) -> None:
    """Types into the web chat page and sends, as a student does; waits until the page may send again."""
    page.locator("#text").fill(text)
    page.locator("#send").click()
    expect(page.locator("#log .msg.user").filter(has_text=text)).to_be_visible()
    expect(page.locator("#send")).to_be_enabled()


def test_a_volunteer_takes_a_red_case_over_in_the_console(
    stack: Stack, pages: Pages, playwright_api: Any
) -> None:
    expect = playwright_api.expect

    # 1. A volunteer on shift signs in; the queue is empty.
    console = pages.open("console-v1", "/console")
    sign_in(console, expect, "v1")
    expect(console.get_by_test_id("queue-empty")).to_be_visible()
    pages.shot(console, "01-signed-in")

    # 2. A student opens the web chat page and sends a red message: the red response, then the
    # counsellor is being called.
    chat = pages.open("student", "/")
    student_says(chat, expect, RED)
    expect(chat.locator("#log .msg.bot")).not_to_have_count(0)
    pages.shot(chat, "02-student-red-message")

    # 3. The console raises the red alert and shows the case in the queue.
    expect(console.get_by_test_id("red-alert")).to_be_visible()
    item = console.locator("[data-testid^=queue-item-]")
    expect(item).to_have_count(1)
    case_id = int(item.get_attribute("data-testid").removeprefix("queue-item-"))
    expect(console.get_by_test_id("red-alert-cases")).to_contain_text(f"#{case_id}")
    pages.shot(console, "03-red-alert")
    console.get_by_test_id("red-alert-ack").click()
    expect(console.get_by_test_id("red-alert")).to_be_hidden()

    # The volunteer opens the case (the student's words are there) and takes the conversation over.
    item.click()
    expect(console.get_by_test_id("case-view")).to_be_visible()
    expect(console.get_by_test_id("case-title")).to_contain_text(f"#{case_id}")
    history = console.get_by_test_id("history")
    expect(history).to_contain_text(RED)
    expect(console.get_by_test_id("message-input")).to_be_disabled()
    console.get_by_test_id("case-claim").click()
    expect(console.get_by_test_id("case-release")).to_be_visible()
    expect(console.get_by_test_id("message-input")).to_be_enabled()
    pages.shot(console, "04-claimed")

    # Two messages to the student; the student's page shows both, from the counsellor.
    written = ["我是心桥的心理老师，我在这里陪着你。", "你现在身边有大人吗？药放在哪里了？"]
    for n, text in enumerate(written, start=1):
        console.get_by_test_id("message-input").fill(text)
        console.get_by_test_id("message-send").click()
        expect(console.get_by_test_id("message-input")).to_have_value("")
        expect(console.locator("#history .from-counsellor")).to_have_count(n)
    from_counsellor = chat.locator("#log .msg.counsellor")
    expect(from_counsellor).to_have_text(written)  # the page polls every 4 s
    pages.shot(chat, "05-student-reads-counsellor")

    # The student answers once; the counsellor's history shows it.
    answer = "我妈妈在隔壁房间，药在我书包里"
    student_says(chat, expect, answer)
    expect(history).to_contain_text(answer)
    pages.shot(console, "06-student-answered")

    # A note, then the case closed with an outcome.
    note = "学生已告知药物位置，母亲在家，已建议交给母亲保管"
    console.get_by_test_id("note-input").fill(note)
    console.get_by_test_id("note-save").click()
    expect(console.get_by_test_id("case-notes")).to_contain_text(note)
    console.get_by_test_id("case-close").click()
    console.get_by_test_id("case-outcome").select_option("referred_school")
    console.get_by_test_id("case-close-confirm").click()
    expect(console.get_by_test_id("case-state")).to_have_text("已结案")
    expect(console.locator(f"[data-testid=queue-item-{case_id}]")).to_have_count(0)
    pages.shot(console, "07-closed")

    assert pages.errors == []


def test_an_unassigned_volunteer_is_refused_and_a_forged_csrf_token_is_refused(
    stack: Stack, pages: Pages, playwright_api: Any
) -> None:
    expect = playwright_api.expect
    console = pages.open("console-v2", "/console")
    sign_in(console, expect, "v2")

    # A red case, from a student on the web chat API: staffed by the three volunteers on shift.
    with httpx.Client(base_url=stack.config.gateway_url, timeout=60) as http:
        session = http.post("/api/sessions", json={}).json()["session"]
        message = {"session": session, "message_id": uuid.uuid4().hex, "text": RED}
        sent = http.post("/api/messages", json=message)
    assert sent.status_code == 200, sent.text
    expect(console.get_by_test_id("red-alert")).to_be_visible()
    item = console.locator("[data-testid^=queue-item-]").first
    case_id = int(item.get_attribute("data-testid").removeprefix("queue-item-"))

    # The volunteer with no shift, assigned to nothing, opens the case by its address: forbidden, in the
    # page and from the API with this browser's cookie.
    outsider = pages.open("console-outsider", f"/console#case-{case_id}")
    sign_in(outsider, expect, OUTSIDER)
    expect(outsider.get_by_test_id("case-error")).to_have_text(FORBIDDEN)
    expect(outsider.get_by_test_id("history")).to_be_hidden()
    pages.shot(outsider, "08-outsider-forbidden")
    read = outsider.request.get(f"/console/api/cases/{case_id}")
    assert (read.status, read.json()) == (403, {"error": "forbidden"})

    # An assigned volunteer's own browser, signed in, but with a forged CSRF token: refused, nothing done.
    forged = console.request.post(
        f"/console/api/cases/{case_id}/notes",
        headers={"X-CSRF-Token": "forged-" + uuid.uuid4().hex},
        data={"text": "forged note"},
    )
    assert (forged.status, forged.json()) == (403, {"error": "csrf"})
    from_page = console.evaluate(
        """async (path) => {
            const r = await fetch(path, {method: "POST", credentials: "same-origin",
                headers: {"Content-Type": "application/json", "X-CSRF-Token": "forged"}, body: "{}"});
            return [r.status, await r.json()];
        }""",
        f"/console/api/cases/{case_id}/claim",
    )
    assert from_page == [403, {"error": "csrf"}]
    item.click()
    expect(console.get_by_test_id("history")).to_contain_text(RED)
    expect(console.get_by_test_id("case-claim")).to_be_visible()  # still open: the forged claim did nothing
    expect(console.get_by_test_id("case-notes")).not_to_contain_text("forged note")
    pages.shot(console, "09-forged-csrf-refused")

    assert pages.errors == []
