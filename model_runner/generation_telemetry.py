"""What the runner records about one generation call: its request id, a span, one log line.

The servicer opens a `GenerationCall` when a ChatStream/Generate call arrives and tells it
about Started and Finished; the token path never touches it. The call

- binds the caller's `x-request-id` (gRPC metadata) to the handler's task, so every log line
  about the request carries it (each gRPC call runs in its own task);
- with tracing on, opens a SERVER span that continues the caller's W3C `traceparent` (current
  in the handler's task, so log lines carry its ids), and at the end adds `queue`, `prefill`
  and `decode` child spans placed from the engine's own timings (`Usage`), so no span object
  exists while tokens stream;
- logs one line when the call ends: model, finish reason, tokens and timings; never the text.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from opentelemetry import context as otel_context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, set_span_in_context

from model_runner.domain import Finished, GenerationRequest, Started
from model_runner.telemetry.request_id import (
    REQUEST_ID_HEADER,
    bind_request_id,
    valid_request_id,
)
from model_runner.telemetry.tracing import context_from_metadata, first_value

logger = logging.getLogger(__name__)

Metadata = Iterable[tuple[str, str | bytes]]


class GenerationTelemetry:
    """Opens a `GenerationCall` per call; `tracer` is None when tracing is off."""

    def __init__(self, tracer: Tracer | None = None) -> None:
        self._tracer = tracer

    def begin(self, method: str, metadata: Metadata | None) -> GenerationCall:
        request_id = valid_request_id(first_value(metadata, REQUEST_ID_HEADER))
        bind_request_id(request_id)  # the call's own task: nothing to reset
        span: Span | None = None
        if self._tracer is not None:
            span = self._tracer.start_span(
                f"model_runner.v1.Inference/{method}",
                context=context_from_metadata(metadata),
                kind=SpanKind.SERVER,
                attributes={
                    "rpc.system": "grpc",
                    "rpc.service": "model_runner.v1.Inference",
                    "rpc.method": method,
                    **({"request.id": request_id} if request_id else {}),
                },
            )
            # Current for the rest of the call's task, so its log lines carry the trace id.
            otel_context.attach(set_span_in_context(span))
        return GenerationCall(self._tracer, span, method)


class GenerationCall:
    __slots__ = ("_finished", "_method", "_model", "_span", "_tracer")

    def __init__(self, tracer: Tracer | None, span: Span | None, method: str) -> None:
        self._tracer = tracer
        self._span = span
        self._method = method
        self._model = ""
        self._finished = False

    def request(self, request: GenerationRequest) -> None:
        if self._span is not None:
            self._span.set_attributes(
                {"gen_ai.request.model": request.model, "runner.request_id": request.request_id}
            )

    def started(self, event: Started) -> None:
        self._model = event.model
        if self._span is not None:
            self._span.set_attributes(
                {
                    "gen_ai.response.model": event.model,
                    "gen_ai.usage.input_tokens": event.prompt_tokens,
                    "runner.request_id": event.request_id,
                }
            )

    def finished(self, event: Finished) -> None:
        self._finished = True
        usage = event.usage
        logger.info(
            "%s finished: model=%s reason=%s prompt_tokens=%d completion_tokens=%d "
            "queue_ms=%.1f ttft_ms=%.1f total_ms=%.1f",
            self._method,
            self._model,
            event.reason.value,
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.queue_ns / 1e6,
            usage.ttft_ns / 1e6,
            usage.total_ns / 1e6,
        )
        span = self._span
        if span is None:
            return
        span.set_attributes(
            {
                "gen_ai.response.finish_reasons": (event.reason.value,),
                "gen_ai.usage.input_tokens": usage.prompt_tokens,
                "gen_ai.usage.output_tokens": usage.completion_tokens,
                "gen_ai.usage.cached_input_tokens": usage.cached_prompt_tokens,
            }
        )
        if event.error_message:
            span.set_status(Status(StatusCode.ERROR, event.error_message))
        self._add_phases(span, event)

    def _add_phases(self, span: Span, event: Finished) -> None:
        """queue / prefill / decode children, placed back from now by the engine's timings."""
        assert self._tracer is not None
        usage = event.usage
        end = time.time_ns()
        arrival = end - usage.total_ns
        slot = arrival + usage.queue_ns
        first_token = slot + usage.ttft_ns if usage.ttft_ns else end
        parent = set_span_in_context(span)
        phases = [("queue", arrival, slot), ("prefill", slot, first_token)]
        if usage.ttft_ns:
            phases.append(("decode", first_token, end))
        for name, start_ns, end_ns in phases:
            if end_ns > start_ns:
                child = self._tracer.start_span(name, context=parent, start_time=start_ns)
                child.end(end_time=end_ns)

    def end(self, error: BaseException | None = None) -> None:
        """Ends the call: a call that never finished was cancelled or refused."""
        if not self._finished:
            logger.info(
                "%s ended without finishing: %s",
                self._method,
                "cancelled" if error is None else type(error).__name__,
            )
        span = self._span
        if span is None:
            return
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        elif not self._finished:
            span.add_event("cancelled")
        span.end()
