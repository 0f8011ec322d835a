"""Gateway settings for tests that build the app in-process: nothing real behind the engine and action
server addresses, background rounds slowed down so only the test decides what runs."""

from __future__ import annotations

from typing import Any

from integrations.settings import GatewaySettings

SESSION_SECRET = "test-secret"


def gateway_settings(database_url: str, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "rasa_url": "http://127.0.0.1:9",  # nothing listens: /healthz must say so
        "actions_url": "http://127.0.0.1:9",
        "rasa_token": "test-token",
        "session_secret": SESSION_SECRET,
        "retry_interval_seconds": 3600,
        "probe_interval_seconds": 3600,
    }
    return GatewaySettings(**{**values, **overrides})
