"""Encryption at rest for what identifies or describes a child: channel addresses, notes, family contacts.

`cryptography`'s Fernet (AES-128-CBC with an HMAC) through MultiFernet, so keys can rotate: the first key
of XINQIAO_ENCRYPTION_KEYS encrypts, every listed key decrypts, and `python -m records rotate-keys`
re-encrypts every stored value under the first key before an old key is dropped. Addresses are also
stored as an HMAC under XINQIAO_LOOKUP_KEY, so a returning sender is found without decrypting anything.

Keys are read from the environment on first use, never at import time and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

KEYS_VARIABLE = "XINQIAO_ENCRYPTION_KEYS"
LOOKUP_VARIABLE = "XINQIAO_LOOKUP_KEY"


class KeysMissing(RuntimeError):
    """No key configured, or none that opens a stored value. On a write SQLAlchemy wraps it in a
    StatementError (its `.orig`); on a read it is raised as is."""


@dataclass(frozen=True)
class Keyring:
    fernet: MultiFernet
    lookup_key: bytes

    @classmethod
    def from_values(cls, keys: str, lookup_key: str) -> Keyring:
        parts = [key.strip() for key in keys.split(",") if key.strip()]
        if not parts or not lookup_key:
            raise KeysMissing(f"set {KEYS_VARIABLE} (Fernet keys, newest first) and {LOOKUP_VARIABLE}")
        return cls(MultiFernet([Fernet(key) for key in parts]), lookup_key.encode())


@cache
def keyring() -> Keyring:
    return Keyring.from_values(os.environ.get(KEYS_VARIABLE, ""), os.environ.get(LOOKUP_VARIABLE, ""))


def reload_keys() -> None:
    """Forgets the cached keys, so the next use reads the environment again (after a rotation)."""
    keyring.cache_clear()


def new_key() -> str:
    return Fernet.generate_key().decode()


def encrypt(plain: str) -> str:
    return keyring().fernet.encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return keyring().fernet.decrypt(token.encode()).decode()
    except InvalidToken as error:  # a key was dropped before rotate-keys ran; never show the token
        raise KeysMissing(f"a stored value cannot be decrypted with the keys in {KEYS_VARIABLE}") from error


def rotate(token: str) -> str:
    """The same value, encrypted under the newest key."""
    return keyring().fernet.rotate(token.encode()).decode()


def lookup_digest(channel: str, address: str) -> str:
    """A keyed digest of a channel address: equal for the same sender, useless without the key."""
    message = f"{channel}\x00{address}".encode()
    return hmac.new(keyring().lookup_key, message, hashlib.sha256).hexdigest()


class EncryptedText(TypeDecorator[str]):
    """A text column stored as a Fernet token. Queries cannot filter on it, by design."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else encrypt(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else decrypt(value)
