"""Sanic app factory: `sanic integrations.gateway.app:serve --factory`.

Shared clients are made in listeners and kept on app.ctx, never at import time.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import httpx
from sanic import Request, Sanic
from sanic.exceptions import SanicException
from sanic.response import HTTPResponse, json

from integrations.channels.base import ChannelPlugin
from integrations.channels.delivery import DeliveryDispatcher
from integrations.channels.registry import configured_channels
from integrations.console.auth import console_auth
from integrations.console.care import console_care
from integrations.console.cases import console_cases
from integrations.console.feed import console_feed
from integrations.console.page import console_page
from integrations.console.supervision import console_supervision
from integrations.content import gateway_texts
from integrations.engine_client import RasaClient
from integrations.gateway.health import health
from integrations.gateway.log_redaction import redact_server_logs
from integrations.gateway.workers import DependencyMonitor, run_every, watchdog_round
from integrations.paging.dispatcher import PageDispatcher
from integrations.paging.senders import ConsoleAlerts, LogSender, PageSender
from integrations.settings import GatewaySettings
from integrations.switchboard import Engine, Switchboard
from integrations.webchat.routes import webchat
from records.db import create_engine, session_factory
from triage_protocols import directory
from triage_protocols.engine import default_screener

log = logging.getLogger(__name__)


def create_app(
    settings: GatewaySettings | None = None,
    *,
    engine: Engine | None = None,
    actions_up: Callable[[], bool] | None = None,
    page_senders: list[PageSender] | None = None,
    channels: list[ChannelPlugin] | None = None,
    background: bool = True,
    name: str = "xinqiao_gateway",
) -> Sanic:
    """`engine` and `actions_up` stand in for Rasa and the action-server probe in tests; /healthz
    still asks the real ones. `page_senders` adds senders to the console and the log. `channels` are
    the channels to serve; by default those the environment configures (integrations/channels).
    `background=False` starts no background rounds: a test runs them itself, so it decides what happens."""
    settings = settings or GatewaySettings()  # type: ignore[call-arg]  # secrets come from the environment
    app = Sanic(name)
    app.config.FALLBACK_ERROR_FORMAT = "json"
    app.config.REQUEST_MAX_SIZE = 64 * 1024  # ample for 2,000 characters; larger bodies get 413

    @app.on_request
    async def refuse_oversize(request: Request) -> HTTPResponse | None:
        """Sanic's own server refuses a body over REQUEST_MAX_SIZE before reading it; this holds the same
        limit under any other front (an ASGI server), for the web chat and every channel's webhook."""
        if len(request.body or b"") > app.config.REQUEST_MAX_SIZE:
            log.warning("request refused: body of %s bytes is too large", len(request.body))
            return json({"error": "too_large"}, status=413)
        return None

    @app.exception(Exception)
    async def never_an_english_page(request: Request, exception: Exception) -> HTTPResponse:
        """Sanic's own answer to an error it knows (404, 405, 413 …); anything unexpected gets a 503 in
        Chinese with the numbers to call, never Sanic's English page. Logged by type and route only:
        the URL may carry a session token, the body a child's words."""
        if isinstance(exception, SanicException):
            return app.error_handler.default(request, exception)
        route = request.route.name if request.route else "no route"
        log.error("unexpected %s while handling %s", type(exception).__name__, route)
        message = gateway_texts().errors.store_down.format(hotline_list=directory.hotline_list())
        return json({"error": "unavailable", "message": message}, status=503)

    redact_server_logs()
    app.ctx.settings = settings
    app.blueprint(webchat)
    app.blueprint(health)
    app.blueprint(console_auth)
    app.blueprint(console_cases)
    app.blueprint(console_care)
    app.blueprint(console_supervision)
    app.blueprint(console_feed)
    app.blueprint(console_page)
    plugins = configured_channels() if channels is None else channels
    for plugin in plugins:
        app.blueprint(plugin.blueprint)

    @app.before_server_start
    async def open_clients(app: Sanic) -> None:
        # Compiles the triage patterns and loads the learned screen once (a few seconds), before the
        # first message: loaded lazily, it held up the first message after every restart and stalled
        # the whole gateway meanwhile. A broken protocol file stops the start.
        default_screener()
        app.ctx.db = create_engine(settings.database_url)
        app.ctx.sessions = session_factory(app.ctx.db)
        # Pages and the watchdog have a connection of their own, so a page never queues behind a burst
        # of inbound messages for SQLite's one connection per engine (records/db.py).
        app.ctx.background_db = create_engine(settings.database_url)
        app.ctx.background = session_factory(app.ctx.background_db)
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
        app.ctx.alerts = ConsoleAlerts()
        senders: list[PageSender] = [
            app.ctx.alerts,
            LogSender(),
            *(page_senders or []),
            *(p.page_sender for p in plugins if p.page_sender is not None),
        ]
        app.ctx.dispatcher = PageDispatcher(
            app.ctx.background,
            {sender.name: sender for sender in senders},
            max_attempts=settings.page_max_attempts,
            interval_seconds=settings.dispatch_interval_seconds,
        )
        app.ctx.deliveries = DeliveryDispatcher(
            app.ctx.background,
            {p.sender.channel: p.sender for p in plugins if p.sender is not None},
            max_attempts=settings.page_max_attempts,
            interval_seconds=settings.dispatch_interval_seconds,
            on_failed=app.ctx.alerts.delivery_failed,  # the console hears at once of a lost message
        )
        app.ctx.switchboard = Switchboard(
            app.ctx.sessions,
            engine or app.ctx.rasa,
            actions_up=actions_up or app.ctx.monitor.is_up,
            retry_limit=settings.retry_limit,
            stale_after_seconds=settings.retry_stale_after_seconds,
            deadline_seconds=settings.engine_timeout_seconds,
            on_escalated=app.ctx.dispatcher.wake,
            on_case=app.ctx.alerts.announce,
            on_message_for_counsellor=app.ctx.alerts.message_for_counsellor,
        )

    @app.after_server_start
    async def start_workers(app: Sanic) -> None:
        for plugin in plugins:
            if plugin.start is not None:
                await plugin.start(app)
        if not background:
            return
        app.add_task(_started(app.ctx.deliveries.run_forever), name="deliver_messages")
        app.add_task(
            _started(run_every, settings.probe_interval_seconds, app.ctx.monitor.check), name="probe_actions"
        )
        app.add_task(
            _started(run_every, settings.retry_interval_seconds, app.ctx.switchboard.retry_pending),
            name="retry_pending",
        )
        app.add_task(_started(app.ctx.dispatcher.run_forever), name="dispatch_pages")
        app.add_task(
            _started(
                run_every,
                settings.watchdog_interval_seconds,
                watchdog_round(app.ctx.background, app.ctx.dispatcher),
            ),
            name="watchdog",
        )

    @app.before_server_stop
    async def stop_workers(app: Sanic) -> None:
        for task_name in ("probe_actions", "retry_pending", "dispatch_pages", "deliver_messages", "watchdog"):
            try:
                await app.cancel_task(task_name, raise_exception=False)
            except Exception:  # noqa: BLE001 - a task that never started is fine at shutdown
                log.debug("task %s was not running", task_name)
        for plugin in plugins:
            if plugin.stop is not None:
                await plugin.stop(app)

    @app.after_server_stop
    async def close_clients(app: Sanic) -> None:
        await app.ctx.http.aclose()
        await app.ctx.background_db.dispose()
        await app.ctx.db.dispose()

    return app


def _started(
    work: Callable[..., Coroutine[Any, Any, None]], *args: Any
) -> Callable[[Sanic], Awaitable[None]]:
    """A background task whose coroutine Sanic makes when the task runs: one made earlier and cancelled
    before it ran (a server stopped at once, as the test client does) is reported as never awaited."""
    return lambda _app: work(*args)


def serve() -> Sanic:
    """The factory the `sanic` command line calls. It takes no parameter on purpose: Sanic passes its
    own parsed arguments to a factory that accepts one, and settings come from the environment."""
    return create_app()
