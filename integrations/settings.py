"""Gateway settings, read from XINQIAO_* environment variables. Secrets have no defaults."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from records.settings import default_database_url


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="XINQIAO_", extra="ignore")

    database_url: str = Field(default_factory=default_database_url)
    rasa_url: str = "http://127.0.0.1:5005"
    rasa_token: SecretStr
    actions_url: str = "http://127.0.0.1:5055"
    session_secret: SecretStr
    # One deadline for all the engine calls one message makes (an orange message makes two): past it the
    # user gets the fail-safe script and the message waits for a retry. Twilio waits 15 s for a webhook.
    engine_timeout_seconds: float = 8.0
    max_text_length: int = 2000
    retry_interval_seconds: float = 15.0
    retry_limit: int = 5
    # A message stored but never answered (its gateway died in between) is answered by the retry worker
    # once it is older than this: longer than any message still in flight takes.
    retry_stale_after_seconds: float = 60.0
    # How often the action server is probed; a reply given while it is down carries the fail-safe too.
    probe_interval_seconds: float = 2.0
    session_max_age_seconds: int = 30 * 24 * 3600
    # The SLA watchdog's round (unclaimed cases, overdue follow-ups); pages are sent at once when a case
    # is stored, and otherwise every dispatch interval (retries, the watchdog's pages).
    watchdog_interval_seconds: float = 5.0
    dispatch_interval_seconds: float = 1.0
    page_max_attempts: int = 8
    # The counsellor console's sign-in cookie: Secure only when served over HTTPS (a deployment sets
    # XINQIAO_CONSOLE_SECURE_COOKIES=true), so that http://127.0.0.1 works on a developer's machine.
    console_secure_cookies: bool = False
    console_session_hours: float = 12.0
    # The address the outside world reaches this gateway at (https://line.example.org), without a
    # trailing slash. Twilio signs the exact public URL, and Telegram and WeChat are told where to post.
    public_url: str | None = None
