"""A stand-in engine for switchboard and gateway tests: records what it was sent, answers or fails."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from integrations.engine_client import BotReply, EngineUnavailable


@dataclass
class FakeEngine:
    replies: list[BotReply] = field(default_factory=lambda: [BotReply("你好，我在。")])
    down: bool = False
    delay: float = 0.0
    trigger_delay: float = 0.0  # how long the crisis path takes to answer
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    triggered: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    loop: str | None = None  # the form Rasa is in
    on_call: Any = None  # an async callable run before answering, to look at the store mid-flight
    paused: set[str] = field(default_factory=set)  # conversations paused for a counsellor
    audiences: dict[str, str] = field(default_factory=dict)  # who writes, as the gateway told the engine

    async def send(self, sender_id: str, text: str, metadata: dict[str, Any]) -> list[BotReply]:
        self.calls.append((sender_id, text, metadata))
        if self.on_call is not None:
            await self.on_call(sender_id, text)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.down:
            raise EngineUnavailable("test: engine down")
        return list(self.replies)

    async def trigger(self, sender_id: str, intent: str, entities: dict[str, Any]) -> list[BotReply]:
        self.triggered.append((sender_id, intent, entities))
        if self.trigger_delay:
            await asyncio.sleep(self.trigger_delay)
        if self.down:
            raise EngineUnavailable("test: engine down")
        return list(self.replies)

    async def set_audience(self, sender_id: str, audience: str) -> None:
        if self.down:
            raise EngineUnavailable("test: engine down")
        self.audiences[sender_id] = audience

    async def active_loop(self, sender_id: str) -> str | None:
        if self.down:
            raise EngineUnavailable("test: engine down")
        return self.loop

    async def pause(self, sender_id: str) -> None:
        if self.down:
            raise EngineUnavailable("test: engine down")
        self.paused.add(sender_id)

    async def resume(self, sender_id: str) -> None:
        if self.down:
            raise EngineUnavailable("test: engine down")
        self.paused.discard(sender_id)
