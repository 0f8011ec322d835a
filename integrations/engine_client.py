"""The gateway's client for the dialogue engine (Rasa's REST channel and HTTP API) and the action server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx


class EngineUnavailable(RuntimeError):
    """The engine did not answer in time, answered with an error, or answered with nothing at all."""


@dataclass(frozen=True, slots=True)
class BotReply:
    text: str
    buttons: list[dict[str, str]] = field(default_factory=list)

    def payload(self) -> dict[str, Any] | None:
        return {"buttons": self.buttons} if self.buttons else None


def parse_replies(body: Any) -> list[BotReply]:
    """Rasa's REST channel answers with a list of message dicts; only text and buttons are shown."""
    if not isinstance(body, list):
        raise EngineUnavailable("unexpected reply shape")
    replies: list[BotReply] = []
    for item in body:
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            continue
        buttons = [
            {"title": str(b.get("title", "")), "payload": str(b.get("payload", ""))}
            for b in item.get("buttons") or []
            if isinstance(b, dict)
        ]
        replies.append(BotReply(text=item["text"], buttons=buttons))
    return replies


class RasaClient:
    """Talks to one Rasa server. The HTTP client is made by the caller, once, in a server listener."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, token: str, timeout: float) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._token = token
        self._timeout = timeout

    async def send(self, sender_id: str, text: str, metadata: dict[str, Any]) -> list[BotReply]:
        """One user turn. An empty answer counts as a failure: every turn of ours has a reply."""
        try:
            response = await self._http.post(
                f"{self._base}/webhooks/rest/webhook",
                json={"sender": sender_id, "message": text, "metadata": metadata},
                timeout=self._timeout,
            )
            response.raise_for_status()
            replies = parse_replies(response.json())
        except (httpx.HTTPError, ValueError) as error:
            raise EngineUnavailable(type(error).__name__) from error
        if not replies:
            raise EngineUnavailable("empty reply")
        return replies

    async def trigger(self, sender_id: str, intent: str, entities: dict[str, Any]) -> list[BotReply]:
        """Runs an external intent in the conversation (Rasa's HTTP API, behind the token) and returns
        what the bot said. The triage gate uses it so the crisis rules fire whatever the NLU predicts."""
        try:
            response = await self._http.post(
                f"{self._base}/conversations/{sender_id}/trigger_intent",
                params={"token": self._token, "include_events": "NONE"},
                json={"name": intent, "entities": entities},
                timeout=self._timeout,
            )
            response.raise_for_status()
            replies = parse_replies(response.json().get("messages"))
        except (httpx.HTTPError, ValueError, AttributeError) as error:
            raise EngineUnavailable(type(error).__name__) from error
        if not replies:
            raise EngineUnavailable("empty reply")
        return replies

    async def active_loop(self, sender_id: str) -> str | None:
        """The form the conversation is in, if any (Rasa's tracker, without its events)."""
        try:
            response = await self._http.get(
                f"{self._base}/conversations/{sender_id}/tracker",
                params={"token": self._token, "include_events": "NONE"},
                timeout=self._timeout,
            )
            response.raise_for_status()
            return (response.json().get("active_loop") or {}).get("name")
        except (httpx.HTTPError, ValueError, AttributeError) as error:
            raise EngineUnavailable(type(error).__name__) from error

    async def set_audience(self, sender_id: str, audience: str) -> None:
        """Starts the conversation's session in the engine knowing who writes (Rasa's `audience` slot),
        before its first turn. Rasa orders a tracker's events by their time, and a session start made for
        a slot event would come after it and reset it, so the session start is sent first in the same
        list; the slot comes before the `action_listen` that waits for the first message, because Rasa's
        fallback rewinds a misunderstood message back to that `action_listen` and would drop the slot
        with it. It goes through Rasa's own HTTP API and needs no action server: a conversation that
        begins while the action server is down still follows its rules."""
        await self._events(
            sender_id,
            [
                {"event": "action", "name": "action_session_start"},
                {"event": "session_started"},
                {"event": "slot", "name": "audience", "value": audience},
                {"event": "action", "name": "action_listen"},
            ],
        )

    async def pause(self, sender_id: str) -> None:
        """Pauses the conversation in Rasa while a counsellor holds it: Rasa still logs what it is sent,
        but runs no action. The switchboard does not send it the child's messages meanwhile; this is
        the second lock on the same door."""
        await self._event(sender_id, "pause")

    async def resume(self, sender_id: str) -> None:
        await self._event(sender_id, "resume")

    async def _event(self, sender_id: str, event: str) -> None:
        await self._events(sender_id, [{"event": event}])

    async def _events(self, sender_id: str, events: list[dict[str, Any]]) -> None:
        try:
            response = await self._http.post(
                f"{self._base}/conversations/{sender_id}/tracker/events",
                params={"token": self._token, "include_events": "NONE"},
                json=events,
                timeout=self._timeout,
            )
            response.raise_for_status()
        except httpx.HTTPError as error:
            raise EngineUnavailable(type(error).__name__) from error

    async def status(self) -> dict[str, Any]:
        """Rasa's /status (behind the token): which model is loaded."""
        response = await self._http.get(
            f"{self._base}/status", params={"token": self._token}, timeout=self._timeout
        )
        response.raise_for_status()
        return response.json()


async def probe(http: httpx.AsyncClient, url: str, timeout: float = 2.0) -> bool:
    """True when the URL answers 200 within the timeout."""
    try:
        response = await http.get(url, timeout=timeout)
    except httpx.HTTPError:
        return False
    return response.status_code == 200
