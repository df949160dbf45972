"""Events of one chat turn as the hub carries them, in order: started, deltas, finished.

Every event has `seq`, its 1-based position in the turn's log, so a subscriber can resume
after the last one it saw.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson


@dataclass(frozen=True, slots=True)
class TurnStarted:
    seq: int
    model: str
    prompt_tokens: int


@dataclass(frozen=True, slots=True)
class TurnDelta:
    seq: int
    text: str


@dataclass(frozen=True, slots=True)
class TurnFinished:
    seq: int
    # complete | interrupted | cancelled | error (the assistant row's status)
    status: str
    finish_reason: str | None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    queue_ms: float | None = None
    ttft_ms: float | None = None
    total_ms: float | None = None
    error_code: str | None = None
    error_message: str | None = None


TurnEvent = TurnStarted | TurnDelta | TurnFinished


@dataclass(frozen=True, slots=True)
class TurnSnapshot:
    """The reply's whole text through `seq`, from the stored checkpoint: sent on a resume the
    hub can no longer serve from its log. It replaces the text the client holds."""

    seq: int
    text: str


# What a watcher receives: the hub's events, plus a snapshot when resuming from storage.
WatchEvent = TurnStarted | TurnDelta | TurnFinished | TurnSnapshot


def encode_event(event: TurnEvent) -> bytes:
    """Compact wire form for a broker (the Redis hub): a JSON array tagged by kind."""
    if type(event) is TurnDelta:
        return orjson.dumps(("d", event.seq, event.text))
    if type(event) is TurnStarted:
        return orjson.dumps(("s", event.seq, event.model, event.prompt_tokens))
    assert type(event) is TurnFinished
    return orjson.dumps(
        (
            "f",
            event.seq,
            event.status,
            event.finish_reason,
            event.prompt_tokens,
            event.completion_tokens,
            event.queue_ms,
            event.ttft_ms,
            event.total_ms,
            event.error_code,
            event.error_message,
        )
    )


def decode_event(raw: bytes | str) -> TurnEvent:
    """Inverse of `encode_event`; raises ValueError on anything else."""
    value = orjson.loads(raw)
    kind = value[0]
    if kind == "d":
        return TurnDelta(value[1], value[2])
    if kind == "s":
        return TurnStarted(value[1], value[2], value[3])
    if kind == "f":
        return TurnFinished(*value[1:])
    raise ValueError(f"unknown turn event kind {kind!r}")
