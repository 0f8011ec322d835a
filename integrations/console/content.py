"""The console's texts, loaded from data/content/console.yml (never written in Python)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

CONTENT_FILE = Path(__file__).resolve().parents[2] / "data" / "content" / "console.yml"


class _Texts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeliveryTexts(_Texts):
    """Under a message pushed to the child's own channel, and on the queue."""

    pending: str = Field(min_length=1)
    retrying: str = Field(min_length=1, pattern=r"\{attempts\}")
    sent: str = Field(min_length=1)
    failed: str = Field(min_length=1)
    failed_hint: str = Field(min_length=1)
    queue_tag: str = Field(min_length=1)


class ReassignedTexts(_Texts):
    """What a counsellor reads when a supervisor gave their role on the open case to someone else."""

    away: str = Field(min_length=1, pattern=r"\{who\}")
    away_unknown: str = Field(min_length=1)


class QueueTexts(_Texts):
    """Marks on a case in the queue."""

    assistant_failed: str = Field(min_length=1)


class ConsoleTexts(_Texts):
    quick_replies: tuple[str, ...] = Field(min_length=1)
    hand_back: str = Field(min_length=1)
    delivery: DeliveryTexts
    reassigned: ReassignedTexts
    queue: QueueTexts

    def for_page(self) -> dict[str, Any]:
        """The texts the console's page shows itself (GET /console/api/texts)."""
        return self.model_dump(include={"delivery", "reassigned", "queue"})


@cache
def console_texts() -> ConsoleTexts:
    return ConsoleTexts.model_validate(yaml.safe_load(CONTENT_FILE.read_text(encoding="utf-8")))
