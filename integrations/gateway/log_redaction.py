"""Keeps session tokens and other credentials in URLs out of every log line the gateway's libraries write.

A web chat session token reads the whole conversation, and Sanic's own error and access lines quote the
request's URL with its query string; httpx logs every request it makes at INFO, and Rasa's HTTP API takes
its token in the query. The page sends the session token in a header, but an old page or a script may
still put it in the query, so the values of credential-bearing query parameters are blanked in every
record of these loggers, whatever the level.
"""

from __future__ import annotations

import logging
import re

# Query parameters whose values are credentials: the web chat session, Rasa's token, WeChat's and
# Twilio's signatures, a Telegram secret.
SECRET_PARAMETERS = ("session", "token", "signature", "msg_signature", "secret", "echostr")
_SECRET_IN_QUERY = re.compile(rf"(?i)([?&](?:{'|'.join(SECRET_PARAMETERS)})=)[^&\s'\"]*")
URL_LOGGERS = (
    "sanic.root",
    "sanic.error",
    "sanic.access",
    "sanic.server",
    "sanic.websockets",
    "httpx",
    "httpcore",
)


def redact(text: str) -> str:
    """The text with the value of every credential-bearing query parameter blanked."""
    return _SECRET_IN_QUERY.sub(r"\1<redacted>", text)


class RedactQuerySecrets(logging.Filter):
    """Formats the record's message once, redacted, so no argument can carry a token past it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def redact_server_logs() -> None:
    """Installs the filter on those loggers once (idempotent: tests build many apps)."""
    for name in URL_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactQuerySecrets) for f in logger.filters):
            logger.addFilter(RedactQuerySecrets())
