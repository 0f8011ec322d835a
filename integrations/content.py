"""The texts the gateway shows users, loaded from data/content/gateway.yml (never written in Python)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict

from triage_protocols.directory import hotline_list

CONTENT_FILE = Path(__file__).resolve().parent.parent / "data" / "content" / "gateway.yml"


class ErrorTexts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    empty: str
    too_long: str
    bad_request: str
    bad_session: str
    store_down: str
    session_down: str
    rate_limited: str


class WhoIsWriting(BaseModel):
    """The web chat page's one question at the start: a student or a parent (two buttons)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    question: str
    student: str
    parent: str


class GatewayTexts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    failsafe: str
    no_counsellor_on_shift: str
    with_counsellor_red: str
    slow_down: str
    already_received: str
    who_is_writing: WhoIsWriting
    errors: ErrorTexts


@cache
def gateway_texts() -> GatewayTexts:
    return GatewayTexts.model_validate(yaml.safe_load(CONTENT_FILE.read_text(encoding="utf-8")))


@cache
def failsafe_text() -> str:
    """What a user reads when the engine cannot answer: always with the hotline numbers."""
    return gateway_texts().failsafe.format(hotline_list=hotline_list())
