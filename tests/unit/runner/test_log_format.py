"""The log formats: JSON lines with the request and trace ids, and the text line."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from model_runner.telemetry.logs import (
    JsonLogFormatter,
    LogFormat,
    RequestContextFilter,
    TextLogFormatter,
    logging_config,
)
from model_runner.telemetry.request_id import bind_request_id, reset_request_id


@pytest.fixture
def request_id() -> Iterator[str]:
    token = bind_request_id("req-42")
    yield "req-42"
    reset_request_id(token)


def _emit(formatter: logging.Formatter, message: str, *args: object, **extra: object) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestContextFilter())
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"test.logs.{id(stream)}")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning(message, *args, extra=extra)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_json_line_has_the_fixed_fields_and_the_request_id(request_id: str) -> None:
    line = _emit(JsonLogFormatter(), "reply %s stored", "r-1", turn_id="r-1")
    assert line.count("\n") == 1
    assert line.endswith("\n")
    record = json.loads(line)
    assert list(record)[:5] == ["ts", "level", "logger", "msg", "request_id"]
    assert record["level"] == "WARNING"
    assert record["msg"] == "reply r-1 stored"
    assert record["request_id"] == request_id
    assert record["turn_id"] == "r-1"  # extras come along
    assert record["ts"].endswith("+00:00")  # ISO 8601, UTC
    assert "trace_id" not in record  # no span is current


def test_json_line_outside_a_request_has_a_null_request_id() -> None:
    record = json.loads(_emit(JsonLogFormatter(), "start-up"))
    assert record["request_id"] is None


def test_json_line_carries_the_current_span() -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        record = json.loads(_emit(JsonLogFormatter(), "inside"))
    context = span.get_span_context()
    assert record["trace_id"] == trace.format_trace_id(context.trace_id)
    assert record["span_id"] == trace.format_span_id(context.span_id)


def test_json_line_keeps_exceptions_and_drops_uvicorns_colour_copy(request_id: str) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.addFilter(RequestContextFilter())
        handler.setFormatter(JsonLogFormatter())
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), None)
        record.exc_info = sys.exc_info()
        record.color_message = "\x1b[31mfailed\x1b[0m"
        handler.handle(record)
    parsed = json.loads(stream.getvalue())
    assert "ValueError: boom" in parsed["exc_info"]
    assert "color_message" not in parsed


def test_text_line_ends_with_the_request_id(request_id: str) -> None:
    line = _emit(TextLogFormatter(), "hello").rstrip("\n")
    assert " WARNING test.logs." in line
    assert line.endswith(" hello request_id=req-42")


def test_text_line_without_a_request_is_the_classic_line() -> None:
    line = _emit(TextLogFormatter(), "hello").rstrip("\n")
    assert line.endswith(" hello")
    assert "request_id" not in line


@pytest.mark.parametrize(
    ("log_format", "formatter"), [("json", JsonLogFormatter), ("text", TextLogFormatter)]
)
def test_config_routes_uvicorn_through_the_root_handler(
    log_format: LogFormat, formatter: type[logging.Formatter]
) -> None:
    config = logging_config("info", log_format)
    assert config["formatters"]["main"]["()"] is formatter
    assert config["root"] == {"level": "INFO", "handlers": ["stderr"]}
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        assert config["loggers"][name] == {"handlers": [], "propagate": True}
