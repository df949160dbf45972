"""Model management, metrics and bad input against a real runner process (fake backend)."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.request

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from model_runner.client import (
    ChatMessage,
    GenerationOptions,
    GrpcRunnerClient,
    RunnerBusyError,
    RunnerInvalidRequestError,
    RunnerModelNotFoundError,
    StreamFinished,
    StreamStarted,
)
from model_runner.v1 import runner_pb2 as pb
from model_runner.v1 import runner_pb2_grpc as pb_grpc
from tests.support.fake_openai_server import fake_openai_server
from tests.support.runner_process import running_runner

from .conftest import eventually

pytestmark = pytest.mark.integration


async def reply(client: GrpcRunnerClient, text: str, **kwargs: object) -> StreamFinished:
    async with contextlib.aclosing(
        client.chat_stream([ChatMessage("user", text)], **kwargs)  # type: ignore[arg-type]
    ) as events:
        async for event in events:
            if isinstance(event, StreamFinished):
                return event
    raise AssertionError("no Finished event")


async def test_load_list_use_and_unload_a_second_model() -> None:
    with running_runner("--metrics-port", "0") as runner:
        client = GrpcRunnerClient(runner.address, default_timeout_s=30)
        try:
            updates = [u async for u in client.load_model("second", source="x", backend="fake")]
            assert updates[-1].state == "ready"
            assert updates[-1].model is not None
            assert updates[-1].model.id == "second"
            assert any(u.status == "loading weights" for u in updates)
            states = {m.id: (m.state, m.is_default) for m in await client.list_models()}
            assert states == {"fake": ("ready", True), "second": ("ready", False)}
            info = await client.get_model_info("second")
            assert info.expires_at is not None  # default keep-alive: 5 minutes
            assert (await client.get_model_info()).expires_at is None  # the default is pinned

            finished = await reply(client, "/echo hi", model="second")
            assert finished.reason == "eos"
            assert await client.unload_model("second") == 0
            assert (await client.get_model_info("second")).state == "available"
            assert [m.id for m in await client.list_models(loaded_only=True)] == ["fake"]
            # Known and unloaded: a request loads it again on demand.
            assert (await reply(client, "/echo again", model="second")).reason == "eos"

            metrics_line = next(line for line in runner.output if "metrics on" in line)
            url = metrics_line.split("metrics on ")[1].strip()
            text = await asyncio.to_thread(lambda: urllib.request.urlopen(url).read().decode())
            assert 'runner_requests_total{model="second",outcome="eos"} 2.0' in text
            assert "runner_time_to_first_token_seconds_bucket" in text
            assert "runner_model_load_seconds_count" in text
            assert "runner_queue_depth 0.0" in text
        finally:
            await client.close()


async def test_keep_alive_zero_unloads_after_the_request() -> None:
    with running_runner() as runner:
        client = GrpcRunnerClient(runner.address, default_timeout_s=30)
        try:
            async for _ in client.load_model("brief", source="x", backend="fake"):
                pass
            options = GenerationOptions(keep_alive_s=0)
            assert (await reply(client, "hi", model="brief", options=options)).reason == "eos"

            async def unloaded() -> bool:
                return (await client.get_model_info("brief")).state == "available"

            await eventually(unloaded)
        finally:
            await client.close()


async def test_unload_drains_then_aborts_and_health_follows_the_default_model() -> None:
    with running_runner() as runner:
        client = GrpcRunnerClient(runner.address, default_timeout_s=30)
        try:
            stream = client.chat_stream([ChatMessage("user", "/tps 20 /long 1000")])
            assert isinstance(await anext(stream), StreamStarted)
            assert await client.unload_model("fake", drain_timeout_s=0.2) == 1
            events = [event async for event in stream]
            assert isinstance(events[-1], StreamFinished)
            assert events[-1].reason == "aborted"
            assert not await client.check_health()  # the default model is not loaded
            async for _ in client.load_model("fake"):
                pass
            assert await client.check_health()
        finally:
            await client.close()


async def test_a_load_that_cannot_fit_is_resource_exhausted() -> None:
    with running_runner("--max-loaded-models", "1") as runner:
        client = GrpcRunnerClient(runner.address, default_timeout_s=30)
        try:
            with pytest.raises(RunnerBusyError, match="RUNNER_MAX_LOADED_MODELS"):
                async for _ in client.load_model("more", source="x", backend="fake"):
                    pass
            assert "load failed" in (await client.get_model_info("more")).state_reason
            with pytest.raises(RunnerModelNotFoundError, match="pass its source"):
                async for _ in client.load_model("never-seen"):
                    pass
            with pytest.raises(RunnerInvalidRequestError, match="backend"):
                async for _ in client.load_model("x", source="y", backend="tensorflow"):
                    pass
        finally:
            await client.close()


async def test_openai_backend_behind_the_runner() -> None:
    with fake_openai_server() as (url, _):
        args = ("--backend", "openai", "--model", "upstream-model", "--model-source", url)
        with running_runner(*args) as runner:
            client = GrpcRunnerClient(runner.address, default_timeout_s=30)
            try:
                text = []
                async for event in client.chat_stream([ChatMessage("user", "echo: It works")]):
                    if not isinstance(event, (StreamStarted, StreamFinished)):
                        text.append(event.text)
                assert "".join(text) == "It works"
                assert await client.count_tokens([ChatMessage("user", "a b c")]) == 4
            finally:
                await client.close()


async def test_bad_input_is_refused_and_the_runner_keeps_serving() -> None:
    with running_runner("--fake-tokens-per-second", "50") as runner:
        client = GrpcRunnerClient(runner.address, default_timeout_s=60)
        try:
            # Someone else's stream runs throughout.
            other = client.chat_stream([ChatMessage("user", "/long 40")])
            assert isinstance(await anext(other), StreamStarted)
            huge = "x" * (100 * 1024 * 1024)
            with pytest.raises(RunnerInvalidRequestError, match="RUNNER_MAX_PROMPT_CHARS"):
                await reply(client, huge)
            del huge
            with pytest.raises(RunnerModelNotFoundError, match="gpt-9"):
                await reply(client, "hi", model="gpt-9")
            long_prompt = "word " * 5000  # the fake model's context is 4096 tokens
            with pytest.raises(RunnerInvalidRequestError, match="context"):
                await reply(client, long_prompt)
            async with aio.insecure_channel(runner.address) as channel:
                stub = pb_grpc.InferenceStub(channel)
                for field, value in (("temperature", -1.0), ("top_p", 5.0), ("top_k", -3)):
                    request = pb.ChatRequest(
                        conversation=pb.Conversation(
                            messages=[pb.ChatMessage(role="user", content="hi")]
                        )
                    )
                    setattr(request.sampling, field, value)
                    call = stub.ChatStream(request, timeout=10)
                    with pytest.raises(aio.AioRpcError) as error:
                        await call.read()
                    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                    assert field in (error.value.details() or "")
                health = health_pb2_grpc.HealthStub(channel)
                check = health_pb2.HealthCheckRequest(service="model_runner.v1.Inference")
                response = await health.Check(check, timeout=5)
                assert response.status == health_pb2.HealthCheckResponse.SERVING
            events = [event async for event in other]
            assert isinstance(events[-1], StreamFinished)
            assert events[-1].reason == "eos"
        finally:
            await client.close()
