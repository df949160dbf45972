"""Log set-up of both services: plain text (the default) or one JSON object per line.

Every record passes `RequestContextFilter`, which adds the current request id and, while a
recording span is current, its trace and span ids. A JSON line reads

    {"ts": "2025-01-01T12:00:00.123456+00:00", "level": "INFO", "logger": "uvicorn.access",
     "msg": "...", "request_id": "4bf9...", "trace_id": "0af7...", "span_id": "b7ad..."}

and carries any `extra=` fields too. The same configuration is handed to uvicorn, so its own
lines (start-up, access log) come out in the same format.
"""

from __future__ import annotations

import logging
import logging.config
from typing import Any, Literal

from opentelemetry import trace
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from model_runner.telemetry.request_id import current_request_id

LogFormat = Literal["text", "json"]

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class RequestContextFilter(logging.Filter):
    """Adds `request_id` (None outside a request) and, inside a recording span, `trace_id` and
    `span_id` to every record. Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id()
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = trace.format_trace_id(context.trace_id)
            record.span_id = trace.format_span_id(context.span_id)
        return True


class TextLogFormatter(logging.Formatter):
    """The classic line, with ` request_id=...` at the end when there is one."""

    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        request_id = getattr(record, "request_id", None)
        return f"{line} request_id={request_id}" if request_id else line


class JsonLogFormatter(JsonFormatter):
    """One JSON object per line: ts, level, logger, msg, request_id, then trace_id/span_id and
    extras when present."""

    def __init__(self) -> None:
        super().__init__(
            # request_id is on every line (null outside a request): queries can rely on it.
            ["levelname", "name", "message", "request_id"],
            rename_fields={"levelname": "level", "name": "logger", "message": "msg"},
            # uvicorn's `color_message` repeats the message with terminal colours.
            reserved_attrs=[*RESERVED_ATTRS, "color_message"],
            timestamp="ts",
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        fields: dict[str, Any] = {}
        super().add_fields(fields, record, message_dict)
        log_data["ts"] = fields.pop("ts")  # first, for people reading the raw lines
        log_data.update(fields)


def logging_config(level: str, log_format: LogFormat) -> dict[str, Any]:
    """A `logging.config.dictConfig` dict: one stderr handler on the root logger, and uvicorn's
    loggers sending their records there instead of to handlers of their own."""
    formatter = JsonLogFormatter if log_format == "json" else TextLogFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_context": {"()": RequestContextFilter}},
        "formatters": {"main": {"()": formatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "filters": ["request_context"],
                "formatter": "main",
            }
        },
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {
            name: {"handlers": [], "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }


def configure_logging(level: str, log_format: LogFormat) -> None:
    """Replaces the process's log handlers; call once at start-up."""
    logging.config.dictConfig(logging_config(level, log_format))
