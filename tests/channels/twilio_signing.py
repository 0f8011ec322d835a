"""Twilio's webhooks for tests of the SMS and phone lines: an incoming message's parameters as Twilio
documents them, and the `X-Twilio-Signature` header over the exact URL Twilio was configured with and the
POSTed form, computed by twilio-python's own `RequestValidator` with the test's auth token."""

from __future__ import annotations

import uuid

from twilio.request_validator import RequestValidator

from integrations.channels.twilio_common import SIGNATURE_HEADER
from tests.channels.standin import Recorded


def signed_headers(url: str, form: dict[str, str], token: str) -> dict[str, str]:
    """The headers Twilio would send with `form` posted to `url`."""
    return {SIGNATURE_HEADER: RequestValidator(token).compute_signature(url, form)}


def incoming_sms(
    body: str, *, sender: str, to: str, account_sid: str, sid: str | None = None, **extra: str
) -> dict[str, str]:
    """An incoming-message webhook's parameters as Twilio documents them (the empty ones included: Twilio
    signs them too)."""
    sid = sid or "SM" + uuid.uuid4().hex
    return {
        "ToCountry": "US",
        "ToState": "CA",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ToCity": "SAN FRANCISCO",
        "FromZip": "",
        "SmsSid": sid,
        "FromState": "",
        "SmsStatus": "received",
        "FromCity": "",
        "Body": body,
        "FromCountry": "CN",
        "To": to,
        "MessagingServiceSid": "",
        "ToZip": "94105",
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": account_sid,
        "From": sender,
        "ApiVersion": "2010-04-01",
        **extra,
    }


def message_created(request: Recorded, account_sid: str) -> tuple[int, dict[str, str]]:
    """What Twilio's Messages API answers to a create (a trimmed copy of its documented 201 body)."""
    form = {key: values[0] for key, values in request.form().items()}
    return 201, {
        "sid": "SM" + uuid.uuid4().hex,
        "account_sid": account_sid,
        "to": form.get("To", ""),
        "from": form.get("From", ""),
        "body": form.get("Body", ""),
        "status": "queued",
        "num_segments": "1",
        "direction": "outbound-api",
        "api_version": "2010-04-01",
    }
