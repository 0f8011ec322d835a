"""What a CollectingDispatcher holds after an action ran, spelled out, so tests compare messages exactly."""

from __future__ import annotations

from typing import Any

_EMPTY = {"elements": [], "custom": {}, "image": None, "attachment": None}


def text(value: str, buttons: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """A plain text the action wrote itself (from a content file)."""
    return {"text": value, "buttons": buttons or [], "template": None, "response": None, **_EMPTY}


def response(name: str, **kwargs: Any) -> dict[str, Any]:
    """A domain response the action named; Rasa renders it, with `kwargs` filling its {variables}."""
    return {"text": None, "buttons": [], "template": name, "response": name, **_EMPTY, **kwargs}
