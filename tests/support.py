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


# Which reader a domain file's unconditional replies are written for (the rest are for either).
FILE_READER = {"responses_student.yml": "student", "responses_parent.yml": "parent"}


@cache
def written_for() -> dict[str, str]:
    """Every text a domain response may send, and the reader it is written for: "student", "parent" or
    "either". A variation with an audience condition is for that audience; an unconditional one is for
    the other reader when the response also has a conditional one for a reader (the default is the
    other's wording), else for the reader its name says (utter_self_check_parent), else for the reader
    its file is named for (responses_student.yml, responses_parent.yml), else for either. The parent
    guidance and the referrals (data/guidance) are for a parent."""
    from actions.guidance import all_answers, sections

    readers: dict[str, str] = {}
    for path in sorted((ROOT / "bot" / "domain").glob("*.yml")):
        for name, variations_ in (yaml.safe_load(path.read_text(encoding="utf-8")).get("responses") or {}).items():
            conditional = {
                c.get("value") for v in variations_ for c in v.get("condition") or [] if c.get("name") == "audience"
            }
            for variation in variations_:
                if "text" not in variation:
                    continue
                named = [c.get("value") for c in variation.get("condition") or [] if c.get("name") == "audience"]
                if named:
                    reader = named[0]
                elif conditional == {"parent"}:
                    reader = "student"
                elif conditional == {"student"}:
                    reader = "parent"
                else:
                    by_name = next((r for r in ("student", "parent") if r in name.split("_")), None)
                    reader = by_name or FILE_READER.get(path.name, "either")
                readers[variation["text"]] = reader
    for guidance in all_answers().values():
        for text in guidance.messages(sections()):
            readers[text] = "parent"
    return readers


def wrong_reader(text: str, audience: str) -> bool:
    """The text is written for the other reader (a student's reply to a parent, or the reverse). Texts
    with variables are matched by their fixed part before the first variable."""
    readers = written_for()
    reader = readers.get(text)
    if reader is None:
        reader = next((r for t, r in readers.items() if "{" in t and text.startswith(t.split("{", 1)[0])), "either")
    return reader not in ("either", audience)
