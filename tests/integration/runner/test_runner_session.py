"""ChatSession: many chat streams multiplexed over one call, against a real runner process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import cast

import grpc
import pytest
from grpc import aio

from model_runner import client_session
from model_runner.client import (
    ChatMessage,
    GrpcRunnerClient,
    RunnerBusyError,
    RunnerDeadlineError,
    RunnerModelNotFoundError,
    RunnerUnavailableError,
    StreamDelta,
    StreamFinished,
    StreamStarted,
)
from model_runner.v1 import runner_pb2 as pb
from model_runner.v1 import runner_pb2_grpc as pb_grpc
from tests.support.runner_process import RunnerProcess, running_runner

from .conftest import SLOW, eventually, running_at_most, text_of

pytestmark = pytest.mark.integration


def chat(request_id: str, text: str | None, model: str = "") -> pb.SessionRequest:
    """A chat start; `text` None sends an empty conversation."""
    messages = [] if text is None else [pb.ChatMessage(role="user", content=text)]
    conversation = pb.Conversation(messages=messages)
    request = pb.ChatRequest(request_id=request_id, model=model, conversation=conversation)
    return pb.SessionRequest(chat=pb.SessionChat(request=request))


Session = aio.StreamStreamCall[pb.SessionRequest, pb.SessionResponse]


def open_session(
    stub: pb_grpc.InferenceStub, requests: list[pb.SessionRequest] | None = None
) -> Session:
    # The generated stubs type calls as sync grpc's; on an aio channel this is the aio call.
    call = stub.ChatSession(iter(requests) if requests is not None else None)  # type: ignore[arg-type]
    return cast(Session, call)


async def read(call: Session) -> pb.SessionResponse | None:
    """The next message, None at the end of the call."""
    response = await call.read()
    return response if isinstance(response, pb.SessionResponse) else None


async def collect(call: Session) -> tuple[int, dict[str, list[pb.GenerateResponse]]]:
    """Reads a session to its end: (messages received, events by request id)."""
    messages = 0
    events: dict[str, list[pb.GenerateResponse]] = {}
    async for response in call:
        messages += 1
        for event in response.events:
            events.setdefault(event.request_id, []).append(event)
        for rejection in response.rejections:
            events.setdefault(rejection.request_id, []).append(rejection)  # type: ignore[arg-type]
    return messages, events


@pytest.fixture
async def stub(runner: RunnerProcess) -> AsyncIterator[pb_grpc.InferenceStub]:
    async with aio.insecure_channel(runner.address) as channel:
        yield pb_grpc.InferenceStub(channel)


async def test_many_streams_share_one_call_in_fewer_messages(
    stub: pb_grpc.InferenceStub, runner: RunnerProcess
) -> None:
    prompts = {f"req-{i}": f"/long {40 + i}" for i in range(8)}
    call = open_session(stub, [chat(rid, text) for rid, text in prompts.items()])
    messages, events = await asyncio.wait_for(collect(call), 30)
    assert await call.code() is grpc.StatusCode.OK  # half-closed: ends when all have finished

    reference = GrpcRunnerClient(runner.address, sessions=False)
    try:
        tokens = 0
        for request_id, prompt in prompts.items():
            got = events[request_id]
            kinds = [event.WhichOneof("event") for event in got]
            assert kinds[0] == "started"
            assert kinds[-1] == "finished"
            assert set(kinds[1:-1]) == {"delta"}
            text = "".join(event.delta.text for event in got[1:-1])
            # Same text as a ChatStream call of its own; merging never loses or reorders.
            assert text == await text_of(reference, prompt)
            length = 40 + int(request_id.removeprefix("req-"))
            assert len(text.split()) == length
            tokens += length
            assert got[-1].finished.usage.completion_tokens == length
            assert got[-2].delta.completion_tokens == length
    finally:
        await reference.close()
    # 8 streams at full speed: one message carries many tokens, often of several requests.
    # Counted against tokens, not merged events: how many events a merge leaves depends on
    # timing (CI saw 56 messages for 80 merged events, 364 tokens and ends).
    assert messages * 2 < tokens + 2 * len(prompts)


async def test_one_refusal_does_not_disturb_the_others(stub: pb_grpc.InferenceStub) -> None:
    requests = [
        chat("good", "/long 5"),
        chat("unknown-model", "hi", model="no-such-model"),
        chat("", "no id"),
        chat("empty", None),
    ]
    call = open_session(stub, requests)
    _, events = await asyncio.wait_for(collect(call), 30)
    assert events["good"][-1].finished.usage.completion_tokens == 5
    unknown = events["unknown-model"]
    assert [r.code for r in unknown] == [grpc.StatusCode.NOT_FOUND.value[0]]  # type: ignore[attr-defined]
    assert "no-such-model" in unknown[0].message  # type: ignore[attr-defined]
    (no_id,) = events[""]
    assert no_id.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]  # type: ignore[attr-defined]
    (empty,) = events["empty"]
    assert empty.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]  # type: ignore[attr-defined]


async def test_cancel_frees_the_slot_and_sends_nothing_more(
    stub: pb_grpc.InferenceStub, runner: RunnerProcess
) -> None:
    admin = GrpcRunnerClient(runner.address)
    call = open_session(stub)
    try:
        await call.write(chat("slow", SLOW))
        await call.write(chat("fast", "/tps 20 /long 10"))
        seen: dict[str, list[str | None]] = {"slow": [], "fast": []}
        while not seen["slow"] or "delta" not in seen["slow"]:
            response = await read(call)
            assert response is not None
            for event in response.events:
                seen[event.request_id].append(event.WhichOneof("event"))
        await call.write(pb.SessionRequest(cancel_request_id="slow"))
        await eventually(lambda: running_at_most(admin, 1))
        await call.done_writing()
        after_cancel: list[str | None] = []
        while (response := await read(call)) is not None:
            for event in response.events:
                (seen["fast"] if event.request_id == "fast" else after_cancel).append(
                    event.WhichOneof("event")
                )
        assert seen["fast"][-1] == "finished"
        # Events already on their way may arrive, but never a Finished for a cancelled one.
        assert "finished" not in after_cancel
        assert await call.code() is grpc.StatusCode.OK
        await eventually(lambda: running_at_most(admin, 0))
    finally:
        call.cancel()
        await admin.close()


async def test_cancelling_the_call_aborts_every_request(
    stub: pb_grpc.InferenceStub, runner: RunnerProcess
) -> None:
    admin = GrpcRunnerClient(runner.address)
    call = open_session(stub)
    try:
        for i in range(3):
            await call.write(chat(f"slow-{i}", SLOW))
        started = 0
        while started < 3:
            response = await read(call)
            assert response is not None
            started += sum(e.WhichOneof("event") == "started" for e in response.events)
        call.cancel()
        await eventually(lambda: running_at_most(admin, 0))
    finally:
        await admin.close()


async def test_client_streams_concurrently_and_errors_stay_per_request(
    runner: RunnerProcess,
) -> None:
    client = GrpcRunnerClient(runner.address, default_timeout_s=30)
    try:
        texts = await asyncio.gather(*(text_of(client, f"/long {20 + i}") for i in range(6)))
        assert [len(text.split()) for text in texts] == [20 + i for i in range(6)]
        with pytest.raises(RunnerModelNotFoundError, match="no-such-model"):
            async for _ in client.chat_stream([ChatMessage("user", "hi")], model="no-such-model"):
                pass
        # The session survived the refusal.
        assert len((await text_of(client, "/long 3")).split()) == 3
    finally:
        await client.close()


async def test_queue_full_is_busy_with_a_retry_hint() -> None:
    with running_runner("--max-running", "1", "--max-queued", "0") as runner:
        client = GrpcRunnerClient(runner.address, default_timeout_s=30)
        try:
            first = client.chat_stream([ChatMessage("user", SLOW)], request_id="first")
            async with contextlib.aclosing(first):
                assert isinstance(await anext(first), StreamStarted)
                with pytest.raises(RunnerBusyError) as refused:
                    async for _ in client.chat_stream([ChatMessage("user", "hi")]):
                        pass
                assert refused.value.retry_after_ms is not None
        finally:
            await client.close()


async def test_a_dead_runner_fails_live_streams_and_a_new_one_is_used() -> None:
    with running_runner() as runner:
        client = GrpcRunnerClient(runner.address, default_timeout_s=30, connect_timeout_s=5)
        try:
            stream = client.chat_stream([ChatMessage("user", SLOW)])
            async with contextlib.aclosing(stream):
                assert isinstance(await anext(stream), StreamStarted)
                assert isinstance(await anext(stream), StreamDelta)
                runner.kill()
                with pytest.raises(RunnerUnavailableError):
                    async for _ in stream:
                        pass
        finally:
            await client.close()
    with running_runner() as again:
        client = GrpcRunnerClient(again.address, default_timeout_s=30)
        try:
            assert len((await text_of(client, "/long 4")).split()) == 4
        finally:
            await client.close()


class _ChatStreamOnly(pb_grpc.InferenceServicer):
    """An older runner: ChatStream but no ChatSession (the generated base answers
    UNIMPLEMENTED)."""

    async def ChatStream(
        self, request: pb.ChatRequest, context: aio.ServicerContext[object, object]
    ) -> AsyncIterator[pb.GenerateResponse]:
        rid = request.request_id
        yield pb.GenerateResponse(request_id=rid, started=pb.Started(model="old"))
        yield pb.GenerateResponse(request_id=rid, delta=pb.Delta(text="hi", completion_tokens=1))
        yield pb.GenerateResponse(
            request_id=rid,
            finished=pb.Finished(reason=pb.FINISH_REASON_EOS, usage=pb.Usage(completion_tokens=1)),
        )


async def test_client_falls_back_to_chat_stream_on_an_older_runner() -> None:
    server = aio.server()
    pb_grpc.add_InferenceServicer_to_server(_ChatStreamOnly(), server)  # type: ignore[abstract]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    client = GrpcRunnerClient(f"127.0.0.1:{port}", default_timeout_s=10)
    try:
        for _ in range(2):  # the second goes straight to ChatStream
            events = [e async for e in client.chat_stream([ChatMessage("user", "x")])]
            assert isinstance(events[0], StreamStarted)
            assert isinstance(events[-1], StreamFinished)
            assert "".join(e.text for e in events if isinstance(e, StreamDelta)) == "hi"
        pushed: list[object] = []
        await client.chat_into([ChatMessage("user", "x")], on_event=pushed.append)
        assert [type(e) for e in pushed] == [StreamStarted, StreamDelta, StreamFinished]
        fresh = GrpcRunnerClient(f"127.0.0.1:{port}", default_timeout_s=10)
        try:  # chat_into finds out by itself
            pushed.clear()
            await fresh.chat_into([ChatMessage("user", "x")], on_event=pushed.append)
            assert [type(e) for e in pushed] == [StreamStarted, StreamDelta, StreamFinished]
        finally:
            await fresh.close()
    finally:
        await client.close()
        await server.stop(None)


class _SilentSession(pb_grpc.InferenceServicer):
    """A wedged runner: takes session requests and never answers them."""

    def __init__(self) -> None:
        self.received: list[pb.SessionRequest] = []
        self.two_received = asyncio.Event()

    async def ChatSession(
        self,
        request_iterator: AsyncIterator[pb.SessionRequest],
        context: aio.ServicerContext[object, object],
    ) -> AsyncIterator[pb.SessionResponse]:
        async for request in request_iterator:
            self.received.append(request)
            if len(self.received) == 2:
                self.two_received.set()
        yield pb.SessionResponse()  # never reached while the client keeps the call open


async def test_a_silent_runner_fails_the_request_after_its_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client_session, "_DEADLINE_GRACE_S", 0.1)
    monkeypatch.setattr(client_session, "_SWEEP_INTERVAL_S", 0.05)
    servicer = _SilentSession()  # type: ignore[abstract]
    server = aio.server()
    pb_grpc.add_InferenceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    client = GrpcRunnerClient(f"127.0.0.1:{port}")
    try:
        async with asyncio.timeout(10):
            with pytest.raises(RunnerDeadlineError, match="did not end the request"):
                async for _ in client.chat_stream(
                    [ChatMessage("user", "x")], request_id="stuck", timeout_s=0.2
                ):
                    pass
            # ...and told the runner to drop it.
            await servicer.two_received.wait()
        assert servicer.received[0].chat.timeout.ToNanoseconds() == 200_000_000
        assert servicer.received[1].WhichOneof("action") == "cancel_request_id"
        assert servicer.received[1].cancel_request_id == "stuck"
    finally:
        await client.close()
        await server.stop(None)
