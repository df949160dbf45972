"""Turn events to JSON, on the hot path: plain dicts through orjson, no model validation.

The shapes are those of `schemas/events.py`; tests check that every encoded event validates.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from webui_backend.services.turn_events import (
    TurnDelta,
    TurnFinished,
    TurnSnapshot,
    TurnStarted,
    WatchEvent,
)
from webui_backend.services.turn_handle import TurnHandle


def accepted_event(handle: TurnHandle, ref: str | None) -> dict[str, Any]:
    return {
        "type": "turn.accepted",
        "ref": ref,
        "turn_id": handle.turn_id,
        "chat_id": handle.chat_id,
        "user_message_id": handle.user_message_id,
        "assistant_message_id": handle.assistant_message_id,
        "created_chat": handle.created_chat,
        "existing": handle.existing,
    }


def error_event(code: str, message: str, ref: str | None, **extra: Any) -> dict[str, Any]:
    return {"type": "error", "ref": ref, "error": {"code": code, "message": message, **extra}}


def event_dict(turn_id: str, event: WatchEvent) -> dict[str, Any]:
    if type(event) is TurnDelta:
        return {"type": "turn.delta", "turn_id": turn_id, "seq": event.seq, "text": event.text}
    if type(event) is TurnStarted:
        return {
            "type": "turn.started",
            "turn_id": turn_id,
            "seq": event.seq,
            "model": event.model,
            "prompt_tokens": event.prompt_tokens,
        }
    if type(event) is TurnSnapshot:
        return {"type": "turn.snapshot", "turn_id": turn_id, "seq": event.seq, "text": event.text}
    assert type(event) is TurnFinished
    error = (
        {"code": event.error_code or event.status, "message": event.error_message}
        if event.error_message
        else None
    )
    return {
        "type": "turn.finished",
        "turn_id": turn_id,
        "seq": event.seq,
        "status": event.status,
        "finish_reason": event.finish_reason,
        "usage": {
            "prompt_tokens": event.prompt_tokens,
            "completion_tokens": event.completion_tokens,
        },
        "timings": {
            "queue_ms": event.queue_ms,
            "ttft_ms": event.ttft_ms,
            "total_ms": event.total_ms,
        },
        "error": error,
    }


def coalesce(turn_id: str, batch: Sequence[WatchEvent]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (seq, event) for a batch, merging runs of deltas into one.

    A merged delta carries the seq of its last part, so a client that resumes after it
    receives nothing twice.
    """
    pending: list[str] = []
    last_seq = 0
    for event in batch:
        if type(event) is TurnDelta:
            pending.append(event.text)
            last_seq = event.seq
            continue
        if pending:
            yield last_seq, _delta(turn_id, last_seq, pending)
            pending = []
        yield event.seq, event_dict(turn_id, event)
    if pending:
        yield last_seq, _delta(turn_id, last_seq, pending)


def _delta(turn_id: str, seq: int, parts: list[str]) -> dict[str, Any]:
    text = parts[0] if len(parts) == 1 else "".join(parts)
    return {"type": "turn.delta", "turn_id": turn_id, "seq": seq, "text": text}


def dumps(event: dict[str, Any]) -> str:
    return orjson.dumps(event).decode()


def sse_frame(seq: int | None, event: dict[str, Any]) -> bytes:
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {event['type']}\ndata: ".encode() + orjson.dumps(event) + b"\n\n"
