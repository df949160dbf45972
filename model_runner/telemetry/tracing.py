"""OpenTelemetry tracing of both services: configuration, the tracer provider, and W3C trace
context in gRPC metadata.

Tracing is off unless `TelemetrySettings` switch it on. Off means no provider and no exporter:
callers get a no-op tracer, whose spans are one shared object.
Each service builds its own provider (never the global one), so tests can run several apps in
one process.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)
from opentelemetry.trace import Span, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACES_EXPORTERS = ("otlp", "console", "none")
DEFAULT_OTLP_BASE = "http://localhost:4318"
# W3C trace context only (traceparent, tracestate): both ends are ours.
_PROPAGATOR = TraceContextTextMapPropagator()


def parse_exporters(value: str) -> tuple[str, ...]:
    """OTEL_TRACES_EXPORTER: a comma-separated list of otlp, console, none. Raises ValueError."""
    names = tuple(n.strip().lower() for n in value.split(",") if n.strip())
    unknown = [n for n in names if n not in TRACES_EXPORTERS]
    if unknown:
        raise ValueError(
            f"unknown traces exporter {', '.join(unknown)}; use {', '.join(TRACES_EXPORTERS)}"
        )
    return names


@dataclass(frozen=True, slots=True)
class TracingConfig:
    enabled: bool
    service_name: str
    exporters: tuple[str, ...] = ("otlp",)
    otlp_endpoint: str = DEFAULT_OTLP_BASE + "/v1/traces"


def build_tracer_provider(config: TracingConfig) -> TracerProvider | None:
    """A provider exporting to `config.exporters`, or None when tracing is off.

    Spans are batched (OTEL_BSP_* tune the batch); the caller shuts the provider down at exit,
    which exports what is left.
    """
    if not config.enabled:
        return None
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: config.service_name}))
    for name in config.exporters:
        if name == "console":
            # Whole spans as they end, on stderr (stdout carries the runner's announce lines).
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
        else:
            # Imported only when used: the exporter pulls in an HTTP client.
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=config.otlp_endpoint)
            provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def tracer_from(provider: TracerProvider | None, name: str) -> Tracer:
    """The provider's tracer, or a no-op tracer when tracing is off."""
    if provider is None:
        return trace.NoOpTracer()
    return provider.get_tracer(name)


def trace_metadata(span: Span) -> list[tuple[str, str]]:
    """`traceparent` (and `tracestate`) of `span` as gRPC metadata; empty for a no-op span."""
    if not span.get_span_context().is_valid:
        return []
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return list(carrier.items())


def context_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> Context | None:
    """The remote parent carried in gRPC metadata, or None when there is none."""
    carrier = {key: value for key, value in metadata or () if key in ("traceparent", "tracestate")}
    if "traceparent" not in carrier:
        return None
    return _PROPAGATOR.extract({k: v for k, v in carrier.items() if isinstance(v, str)})


def first_value(metadata: Iterable[tuple[str, str | bytes]] | None, key: str) -> str | None:
    """The first text value of `key` in gRPC metadata."""
    for name, value in metadata or ():
        if name == key and isinstance(value, str):
            return value
    return None
