"""Health, reflection, models and error statuses of a real runner process."""

from __future__ import annotations

import time

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from model_runner.client import (
    ChatMessage,
    GrpcRunnerClient,
    RunnerInvalidRequestError,
    RunnerModelNotFoundError,
    RunnerUnavailableError,
)
from model_runner.v1 import runner_pb2 as pb
from model_runner.v1 import runner_pb2_grpc as pb_grpc
from tests.support.runner_process import RunnerProcess

pytestmark = pytest.mark.integration


def chat_request(*texts: str, model: str = "") -> pb.ChatRequest:
    messages = [pb.ChatMessage(role="user", content=t) for t in texts]
    return pb.ChatRequest(model=model, conversation=pb.Conversation(messages=messages))


async def status_of(call: aio.UnaryStreamCall) -> tuple[grpc.StatusCode, str, int]:  # type: ignore[type-arg]
    """Reads a streaming call to the end; returns its code, details and messages received."""
    received = 0
    try:
        async for _ in call:
            received += 1
    except aio.AioRpcError:
        pass
    return await call.code(), await call.details() or "", received


async def test_health_is_serving(client: GrpcRunnerClient, channel: aio.Channel) -> None:
    assert await client.check_health()
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", "model_runner.v1.Inference"):
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_services(channel: aio.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = set()
    async for response in call:
        names |= {s.name for s in response.list_services_response.service}
    assert {"model_runner.v1.Inference", "model_runner.v1.Models", "grpc.health.v1.Health"} <= names


async def test_list_models_and_model_info(client: GrpcRunnerClient, channel: aio.Channel) -> None:
    [model] = await client.list_models()
    assert (model.id, model.backend, model.state, model.is_default) == (
        "fake",
        "fake",
        "ready",
        True,
    )
    assert model.max_context_tokens > 0
    info = await pb_grpc.ModelsStub(channel).GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
    assert info.state == pb.MODEL_STATE_READY


async def test_count_tokens(client: GrpcRunnerClient) -> None:
    assert await client.count_tokens([ChatMessage("user", "one two three")]) > 3


async def test_unknown_model_is_not_found(client: GrpcRunnerClient, channel: aio.Channel) -> None:
    call = pb_grpc.InferenceStub(channel).ChatStream(chat_request("hi", model="gpt-9"), timeout=5)
    code, details, received = await status_of(call)
    assert code == grpc.StatusCode.NOT_FOUND
    assert "gpt-9" in details
    assert received == 0
    with pytest.raises(RunnerModelNotFoundError):
        async for _ in client.chat_stream([ChatMessage("user", "hi")], model="gpt-9"):
            pass


async def test_empty_conversation_is_invalid(
    client: GrpcRunnerClient, channel: aio.Channel
) -> None:
    call = pb_grpc.InferenceStub(channel).ChatStream(chat_request(), timeout=5)
    code, details, received = await status_of(call)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "empty" in details
    assert received == 0
    # Nothing, not even initial metadata, was sent before the rejection.
    assert not [m for m in (await call.initial_metadata() or ()) if not m[0].startswith(":")]
    with pytest.raises(RunnerInvalidRequestError, match="empty"):
        async for _ in client.chat_stream([]):
            pass


async def test_bad_sampling_value_is_invalid(channel: aio.Channel) -> None:
    request = chat_request("hi")
    request.sampling.temperature = 9
    code, details, _ = await status_of(
        pb_grpc.InferenceStub(channel).ChatStream(request, timeout=5)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "temperature" in details


async def test_too_short_deadline_is_deadline_exceeded(channel: aio.Channel) -> None:
    call = pb_grpc.InferenceStub(channel).ChatStream(chat_request("hi"), timeout=0.05)
    code, _, received = await status_of(call)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert received == 0


async def test_load_of_an_unknown_model_without_source_is_not_found(channel: aio.Channel) -> None:
    call = pb_grpc.ModelsStub(channel).LoadModel(pb.LoadModelRequest(model="x"), timeout=5)
    code, details, _ = await status_of(call)
    assert code == grpc.StatusCode.NOT_FOUND
    assert "source" in details


async def test_dead_port_fails_fast_with_unavailable(runner: RunnerProcess) -> None:
    # Nothing listens on port 1: the connection is refused at once.
    dead = GrpcRunnerClient("127.0.0.1:1", connect_timeout_s=5)
    started = time.monotonic()
    with pytest.raises(RunnerUnavailableError):
        async for _ in dead.chat_stream([ChatMessage("user", "hi")]):
            pass
    assert time.monotonic() - started < 2
    assert not await dead.check_health()
    await dead.close()
