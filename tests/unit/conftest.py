"""Fixtures of the custom-action tests: the real domain as Rasa sends it, and a store of record."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from actions import store

DOMAIN_DIR = Path(__file__).resolve().parents[2] / "bot" / "domain"


@cache
def _domain() -> dict[str, Any]:
    merged: dict[str, Any] = {"responses": {}, "slots": {}, "forms": {}, "actions": [], "intents": []}
    for path in sorted(DOMAIN_DIR.glob("*.yml")):
        part = yaml.safe_load(path.read_text(encoding="utf-8"))
        for key in ("responses", "slots", "forms"):
            merged[key].update(part.get(key) or {})
        for key in ("actions", "intents"):
            merged[key].extend(part.get(key) or [])
    return merged


@pytest.fixture(scope="module")
def domain() -> dict[str, Any]:
    """The real domain, merged from bot/domain/*.yml, as Rasa sends it to the action server."""
    return copy.deepcopy(_domain())


@pytest.fixture
def recorded(database_url: str) -> Iterator[str]:
    """Points the actions at this test's database, and back to nothing afterwards."""
    store.use_database(database_url)
    yield database_url
    store._sessions = None
