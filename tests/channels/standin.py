"""A loopback stand-in for a channel's outside service (the Telegram Bot API, Twilio's REST API, WeChat's
API): a real HTTP server on 127.0.0.1 that records every request and answers from canned responses, so
the channel's own library is exercised for real and the test asserts what it sent."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True, slots=True)
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode())


# A canned answer: (status, body as a dict, list or bytes), or a function of the request giving one.
Answer = tuple[int, Any] | Callable[[Recorded], tuple[int, Any]]


@dataclass
class StandIn:
    """Answers by the longest route prefix that matches the path; anything else is 404."""

    routes: dict[str, Answer] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "the stand-in is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def answer(self, prefix: str, answer: Answer) -> None:
        self.routes[prefix] = answer

    def sent_to(self, prefix: str) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith(prefix)]

    async def wait_for(self, prefix: str, count: int = 1, timeout: float = 10.0) -> list[Recorded]:
        """The requests to `prefix` once there are `count` of them; fails after `timeout` seconds. Waits
        without blocking the event loop, so the gateway's dispatchers keep running meanwhile."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.sent_to(prefix)
            if len(found) >= count:
                return found
            await asyncio.sleep(0.02)
        raise AssertionError(f"{len(self.sent_to(prefix))} request(s) to {prefix}, expected {count}")

    def _respond(self, recorded: Recorded) -> tuple[int, Any]:
        self.requests.append(recorded)
        matches = [p for p in self.routes if recorded.path.startswith(p)]
        if not matches:
            return 404, {"error": "no such route in the stand-in"}
        answer = self.routes[max(matches, key=len)]
        return answer(recorded) if callable(answer) else answer

    def start(self) -> None:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                parts = urlsplit(self.path)
                recorded = Recorded(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length) if length else b"",
                )
                status, body = stand_in._respond(recorded)
                payload = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header(
                    "Content-Type", "application/json" if not isinstance(body, bytes) else "text/xml"
                )
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

            def log_message(self, *_: Any) -> None:  # quiet: the test reads `requests`
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def running_stand_in() -> Iterator[StandIn]:
    """For a fixture: `yield from running_stand_in()`."""
    stand_in = StandIn()
    stand_in.start()
    try:
        yield stand_in
    finally:
        stand_in.stop()
