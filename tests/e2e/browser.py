"""What the browser tests share: Debian's /usr/bin/chromium driven by Playwright (`make browser` installs
it), one browser context a person whose page errors are recorded, screenshots kept in a folder of
test-artifacts/ at the repository root (and of every page when a test fails), and signing in on the
console's page."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "a long enough password"
STEP = 30_000  # ms: generous for a loaded CI machine, bounded so a broken page fails in minutes


def require_browser() -> Any:
    """Playwright's sync API, its assertions waiting up to `STEP`, once Debian's chromium is there. Never a
    silent skip in CI."""
    problem = None
    if not (CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK)):
        problem = f"{CHROMIUM} is missing: run `make browser` as root (make test does it)"
    else:
        try:
            from playwright import sync_api
        except ImportError:
            problem = "playwright is not installed: run `make setup` (its dev extras include it)"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"the console's browser test cannot run: {problem}", pytrace=False)
        pytest.skip(f"the console's browser test needs a browser: {problem}")
    sync_api.expect.set_options(timeout=STEP)
    return sync_api


@contextlib.contextmanager
def chromium(playwright_api: Any) -> Iterator[Any]:
    """Headless Chromium, closed afterwards."""
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield launched
        finally:
            launched.close()


def artifacts_folder(name: str) -> Path:
    """test-artifacts/`name`/, emptied of the screenshots of an earlier run."""
    folder = ROOT / "test-artifacts" / name
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    return folder


class Pages:
    """Browser contexts (one a person: cookies and local storage of their own) that record the page
    errors, and are screenshotted when the test fails. `context_options` go to every new context."""

    def __init__(self, browser: Any, base_url: str, artifacts: Path, **context_options: Any) -> None:
        self.browser, self.base_url, self.artifacts = browser, base_url, artifacts
        self.context_options = context_options
        self.contexts: list[Any] = []
        self.pages: dict[str, Any] = {}
        self.errors: list[str] = []

    def open(self, who: str, path: str) -> Any:
        context = self.browser.new_context(base_url=self.base_url, locale="zh-CN", **self.context_options)
        context.set_default_timeout(STEP)
        self.contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: self.errors.append(f"{who}: {error}"))
        page.goto(path)
        self.pages[who] = page
        return page

    def shot(self, page: Any, name: str) -> None:
        page.screenshot(path=str(self.artifacts / f"{name}.png"), full_page=True)

    def close(self, failed: bool) -> None:
        for who, page in self.pages.items():
            if failed:
                with contextlib.suppress(Exception):  # a screenshot must not hide the failure
                    self.shot(page, f"failed-{who}")
        for context in self.contexts:
            context.close()


@contextlib.contextmanager
def pages_for(request: pytest.FixtureRequest, pages: Pages) -> Iterator[Pages]:
    """`pages` for one test, closed after it (with screenshots if it failed)."""
    failed_before = request.session.testsfailed
    yield pages
    # the test's own report is counted before its fixtures are torn down
    pages.close(failed=request.session.testsfailed > failed_before)


def sign_in(page: Any, expect: Callable[..., Any], handle: str) -> None:
    """Signs in on the console's page, open at its sign-in form, with `PASSWORD`."""
    expect(page.get_by_test_id("login-handle")).to_be_visible()
    page.get_by_test_id("login-handle").fill(handle)
    page.get_by_test_id("login-password").fill(PASSWORD)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("me-name")).to_have_text(handle)
