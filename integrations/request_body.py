"""What every route reads from a request the same way: its JSON body, and the client's address.

The body is an object, with every string storable.

A body that is not JSON, or not an object, is None (each route answers with its own clear error code,
never Sanic's English page). Every string inside is passed through `storable`: a lone surrogate or a
NUL from a broken client can be neither encrypted, hashed, signed nor stored, and would otherwise turn a
counsellor's note or a child's message into a 503.
"""

from __future__ import annotations

from typing import Any

from sanic import Request

from integrations.inbound import storable

# The largest id a database integer holds: a path or body id beyond it names nothing (404), never a 500.
MAX_ID = 2**63 - 1


def json_object(request: Request) -> dict[str, Any] | None:
    try:
        body = request.json
    except Exception:  # noqa: BLE001 - Sanic raises its own error type for malformed JSON
        return None
    return _storable(body) if isinstance(body, dict) else None


def _storable(value: Any) -> Any:
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable(str(key)): _storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_storable(item) for item in value]
    return value


def client_address(request: Request) -> str:
    """The proxy-reported address when Sanic is configured to trust a proxy, else the peer's: the key of
    the per-address limits (the web chat's, the console's sign-in), never logged."""
    return request.remote_addr or request.ip or "unknown"
