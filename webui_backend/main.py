"""`create_app(settings)`: the lifespan wires storage, the runner client and the services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from opentelemetry.trace import Tracer

from model_runner.client import GrpcRunnerClient
from webui_backend.api import auth, chats, health, keys, models, shares, turns, ws
from webui_backend.api.admin import router as admin_router
from webui_backend.api.body_limit import BodySizeLimitMiddleware
from webui_backend.api.error_handlers import install_error_handlers
from webui_backend.api.openai_compat.router import router as openai_router
from webui_backend.api.ui import mount_ui
from webui_backend.container import AppServices
from webui_backend.db.engine import create_engine, create_session_factory
from webui_backend.db.migrate import upgrade_to_head
from webui_backend.db.transactions import create_transactions
from webui_backend.observability.metrics import (
    BackendMetrics,
    HttpMetricsMiddleware,
    metrics_endpoint,
)
from webui_backend.observability.request_id import RequestIdMiddleware
from webui_backend.observability.tracing import BackendTracing
from webui_backend.services.accounts_wiring import build_account_services
from webui_backend.services.admin_runners import ensure_runner_registry
from webui_backend.services.background import BackgroundTasks
from webui_backend.services.chat_turn import ChatTurnService
from webui_backend.services.chats import ChatQueryService
from webui_backend.services.checkpoints import ReplyCheckpointer
from webui_backend.services.generation import ReplyGenerator
from webui_backend.services.hub_factory import build_hub
from webui_backend.services.model_catalog import ModelCatalog
from webui_backend.services.recovery import OrphanSweeper, interrupt_orphaned_replies
from webui_backend.services.retention import RetentionJob
from webui_backend.services.runner_pool import RunnerPool
from webui_backend.services.runner_port import RunnerClient
from webui_backend.services.turn_watch import TurnWatcher
from webui_backend.settings import Settings


def create_app(
    settings: Settings,
    *,
    runner: RunnerClient | None = None,
    tracing: BackendTracing | None = None,
) -> FastAPI:
    """Build the app. `runner` replaces the gRPC client (tests pass a fake); `tracing`
    replaces the tracer provider the settings describe (tests pass an in-memory one)."""
    metrics = BackendMetrics()
    if tracing is None:
        tracing = BackendTracing.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services, owned_client = await _start(settings, runner, metrics, tracing.tracer)
        metrics.instrument_engine(services.engine)
        app.state.services = services
        try:
            yield
        finally:
            await services.tasks.shutdown()
            await services.hub.aclose()
            await services.accounts.limiter.aclose()
            if owned_client is not None:
                await owned_client.close()
            await services.transactions.aclose()
            await services.engine.dispose()
            tracing.shutdown()

    app = FastAPI(
        title="webui backend",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/api/docs",
        redoc_url=None,
    )
    install_error_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_body_bytes)
    app.add_middleware(HttpMetricsMiddleware, metrics=metrics)
    app.add_middleware(RequestIdMiddleware)
    tracing.instrument(app)
    app.state.metrics = metrics
    app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    # Routes match in order, one by one: the per-turn ones come first.
    app.include_router(turns.router)
    app.include_router(ws.router)
    app.include_router(openai_router)
    app.include_router(health.router)
    app.include_router(auth.router)
    app.include_router(keys.router)
    app.include_router(chats.router)
    app.include_router(shares.router)
    app.include_router(models.router)
    app.include_router(admin_router)
    mount_ui(app, settings.static_dir)
    return app


async def _start(
    settings: Settings, runner: RunnerClient | None, metrics: BackendMetrics, tracer: Tracer
) -> tuple[AppServices, RunnerPool | None]:
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        settings.database_url,
        sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
    )
    if settings.migrate_on_startup:
        await upgrade_to_head(engine)
    sessions = create_session_factory(engine)
    transactions = create_transactions(
        settings.database_url, sessions, busy_timeout_ms=settings.sqlite_busy_timeout_ms
    )
    hub = build_hub(settings)
    await hub.start()
    sweeper = OrphanSweeper(
        sessions,
        hub,
        interval_s=settings.orphan_sweep_interval_s,
        grace_s=settings.orphan_grace_s,
    )
    if settings.redis_url:
        # Other workers may be generating right now: only a dead worker's replies go.
        await sweeper.sweep()
    else:
        # The in-process hub means one worker: whatever is still streaming is a crash's.
        await interrupt_orphaned_replies(sessions)
    runner_addresses = await ensure_runner_registry(sessions, settings.runner_addresses)

    owned_client = None
    if runner is None:
        owned_client = RunnerPool(
            runner_addresses,
            lambda address: GrpcRunnerClient(
                address,
                default_timeout_s=settings.runner_timeout_s,
                connect_timeout_s=settings.runner_connect_timeout_s,
                sessions=settings.runner_sessions,
            ),
            health_interval_s=settings.runner_health_interval_s,
        )
        await owned_client.start()
        runner = owned_client
    catalog = ModelCatalog(runner)
    tasks = BackgroundTasks()
    tasks.spawn(catalog.run(), name="model-catalog-refresh")
    checkpoints = ReplyCheckpointer(transactions, interval_s=settings.checkpoint_interval_s)
    tasks.spawn(checkpoints.run(), name="reply-checkpoints")
    tasks.spawn(sweeper.run(), name="orphan-sweep")
    retention = RetentionJob.from_settings(
        settings, engine=engine, transactions=transactions, sessions=sessions
    )
    if retention is not None:
        tasks.spawn(retention.run(), name="retention")
    accounts = await build_account_services(
        settings,
        sessions=sessions,
        transactions=transactions,
        runner=runner,
        catalog=catalog,
        pool=owned_client,
    )
    tasks.spawn(accounts.model_access.run(), name="model-policy-refresh")
    generator = ReplyGenerator(
        transactions=transactions,
        runner=runner,
        hub=hub,
        runner_timeout_s=settings.runner_timeout_s,
        checkpoints=checkpoints,
        observer=metrics,
        tracer=tracer,
    )
    services = AppServices(
        settings=settings,
        engine=engine,
        sessions=sessions,
        transactions=transactions,
        runner=runner,
        hub=hub,
        catalog=catalog,
        tasks=tasks,
        turns=ChatTurnService(
            sessions=sessions,
            transactions=transactions,
            generator=generator,
            hub=hub,
            catalog=catalog,
            tasks=tasks,
            max_message_chars=settings.max_message_chars,
            default_model=settings.default_model,
            policy=accounts.model_access,
            titles=accounts.titles,
        ),
        chats=ChatQueryService(sessions),
        watcher=TurnWatcher(
            sessions=sessions,
            hub=hub,
            poll_interval_s=settings.checkpoint_interval_s,
            max_wait_s=settings.runner_timeout_s + 60,
        ),
        auth=accounts.auth,
        accounts=accounts,
        tracer=tracer,
    )
    return services, owned_client


def app_factory() -> FastAPI:
    """Entry point for `uvicorn --factory`: settings from the environment."""
    return create_app(Settings())
