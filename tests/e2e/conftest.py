"""The browser fixtures of the browser tests (tests/e2e/browser.py holds the rest of what they share)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.browser import chromium, require_browser


@pytest.fixture(scope="module")
def playwright_api() -> Any:
    """Playwright's sync API. A module's stack takes it first, so no engine or gateway is started for a
    test that cannot run (and CI fails instead of skipping)."""
    return require_browser()


@pytest.fixture(scope="module")
def browser(playwright_api: Any) -> Iterator[Any]:
    with chromium(playwright_api) as launched:
        yield launched
