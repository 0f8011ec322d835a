"""Sanic app factory: `sanic integrations.gateway.app:serve --factory`.

Shared clients are made in listeners and kept on app.ctx, never at import time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
from sanic import Sanic

from integrations.engine_client import RasaClient
from integrations.gateway.health import health
from integrations.gateway.workers import DependencyMonitor, run_every
from integrations.settings import GatewaySettings
from integrations.switchboard import Engine, Switchboard
from integrations.webchat.routes import webchat
from records.db import create_engine, session_factory
from triage_protocols import load_protocol

log = logging.getLogger(__name__)


def create_app(
    settings: GatewaySettings | None = None,
    *,
    engine: Engine | None = None,
    actions_up: Callable[[], bool] | None = None,
    name: str = "xinqiao_gateway",
) -> Sanic:
    """`engine` and `actions_up` stand in for Rasa and the action-server probe in tests; /healthz
    still asks the real ones."""
    settings = settings or GatewaySettings()  # type: ignore[call-arg]  # secrets come from the environment
    app = Sanic(name)
    app.config.FALLBACK_ERROR_FORMAT = "json"
    app.config.REQUEST_MAX_SIZE = 64 * 1024  # ample for 2,000 characters; larger bodies get 413
    app.ctx.settings = settings
    app.blueprint(webchat)
    app.blueprint(health)

    @app.before_server_start
    async def open_clients(app: Sanic) -> None:
        load_protocol()  # compiles the triage patterns once (about a second); a broken file stops the start
        app.ctx.db = create_engine(settings.database_url)
        app.ctx.sessions = session_factory(app.ctx.db)
        app.ctx.http = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50)
        )
        app.ctx.rasa = RasaClient(
            app.ctx.http,
            settings.rasa_url,
            settings.rasa_token.get_secret_value(),
            settings.engine_timeout_seconds,
        )
        app.ctx.monitor = DependencyMonitor(app.ctx.http, f"{settings.actions_url.rstrip('/')}/health")
        app.ctx.switchboard = Switchboard(
            app.ctx.sessions,
            engine or app.ctx.rasa,
            actions_up=actions_up or app.ctx.monitor.is_up,
            retry_limit=settings.retry_limit,
        )

    @app.after_server_start
    async def start_workers(app: Sanic) -> None:
        app.add_task(run_every(settings.probe_interval_seconds, app.ctx.monitor.check), name="probe_actions")
        app.add_task(
            run_every(settings.retry_interval_seconds, app.ctx.switchboard.retry_pending),
            name="retry_pending",
        )

    @app.before_server_stop
    async def stop_workers(app: Sanic) -> None:
        for task_name in ("probe_actions", "retry_pending"):
            try:
                await app.cancel_task(task_name, raise_exception=False)
            except Exception:  # noqa: BLE001 - a task that never started is fine at shutdown
                log.debug("task %s was not running", task_name)

    @app.after_server_stop
    async def close_clients(app: Sanic) -> None:
        await app.ctx.http.aclose()
        await app.ctx.db.dispose()

    return app


def serve() -> Sanic:
    """The factory the `sanic` command line calls. It takes no parameter on purpose: Sanic passes its
    own parsed arguments to a factory that accepts one, and settings come from the environment."""
    return create_app()
