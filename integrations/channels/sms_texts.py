"""What the SMS line says itself (data/content/channels/sms.yml), checked when loaded: keyword lists,
the help and opt-out texts, the page template. Its own module because the webhook, the splitting and
the opt-outs all read it.
"""

from __future__ import annotations

from functools import cache
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, model_validator

from integrations.channels.base import channel_texts

CHANNEL = "sms"


class KeywordTexts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    help: tuple[str, ...]
    stop: tuple[str, ...]


class PageTexts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str
    claim_by: str
    due_at: str
    time_zone: str
    time_format: str
    levels: dict[str, str]
    reasons: dict[str, str]
    other_reason: str

    @model_validator(mode="after")
    def _templates_format(self) -> PageTexts:
        self.text.format(reason="", case_id="", level="", deadline="")
        self.claim_by.format(time="")
        self.due_at.format(time="")
        ZoneInfo(self.time_zone)
        return self


class SmsTexts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    keywords: KeywordTexts
    help: str
    opted_out: str
    buttons_hint: str
    omitted: str
    page: PageTexts

    @model_validator(mode="after")
    def _templates_format(self) -> SmsTexts:
        self.buttons_hint.format(choices="")
        return self


@cache
def sms_texts() -> SmsTexts:
    return channel_texts(CHANNEL, SmsTexts)
