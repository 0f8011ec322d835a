"""The console's texts, loaded from data/content/console.yml (never written in Python)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

CONTENT_FILE = Path(__file__).resolve().parents[2] / "data" / "content" / "console.yml"


class ConsoleTexts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    quick_replies: tuple[str, ...] = Field(min_length=1)
    hand_back: str = Field(min_length=1)


@cache
def console_texts() -> ConsoleTexts:
    return ConsoleTexts.model_validate(yaml.safe_load(CONTENT_FILE.read_text(encoding="utf-8")))
