"""Signed console sessions in a cookie, the CSRF token bound to each, and the device cookie that marks a
browser a counsellor has signed in on before.

The session cookie is signed, not encrypted: it holds only ids and a keyed digest. Nothing is kept on the
server, so a session ends when the cookie expires, when the counsellor is set inactive, or when their
password changes (the digest of the password hash in the cookie no longer matches), and logging out
clears the cookie in the browser.

The device cookie (OWASP's "device cookies" against online guessing) is signed too and holds only
counsellor ids and random device ids. A sign-in that carries one for the account it names comes from a
known-good client: its failures count against that device alone, so nobody elsewhere can lock the
counsellor out of their own browser (integrations/console/auth.py). It is sent only to the sign-in
route, outlives sessions (logging out keeps it) and is issued again, with a new device id, on every
successful sign-in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "xq_console"
COOKIE_PATH = "/console"
_SALT = "xinqiao.console.session"
_CSRF_LABEL = b"xinqiao.console.csrf:"
_PASSWORD_LABEL = b"xinqiao.console.password:"

DEVICE_COOKIE = "xq_device"
DEVICE_COOKIE_PATH = "/console/api/login"
DEVICE_MAX_AGE_SECONDS = 180 * 24 * 3600  # a volunteer who signs in once a season stays known
# Counsellors who share one browser (a counselling room's computer) each stay known on it, up to this many.
MAX_DEVICES_PER_COOKIE = 5
_DEVICE_SALT = "xinqiao.console.device"


@dataclass(frozen=True)
class ConsoleSession:
    counsellor_id: int
    session_id: str
    password_marker: str


class ConsoleSessions:
    def __init__(self, secret: str, max_age_seconds: int) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt=_SALT)
        self._key = secret.encode("utf-8")
        self._max_age = max_age_seconds

    @property
    def max_age_seconds(self) -> int:
        return self._max_age

    def issue(self, counsellor_id: int, password_hash: str | None) -> tuple[str, ConsoleSession]:
        """A new cookie value with a fresh random session id (never reused across sign-ins, so a
        planted cookie cannot become a signed-in one); the serializer signs the time it was made."""
        session = ConsoleSession(
            counsellor_id, secrets.token_urlsafe(18), self.password_marker(password_hash)
        )
        value = self._serializer.dumps(
            {"c": session.counsellor_id, "s": session.session_id, "p": session.password_marker}
        )
        return value, session

    def read(self, value: object) -> ConsoleSession | None:
        """The session, or None for a missing, forged, tampered or expired cookie."""
        if not isinstance(value, str) or not value:
            return None
        try:
            data = self._serializer.loads(value, max_age=self._max_age)
        except BadSignature:  # SignatureExpired is one too
            return None
        if not isinstance(data, dict):
            return None
        counsellor_id, session_id, marker = data.get("c"), data.get("s"), data.get("p")
        if type(counsellor_id) is not int or not isinstance(session_id, str) or not isinstance(marker, str):
            return None
        return ConsoleSession(counsellor_id, session_id, marker)

    def password_marker(self, password_hash: str | None) -> str:
        """A keyed digest of the password hash: it changes with the password, and says nothing about it."""
        return self._digest(_PASSWORD_LABEL, password_hash or "")[:22]

    def still_valid(self, session: ConsoleSession, password_hash: str | None) -> bool:
        return hmac.compare_digest(session.password_marker, self.password_marker(password_hash))

    def csrf_token(self, session: ConsoleSession) -> str:
        return self._digest(_CSRF_LABEL, session.session_id)

    def csrf_matches(self, session: ConsoleSession, token: object) -> bool:
        return isinstance(token, str) and hmac.compare_digest(
            token.encode(), self.csrf_token(session).encode()
        )

    def _digest(self, label: bytes, value: str) -> str:
        return hmac.new(self._key, label + value.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Device:
    """One counsellor's mark on one browser."""

    counsellor_id: int
    device_id: str

    @property
    def key(self) -> str:
        """What the sign-in throttle counts this device's failures under."""
        return f"{self.counsellor_id}:{self.device_id}"


class DeviceCookies:
    def __init__(self, secret: str, max_age_seconds: int = DEVICE_MAX_AGE_SECONDS) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt=_DEVICE_SALT)
        self._max_age = max_age_seconds

    @property
    def max_age_seconds(self) -> int:
        return self._max_age

    def read(self, value: object) -> tuple[Device, ...]:
        """The devices the cookie marks, newest first; none for a missing, forged, tampered or expired
        cookie, which is then an untrusted client like any other."""
        if not isinstance(value, str) or not value:
            return ()
        try:
            data = self._serializer.loads(value, max_age=self._max_age)
        except BadSignature:  # SignatureExpired is one too
            return ()
        entries = data.get("d") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            return ()
        devices = (_device(entry) for entry in entries[:MAX_DEVICES_PER_COOKIE])
        return tuple(device for device in devices if device is not None)

    def issue(self, known: tuple[Device, ...], counsellor_id: int) -> str:
        """The cookie after `counsellor_id` signed in: a new device id for them first, then the browser's
        other counsellors, oldest dropped past MAX_DEVICES_PER_COOKIE."""
        others = [d for d in known if d.counsellor_id != counsellor_id]
        devices = [Device(counsellor_id, secrets.token_urlsafe(18)), *others][:MAX_DEVICES_PER_COOKIE]
        return self._serializer.dumps({"d": [[d.counsellor_id, d.device_id] for d in devices]})


def _device(entry: object) -> Device | None:
    if not isinstance(entry, list) or len(entry) != 2:
        return None
    counsellor_id, device_id = entry
    if type(counsellor_id) is not int or not isinstance(device_id, str) or not device_id:
        return None
    return Device(counsellor_id, device_id)
