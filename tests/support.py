"""Helpers the engine and end-to-end tests share: where things are, free ports, the domain's replies."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ENGINE_PYTHON = ROOT / ".venv-engine" / "bin" / "python"
RASA = ROOT / ".venv-engine" / "bin" / "rasa"
MODELS = ROOT / "bot" / "models"


def require_trained_model() -> None:
    """The engine tests need `make model` first; `make test` does it. Never a silent skip."""
    if not RASA.exists():
        pytest.fail("the engine environment is missing: run `make setup` (make test does it)", pytrace=False)
    if not list(MODELS.glob("*.tar.gz")):
        pytest.fail("no trained model in bot/models: run `make model` (make test does it)", pytrace=False)


@cache
def domain_responses() -> dict[str, list[dict[str, Any]]]:
    responses: dict[str, Any] = {}
    for path in sorted((ROOT / "bot" / "domain").glob("*.yml")):
        responses.update(yaml.safe_load(path.read_text(encoding="utf-8")).get("responses") or {})
    return responses


def variations(name: str, audience: str | None = None, **values: str) -> set[str]:
    """Every text the engine may send to this audience for a response, with its {variables} filled in.

    Mirrors Rasa's choice: variations whose slot condition matches win; the unconditional ones are
    used only when none matches.
    """

    def matches(variation: dict[str, Any]) -> bool:
        return all(c.get("name") == "audience" and c.get("value") == audience for c in variation["condition"])

    every = domain_responses()[name]
    chosen = [v for v in every if v.get("condition") and matches(v)] or [
        v for v in every if not v.get("condition")
    ]
    return {v["text"].format(**values) if values else v["text"] for v in chosen}
