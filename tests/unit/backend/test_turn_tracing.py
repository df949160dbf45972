"""The turn's span and request id: started in a request, carried into the generation task,
sent on to the runner; no message text anywhere."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

from model_runner.client import StreamStarted
from model_runner.telemetry.logs import RequestContextFilter
from model_runner.telemetry.request_id import bind_request_id, reset_request_id
from tests.support.fake_runner_client import FakeRunnerClient, reply_script
from tests.unit.backend.conftest import account
from webui_backend.container import AppServices
from webui_backend.main import create_app
from webui_backend.observability.tracing import BackendTracing
from webui_backend.services.new_turn import TurnRequest
from webui_backend.services.turn_handle import TurnHandle
from webui_backend.settings import Settings

SECRET = "the secret words of the user"


@dataclass
class Traced:
    services: AppServices
    tracer: Tracer
    spans: InMemorySpanExporter


@pytest.fixture
async def traced(settings: Settings, runner: FakeRunnerClient) -> AsyncIterator[Traced]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    app = create_app(settings, runner=runner, tracing=BackendTracing(provider))
    async with app.router.lifespan_context(app):
        yield Traced(app.state.services, provider.get_tracer("test"), spans)


async def _start_in_request(
    services: AppServices, user_id: str, request_id: str | None
) -> TurnHandle:
    """Start a turn the way a route does: inside the request's bound id (and span, if any)."""
    token = bind_request_id(request_id)
    try:
        return await services.turns.start_turn(user_id, TurnRequest(content=SECRET))
    finally:
        reset_request_id(token)


async def _finished_span(spans: InMemorySpanExporter, name: str) -> ReadableSpan:
    async with asyncio.timeout(5):
        while True:
            for span in spans.get_finished_spans():
                if span.name == name:
                    return span
            await asyncio.sleep(0.01)


async def _generation_done(services: AppServices, turn_id: str, user_id: str) -> None:
    async with asyncio.timeout(5):
        async for _ in services.hub.subscribe(turn_id, user_id):
            pass


async def test_turn_span_is_a_child_of_the_request_and_continues_at_the_runner(
    traced: Traced, runner: FakeRunnerClient
) -> None:
    script = reply_script("Hi", " there")
    script[0] = StreamStarted("", "fake", 3, runner="10.0.0.5:50051")
    runner.scripts.append(script)
    user_id = await account(traced.services)
    with traced.tracer.start_as_current_span("POST /api/turns") as request_span:
        handle = await _start_in_request(traced.services, user_id, "req-unit-1")
    # The request is over; the turn goes on in its own task and still finds its parent.
    turn = await _finished_span(traced.spans, "chat.turn")

    request_context = request_span.get_span_context()
    assert turn.context is not None
    assert turn.parent is not None
    assert turn.context.trace_id == request_context.trace_id
    assert turn.parent.span_id == request_context.span_id
    assert dict(turn.attributes or {}) == {
        "chat.id": handle.chat_id,
        "chat.turn.id": handle.turn_id,
        "request.id": "req-unit-1",
        "chat.turn.status": "complete",
        "gen_ai.response.finish_reasons": ("eos",),
        "gen_ai.response.model": "fake",
        "runner.address": "10.0.0.5:50051",
        "gen_ai.usage.input_tokens": 3,
        "gen_ai.usage.output_tokens": 2,
    }
    trace_id = trace.format_trace_id(turn.context.trace_id)
    span_id = trace.format_span_id(turn.context.span_id)
    # A new chat's title is asked for in a task of its own, at any moment: not counted.
    [sent] = runner.turn_metadata()
    assert dict(sent)["x-request-id"] == "req-unit-1"
    version, sent_trace, sent_parent, flags = dict(sent)["traceparent"].split("-")
    assert (version, sent_trace, sent_parent) == ("00", trace_id, span_id)
    assert int(flags, 16) & 1  # sampled
    for span in traced.spans.get_finished_spans():
        assert SECRET not in repr(dict(span.attributes or {}))


async def test_a_failed_turn_marks_its_span_and_logs_with_the_request_id(
    traced: Traced, runner: FakeRunnerClient, caplog: pytest.LogCaptureFixture
) -> None:
    runner.scripts.append([RuntimeError("the fake broke")])
    user_id = await account(traced.services)
    caplog.handler.addFilter(RequestContextFilter())
    with caplog.at_level(logging.ERROR, logger="webui_backend.services.generation"):
        handle = await _start_in_request(traced.services, user_id, "req-unit-2")
        turn = await _finished_span(traced.spans, "chat.turn")

    assert turn.status.status_code is trace.StatusCode.ERROR
    assert (turn.attributes or {})["error.type"] == "internal_error"
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert failures
    assert all(getattr(r, "request_id", None) == "req-unit-2" for r in failures)
    assert handle.turn_id in failures[0].getMessage()
    assert all(SECRET not in r.getMessage() for r in caplog.records)


async def test_with_tracing_off_only_the_request_id_goes_to_the_runner(
    services: AppServices, runner: FakeRunnerClient, user_id: str
) -> None:
    handle = await _start_in_request(services, user_id, "req-unit-3")
    await _generation_done(services, handle.turn_id, user_id)
    handle = await _start_in_request(services, user_id, None)
    await _generation_done(services, handle.turn_id, user_id)
    # Each new chat also gets a title call in a task of its own, at any moment: not counted.
    assert runner.turn_metadata() == [[("x-request-id", "req-unit-3")], []]


def test_tracing_is_off_unless_configured(settings: Settings) -> None:
    tracing = BackendTracing.from_settings(settings)
    assert not tracing.enabled
    assert isinstance(tracing.tracer, trace.NoOpTracer)
