"""The log scan itself: it finds a forbidden value in a message, its arguments or its traceback, at any
level, and leaves out only the test client's own request lines."""

from __future__ import annotations

import logging

from tests.fault.conftest import Forbidden, leaks

SESSION = "eyJjIjoiYWJjIn0.session-token-value"


def record(
    name: str, level: int, msg: str, *args: object, exc: BaseException | None = None
) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord(name, level, __file__, 1, msg, args, exc_info)


def registry() -> Forbidden:
    forbidden = Forbidden()
    forbidden.add("web chat session token", SESSION)
    forbidden.add_text("药我已经准备好了，今晚就全吃下去")
    forbidden.add("short values are not looked for", "ab")
    return forbidden


def test_a_forbidden_value_is_found_wherever_a_record_holds_it() -> None:
    try:
        raise ValueError(f"bad token {SESSION}")
    except ValueError as error:
        failure = error
    records = [
        record("integrations.webchat.routes", logging.DEBUG, "session %s", SESSION),
        record("sanic.error", logging.ERROR, "GET /api/messages?session=" + SESSION),
        record("integrations.switchboard", logging.INFO, "text: 药我已经准备好了，今晚就全吃下去"),
        record("integrations.gateway.app", logging.ERROR, "unexpected error", exc=failure),
        record("httpx", logging.INFO, f"HTTP Request: POST http://127.0.0.1:9/x?session={SESSION}"),
    ]
    assert len(leaks(records, registry())) == len(records)


def test_the_test_clients_own_lines_and_clean_lines_pass() -> None:
    records = [
        record(
            "httpx", logging.INFO, f"HTTP Request: GET http://mockserver:1234/api/messages?session={SESSION}"
        ),
        record("integrations.switchboard", logging.INFO, "message %s stored, level %s", 12, "red"),
        record("integrations.channels.sms", logging.INFO, "ab"),
    ]
    assert leaks(records, registry()) == []


def test_the_scan_sees_records_of_the_running_test(forbidden: Forbidden) -> None:
    """The fixture's handler is on the root logger at DEBUG: a product logger's debug line reaches it."""
    captured = [h for h in logging.getLogger().handlers if type(h).__name__ == "Capture"]
    assert captured
    logging.getLogger("integrations.fault_scan_probe").debug("a clean line")
    assert any(r.name == "integrations.fault_scan_probe" for r in captured[0].records)  # type: ignore[attr-defined]
