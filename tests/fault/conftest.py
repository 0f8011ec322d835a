"""The log scan of the fault suite: every log record of every test, at DEBUG, is kept, and after the test
none may hold what the test registered as forbidden (the texts it sent, phone numbers, chat ids, openids,
web chat session tokens, the channels' secrets and tokens, the Rasa token, the session secret).

The root logger is lowered to DEBUG for the test; loggers the product itself holds higher (the store's
drivers, records/db.py; twilio's REST log) keep the level the product gave them, as in production. Only
the test client's own lines are left out: httpx's "HTTP Request:" lines for requests to sanic-testing's
ASGI client (`http://mockserver…`), which in production a provider, not the gateway, would write. The
product's own httpx lines (to the Bot API stand-in, to Rasa) are scanned.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterator

import pytest

from records.migrate import upgrade

TEST_CLIENT_URL = "//mockserver"
_formatter = logging.Formatter()


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def rendered(record: logging.LogRecord) -> str:
    """Everything a log file would show of the record: the message with its arguments, the traceback."""
    try:
        text = record.getMessage()
    except Exception:  # noqa: BLE001 - an unformattable record still shows its parts
        text = f"{record.msg!r} {record.args!r}"
    if record.exc_info:
        text += "\n" + _formatter.formatException(record.exc_info)
    if record.stack_info:
        text += "\n" + record.stack_info
    return text


def from_test_client(record: logging.LogRecord, text: str) -> bool:
    return record.name.startswith("httpx") and TEST_CLIENT_URL in text


class Forbidden:
    """What no log line may contain; tests add to it as they send."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def add(self, what: str, *values: object) -> None:
        for value in values:
            text = str(value)
            # Very short values (a digit, "ab") would match by chance; the tests send long ones too.
            if len(text.strip()) >= 6 and text not in self.values:
                self.values[text] = what

    def add_typed(self, what: str, value: object) -> None:
        """Something a person typed (a password, a handle): when long and varied enough not to occur by
        chance in an id or a digest."""
        if isinstance(value, str) and len(value.strip()) >= 10 and len(set(value)) >= 5:
            self.add(what, value.strip())

    def add_text(self, text: object) -> None:
        """A message's words: only when they are distinctive enough not to occur by chance."""
        if isinstance(text, str):
            stripped = text.strip()
            if len(stripped) >= 8 and not stripped.isascii():
                self.add("message text", stripped)


@pytest.fixture(autouse=True)
def forbidden() -> Iterator[Forbidden]:
    capture = Capture()
    root = logging.getLogger()
    level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    registry = Forbidden()
    try:
        yield registry
    finally:
        root.removeHandler(capture)
        root.setLevel(level)
    if os.environ.get("XINQIAO_FAULT_SCAN_REPORT"):  # what the scan saw, by logger (for a human)
        seen = Counter(f"{r.name}:{r.levelname}" for r in capture.records)
        print(
            f"\nlog scan: {len(capture.records)} records, {len(registry.values)} forbidden values; {dict(seen)}"
        )
    found = leaks(capture.records, registry)
    assert not found, f"{len(found)} log line(s) leak:\n" + "\n".join(dict.fromkeys(found))


def leaks(records: list[logging.LogRecord], registry: Forbidden) -> list[str]:
    """Each record (but the test client's own) that holds a forbidden value, described."""
    found: list[str] = []
    for record in records:
        text = rendered(record)
        if from_test_client(record, text):
            continue
        for value, what in registry.values.items():
            if value in text:
                found.append(f"{record.name} {record.levelname}: {what} {value[:40]!r} in {text[:400]!r}")
                break
    return found


@pytest.fixture
def db(sqlite_url: str) -> str:
    """A migrated SQLite store for one property test (PostgreSQL gets the fixed inputs only)."""
    upgrade(sqlite_url)
    return sqlite_url
