"""A real runner process with the transformers backend on the tiny model (CPU, float32).

The same code path as production: CLI, settings, model loading, the engine thread, batching,
gRPC. Forward-pass sharing is asserted in the unit tests (through the scheduler's counters);
here every concurrent stream must come out exactly as it does alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from grpc import aio

from model_runner.client import (
    ChatMessage,
    GenerationOptions,
    GrpcRunnerClient,
    RunnerEvent,
    StreamDelta,
    StreamFinished,
    StreamStarted,
)
from model_runner.client_errors import RunnerBusyError
from model_runner.client_types import chat_request_to_proto
from model_runner.v1 import runner_pb2 as pb
from model_runner.v1 import runner_pb2_grpc as pb_grpc
from tests.support.runner_process import RunnerProcess, running_runner
from tests.support.tiny_model import TinyModel, build_tiny_model

from .conftest import eventually

# Importing torch and loading take seconds on an idle machine but over a minute on a busy one.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

GREEDY = GenerationOptions(temperature=0.0, max_tokens=24)


LONG_REPLY_TOKENS = 16_000


@pytest.fixture(scope="module")
def tiny_runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerProcess]:
    # A long context, so that a reply can outlast the deadline test's deadline: on a fast
    # AVX-512 host the tiny model decoded 2,000 tokens in under 1.5 s.
    tiny_model = build_tiny_model(
        tmp_path_factory.mktemp("tiny-long"), context_tokens=LONG_REPLY_TOKENS + 64
    )
    env = {
        "RUNNER_MAX_TOKENS_CAP": str(LONG_REPLY_TOKENS),
        "RUNNER_DTYPE": "float32",
        "RUNNER_THREADS": "1",
        "RUNNER_CACHE_DIR": str(tmp_path_factory.mktemp("runner-cache")),
    }
    args = [
        *("--backend", "transformers", "--model", "tiny"),
        *("--model-source", str(tiny_model.model_dir), "--max-running", "4"),
        *("--max-queued", "2", "--grace-seconds", "2"),
    ]
    with running_runner(*args, env=env, timeout_s=240) as runner:
        yield runner


@pytest.fixture
async def tiny_client(tiny_runner: RunnerProcess) -> AsyncIterator[GrpcRunnerClient]:
    client = GrpcRunnerClient(tiny_runner.address, default_timeout_s=60, connect_timeout_s=5)
    yield client
    await client.close()


def _chat(text: str) -> list[ChatMessage]:
    return [ChatMessage("user", text)]


async def _events(
    client: GrpcRunnerClient, text: str, options: GenerationOptions = GREEDY, **kw: object
) -> list[RunnerEvent]:
    stream = client.chat_stream(_chat(text), options=options, **kw)  # type: ignore[arg-type]
    async with contextlib.aclosing(stream) as events:
        return [event async for event in events]


def _text(events: list[RunnerEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, StreamDelta))


async def _idle(client: GrpcRunnerClient) -> bool:
    load = await client.get_load()
    return load.running == 0 and load.queued == 0


async def test_streams_a_reply_from_the_real_model(tiny_client: GrpcRunnerClient) -> None:
    events = await _events(tiny_client, "What is the capital of France?")
    started, finished = events[0], events[-1]
    assert isinstance(started, StreamStarted)
    assert started.model == "tiny"
    assert isinstance(finished, StreamFinished)
    assert finished.reason in ("eos", "length")
    assert finished.completion_tokens > 0
    assert _text(events)
    info = await tiny_client.get_model_info("tiny")
    assert info.backend == "transformers"


async def test_concurrent_streams_all_finish_exactly(tiny_client: GrpcRunnerClient) -> None:
    prompts = ["Hello!", "What is the capital of France?", "Tell me more.", "42", "café"]
    alone = [_text(await _events(tiny_client, p)) for p in prompts[:4]]
    # Five at once with four running slots: one waits in the queue, then joins the batch.
    together = await asyncio.gather(*(_events(tiny_client, p) for p in prompts))
    assert [_text(e) for e in together[:4]] == alone
    assert all(isinstance(e[-1], StreamFinished) for e in together)


async def test_stop_string_spanning_tokens(tiny_client: GrpcRunnerClient) -> None:
    full = _text(await _events(tiny_client, "Hello!"))
    stop = full[3:7]
    events = await _events(
        tiny_client, "Hello!", GenerationOptions(0.0, max_tokens=24, stop=(stop,))
    )
    finished = events[-1]
    assert isinstance(finished, StreamFinished)
    assert finished.reason == "stop"
    assert _text(events) == full[: full.index(stop)]


def _long_request(max_tokens: int = 400) -> pb.ChatRequest:
    """A greedy chat that ignores EOS (the random tiny model ends its replies early)."""
    request = chat_request_to_proto(
        _chat("Hello!"), "", "", GenerationOptions(temperature=0.0, max_tokens=max_tokens)
    )
    request.stopping.ignore_eos = True
    return request


@pytest.fixture
async def stub(tiny_runner: RunnerProcess) -> AsyncIterator[Any]:
    # Any: the generated stubs are typed for the sync API; this is a grpc.aio channel.
    async with aio.insecure_channel(tiny_runner.address) as channel:
        yield pb_grpc.InferenceStub(channel)


async def test_cancelled_stream_frees_its_slot(tiny_client: GrpcRunnerClient, stub: Any) -> None:
    call = stub.ChatStream(_long_request(), timeout=60)
    async for response in call:
        if response.WhichOneof("event") == "delta":
            break
    assert (await tiny_client.get_load()).running == 1
    call.cancel()
    await eventually(lambda: _idle(tiny_client), timeout_s=10)


async def test_deadline_ends_with_time_limit_and_the_text_so_far(
    stub: Any,
) -> None:
    # 16,000 tokens take many seconds even for the tiny model; the deadline ends the stream first.
    responses = [r async for r in stub.ChatStream(_long_request(LONG_REPLY_TOKENS), timeout=1.5)]
    finished = responses[-1].finished
    assert responses[-1].WhichOneof("event") == "finished"
    assert pb.FinishReason.Name(finished.reason) == "FINISH_REASON_TIME_LIMIT"
    deltas = [r.delta for r in responses if r.WhichOneof("event") == "delta"]
    assert deltas
    # Tokens whose text is held back (half a UTF-8 character) count but send no Delta.
    assert finished.usage.completion_tokens >= deltas[-1].completion_tokens > 0


async def test_full_queue_is_refused_before_streaming(
    tiny_client: GrpcRunnerClient, stub: Any
) -> None:
    calls = [stub.ChatStream(_long_request(), timeout=60) for _ in range(6)]
    holders = [asyncio.create_task(_drain(call)) for call in calls]
    try:
        await eventually(
            lambda: _load_is(tiny_client, running=4, queued=2), timeout_s=30, interval_s=0.05
        )
        with pytest.raises(RunnerBusyError) as refused:
            await _events(tiny_client, "one too many")
        assert (refused.value.retry_after_ms or 0) > 0
    finally:
        for call in calls:
            call.cancel()
        await asyncio.gather(*holders, return_exceptions=True)
    await eventually(lambda: _idle(tiny_client), timeout_s=10)


async def _drain(call: Any) -> None:
    async for _ in call:
        pass


async def _load_is(client: GrpcRunnerClient, *, running: int, queued: int) -> bool:
    load = await client.get_load()
    return load.running == running and load.queued == queued


def test_tiny_model_files_exist(tiny_model: TinyModel) -> None:
    assert (Path(tiny_model.model_dir) / "config.json").is_file()
    assert tiny_model.gguf_path.stat().st_size > 0
