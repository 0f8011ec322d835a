"""What the SMS line and the phone line share: Twilio's settings from the environment, the webhook
signature check against the exact public URL, and the REST client (async, pointed at a stand-in in tests).

Twilio signs the full URL it was configured with plus the POSTed form; behind a proxy the gateway sees
another host, so the URL is rebuilt from XINQIAO_PUBLIC_URL and the request's path and query, never from
the Host header (which a forger controls).
"""

from __future__ import annotations

import logging

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sanic import Request
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

SIGNATURE_HEADER = "X-Twilio-Signature"
# twilio-python logs every REST request at INFO with its query, and a query can hold a phone number (a
# call lookup, a message list): the clients log here instead, and only warnings.
REST_LOG = logging.getLogger(f"{__name__}.rest")
REST_LOG.setLevel(logging.WARNING)


class TwilioSettings(BaseSettings):
    """XINQIAO_TWILIO_*. The SMS line is on when `sms_number` is set, the phone line when `voice_number`
    is; both need the account and its auth token, and the gateway's XINQIAO_PUBLIC_URL."""

    model_config = SettingsConfigDict(env_prefix="XINQIAO_TWILIO_", extra="ignore")

    account_sid: str | None = None
    auth_token: SecretStr | None = None
    sms_number: str | None = None  # E.164, e.g. +8610…; the number students text
    voice_number: str | None = None  # the number students and parents call
    # Only tests change it: the REST API's address (a loopback stand-in).
    api_base_url: str | None = None


def public_url_of(request: Request, public_url: str) -> str:
    """The URL Twilio signed: the configured public address, this request's path and its query."""
    query = f"?{request.query_string}" if request.query_string else ""
    return f"{public_url.rstrip('/')}{request.path}{query}"


def verified_form(request: Request, auth_token: str, public_url: str) -> dict[str, str] | None:
    """The webhook's form fields when Twilio's signature over them is valid; None for a forgery (403)."""
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature:
        return None
    # Twilio signs every parameter, the empty ones too (FromZip, FromCity… are empty for most numbers
    # outside the US); Sanic's `request.form` drops them, so the form is parsed keeping them.
    parsed = request.get_form(keep_blank_values=True) or {}
    form = {name: values[0] for name, values in parsed.items() if values}
    valid = RequestValidator(auth_token).validate(public_url_of(request, public_url), form, signature)
    return form if valid else None


def rest_client(settings: TwilioSettings) -> Client:
    """Twilio's REST client on its async HTTP client, so sending never blocks the event loop. Build it
    in a server listener (it opens a session), and close `client.http_client.session` when stopping."""
    assert settings.account_sid and settings.auth_token, (
        "Twilio needs XINQIAO_TWILIO_ACCOUNT_SID and _AUTH_TOKEN"
    )
    client = Client(
        settings.account_sid, settings.auth_token.get_secret_value(), http_client=AsyncTwilioHttpClient()
    )
    client.http_client.logger = REST_LOG
    if settings.api_base_url:
        client.api.base_url = settings.api_base_url.rstrip("/")
    return client
