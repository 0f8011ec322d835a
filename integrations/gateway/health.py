"""/healthz: one line per dependency, 200 only when all of them answer.

The store is checked with a write, rolled back: a read-only or full store still answers a SELECT, and
a health check that only reads would call the store fine while no message could be kept.
"""

from __future__ import annotations

import secrets

from sanic import Blueprint, Request
from sanic.response import JSONResponse, json
from sqlalchemy import insert

from records.models import Conversation

health = Blueprint("health")


@health.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    app = request.app
    checks: dict[str, dict[str, object]] = {}
    try:
        async with app.ctx.sessions() as session:
            probe_id = f"healthz-{secrets.token_hex(8)}"  # random: two probes never wait on each other
            await session.execute(insert(Conversation).values(id=probe_id, channel="healthz"))
            await session.rollback()
        checks["database"] = {"ok": True, "backend": app.ctx.db.dialect.name}
    except Exception as error:  # noqa: BLE001 - health reports, it does not raise
        checks["database"] = {"ok": False, "error": type(error).__name__}
    try:
        status = await app.ctx.rasa.status()
        checks["engine"] = {
            "ok": bool(status.get("model_id")),
            "model": status.get("model_id"),
        }  # a model is loaded
    except Exception as error:  # noqa: BLE001
        checks["engine"] = {"ok": False, "error": type(error).__name__}
    actions_ok = await app.ctx.monitor.check()
    checks["action_server"] = {"ok": actions_ok}
    healthy = all(check["ok"] for check in checks.values())
    return json({"ok": healthy, "checks": checks}, status=200 if healthy else 503)
