"""Prometheus metrics of the backend, exposed at `/metrics`.

One `BackendMetrics` per app, on its own registry, so tests and several apps in one process do
not collide. With several worker processes set PROMETHEUS_MULTIPROC_DIR (prometheus-client's
multiprocess mode) so that a scrape sees every worker.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)


class BackendMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "webui_http_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.http_latency = Histogram(
            "webui_http_request_seconds",
            "HTTP request latency to the response start",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.active_streams = Gauge(
            "webui_active_streams", "Replies being generated", registry=r, multiprocess_mode="sum"
        )
        self.turns = Counter("webui_turns", "Finished turns by status", ["status"], registry=r)
        self.ttft = Histogram(
            "webui_time_to_first_token_seconds",
            "Runner-reported time from admission to the first token, per finished reply",
            buckets=_TTFT_BUCKETS,
            registry=r,
        )
        self.tokens_relayed = Counter(
            "webui_tokens_relayed", "Completion tokens relayed from runners", registry=r
        )
        self.db_latency = Histogram(
            "webui_db_statement_seconds",
            "Database statement latency",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

    # TurnObserver: once per reply, never per token.
    def turn_started(self) -> None:
        self.active_streams.inc()

    def turn_finished(
        self, status: str, completion_tokens: int | None, ttft_ms: float | None
    ) -> None:
        self.active_streams.dec()
        self.turns.labels(status).inc()
        if completion_tokens:
            self.tokens_relayed.inc(completion_tokens)
        if ttft_ms is not None:
            self.ttft.observe(ttft_ms / 1000)

    def instrument_engine(self, engine: AsyncEngine) -> None:
        """Time every statement (SQLAlchemy cursor events, on the sync engine)."""
        observe = self.db_latency.observe

        @event.listens_for(engine.sync_engine, "before_cursor_execute")
        def _before(conn: Any, *_: Any) -> None:
            conn.info.setdefault("_started", []).append(time.perf_counter())

        @event.listens_for(engine.sync_engine, "after_cursor_execute")
        def _after(conn: Any, *_: Any) -> None:
            started = conn.info.get("_started")
            if started:
                observe(time.perf_counter() - started.pop())

    def render(self) -> Response:
        registry = self.registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


class HttpMetricsMiddleware:
    """Counts and times HTTP requests by route template (never by raw path: ids would explode
    the label set). WebSocket upgrades and `/metrics` itself are not counted."""

    def __init__(self, app: ASGIApp, *, metrics: BackendMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") == "/metrics":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope["method"]
        status = 500

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                self.metrics.http_latency.labels(method, _route_of(scope)).observe(
                    time.perf_counter() - started
                )
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            self.metrics.http_requests.labels(method, _route_of(scope), str(status)).inc()


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    app = scope.get("app")
    for candidate in getattr(getattr(app, "router", None), "routes", ()):
        match, _ = candidate.matches(scope)
        if match is Match.FULL:
            return str(getattr(candidate, "path", "other"))
    return "other"


async def metrics_endpoint(request: Request) -> Response:
    metrics: BackendMetrics = request.app.state.metrics
    return metrics.render()
