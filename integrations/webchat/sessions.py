"""Signed web chat sessions. The token names a conversation; only the gateway can mint one."""

from __future__ import annotations

from itsdangerous import BadSignature, URLSafeTimedSerializer

_SALT = "xinqiao.webchat.session"


class SessionTokens:
    def __init__(self, secret: str, max_age_seconds: int) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt=_SALT)
        self._max_age = max_age_seconds

    def issue(self, conversation_id: str) -> str:
        return self._serializer.dumps({"c": conversation_id})

    def conversation_of(self, token: object) -> str | None:
        """The conversation id, or None for a missing, forged or expired token."""
        if not isinstance(token, str) or not token:
            return None
        try:
            data = self._serializer.loads(token, max_age=self._max_age)
        except (BadSignature, UnicodeError):  # a lone surrogate cannot even be encoded: forged all the same
            return None
        conversation = data.get("c") if isinstance(data, dict) else None
        return conversation if isinstance(conversation, str) else None
