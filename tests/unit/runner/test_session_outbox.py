"""The session outbox: what one SessionResponse carries, in which order."""

from __future__ import annotations

import grpc

from model_runner.domain import Delta
from model_runner.errors import ModelNotFound, QueueFull
from model_runner.session import SessionOutbox
from model_runner.v1 import runner_pb2 as pb


def started(request_id: str) -> pb.GenerateResponse:
    return pb.GenerateResponse(request_id=request_id, started=pb.Started(model="m"))


def finished(request_id: str) -> pb.GenerateResponse:
    return pb.GenerateResponse(request_id=request_id, finished=pb.Finished())


def summary(response: pb.SessionResponse) -> list[tuple[str, str, str]]:
    return [
        (e.request_id, e.WhichOneof("event") or "", e.delta.text if e.HasField("delta") else "")
        for e in response.events
    ]


def test_an_empty_outbox_gives_nothing() -> None:
    assert SessionOutbox().take() is None


def test_consecutive_deltas_of_a_request_merge_and_keep_the_latest_count() -> None:
    outbox = SessionOutbox()
    outbox.event("a", started("a"))
    outbox.delta("a", Delta("Hel", 1, (1,)))
    outbox.delta("b", Delta("x", 1))
    outbox.delta("a", Delta("lo", 2, (2,)))
    response = outbox.take()
    assert response is not None
    assert summary(response) == [("a", "started", ""), ("a", "delta", "Hello"), ("b", "delta", "x")]
    assert response.events[1].delta.completion_tokens == 2
    assert list(response.events[1].delta.token_ids) == [1, 2]
    assert outbox.take() is None  # taken: the next message starts empty


def test_a_delta_never_jumps_ahead_of_the_finished_before_it() -> None:
    outbox = SessionOutbox()
    outbox.delta("a", Delta("one", 1))
    outbox.event("a", finished("a"))
    outbox.delta("a", Delta("late", 2))  # cannot happen in the engine; order must still hold
    response = outbox.take()
    assert response is not None
    assert summary(response) == [
        ("a", "delta", "one"),
        ("a", "finished", ""),
        ("a", "delta", "late"),
    ]


def test_rejections_carry_the_status_chat_stream_would_have_sent() -> None:
    outbox = SessionOutbox()
    outbox.reject("busy", QueueFull("queue full; retry", retry_after_ms=250))
    outbox.reject("unknown", ModelNotFound("no model 'x'"))
    outbox.reject("bug", RuntimeError("boom"))
    response = outbox.take()
    assert response is not None
    busy, unknown, bug = response.rejections
    assert (busy.code, busy.retry_after_ms) == (grpc.StatusCode.RESOURCE_EXHAUSTED.value[0], 250)
    assert (unknown.code, unknown.message) == (grpc.StatusCode.NOT_FOUND.value[0], "no model 'x'")
    assert bug.code == grpc.StatusCode.INTERNAL.value[0]
    assert "boom" not in bug.message  # internals stay in the runner's log
