"""Typed async client for the model runner; the only code outside the runner that speaks gRPC.

    client = GrpcRunnerClient("127.0.0.1:50051")
    async with contextlib.aclosing(client.chat_stream([ChatMessage("user", "Hi")])) as events:
        async for event in events:
            ...  # StreamStarted, then StreamDelta..., then StreamFinished
    await client.close()

Channels are created lazily inside the running event loop (grpc.aio objects belong to one
loop) and reused. Every call carries a deadline. Closing a `chat_stream` iterator early, or
cancelling the task that reads it, cancels the call, so the runner frees the sequence.
Errors are `model_runner.client_errors.RunnerError` subclasses and the value types live in
`model_runner.client_types`; both are re-exported here, so callers import only this module.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from contextlib import aclosing

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from model_runner.client_channels import channel_options, spreads_calls
from model_runner.client_errors import (
    RunnerBusyError,
    RunnerDeadlineError,
    RunnerError,
    RunnerInternalError,
    RunnerInvalidRequestError,
    RunnerModelNotFoundError,
    RunnerRejectedError,
    RunnerUnavailableError,
    RunnerUnsupportedError,
    error_from_rpc,
)
from model_runner.client_session import SessionChannel
from model_runner.client_streams import call_stream, push_events, session_into, session_stream
from model_runner.client_types import (
    ChatMessage,
    GenerationOptions,
    LoadProgressEvent,
    ModelDetails,
    ModelSummary,
    RunnerEvent,
    RunnerLoad,
    StreamDelta,
    StreamFinished,
    StreamStarted,
    chat_request_to_proto,
    conversation_to_proto,
    details_from_proto,
    load_from_proto,
    load_progress_from_proto,
    summary_from_proto,
)
from model_runner.v1 import runner_pb2 as pb
from model_runner.v1 import runner_pb2_grpc as pb_grpc

__all__ = [
    "ChatMessage",
    "GenerationOptions",
    "GrpcRunnerClient",
    "LoadProgressEvent",
    "ModelDetails",
    "ModelSummary",
    "RunnerBusyError",
    "RunnerDeadlineError",
    "RunnerError",
    "RunnerEvent",
    "RunnerInternalError",
    "RunnerInvalidRequestError",
    "RunnerLoad",
    "RunnerModelNotFoundError",
    "RunnerRejectedError",
    "RunnerUnavailableError",
    "RunnerUnsupportedError",
    "StreamDelta",
    "StreamFinished",
    "StreamStarted",
]

INFERENCE_HEALTH_SERVICE = "model_runner.v1.Inference"


class GrpcRunnerClient:
    """Async client for one runner address (or a `dns:///` name with several replicas)."""

    def __init__(
        self,
        target: str,
        *,
        default_timeout_s: float = 600.0,
        connect_timeout_s: float = 5.0,
        unary_timeout_s: float = 30.0,
        pool_size: int = 1,
        sessions: bool = True,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self._target = target
        self._default_timeout_s = default_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._unary_timeout_s = unary_timeout_s
        self._pool_size = pool_size
        self._channels: list[aio.Channel] = []
        # Chat streams share one ChatSession call per channel (fewer, larger gRPC messages),
        # except where calls must spread over several runners: a session is one call, which
        # round_robin would pin to one of them.
        self._sessions_enabled = sessions and not spreads_calls(target)
        self._sessions: dict[aio.Channel, SessionChannel] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next = itertools.count()

    @property
    def target(self) -> str:
        return self._target

    async def close(self) -> None:
        """Closes the channels; cancels calls still open. The client can be used again."""
        channels, self._channels = self._channels, []
        sessions, self._sessions = self._sessions, {}
        if self._loop is asyncio.get_running_loop():
            for session in sessions.values():
                await session.close()
            for channel in channels:
                await channel.close(None)
        self._loop = None

    def _channel(self) -> aio.Channel:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # Channels belong to the loop that made them; a new loop needs new ones.
            self._channels = [
                aio.insecure_channel(self._target, options=channel_options(self._target))
                for _ in range(self._pool_size)
            ]
            self._sessions = {}
            self._loop = loop
        if self._pool_size == 1:
            return self._channels[0]
        return self._channels[next(self._next) % self._pool_size]

    async def _connected(self) -> aio.Channel:
        """A ready channel; fails fast when the runner refuses, within connect_timeout_s."""
        channel = self._channel()
        state = channel.get_state(try_to_connect=True)
        if state is grpc.ChannelConnectivity.READY:
            return channel
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._connect_timeout_s
        while state is not grpc.ChannelConnectivity.READY:
            if state in (
                grpc.ChannelConnectivity.TRANSIENT_FAILURE,
                grpc.ChannelConnectivity.SHUTDOWN,
            ):
                raise RunnerUnavailableError(f"cannot connect to the runner at {self._target}")
            try:
                async with asyncio.timeout_at(deadline):
                    await channel.wait_for_state_change(state)
            except TimeoutError:
                raise RunnerUnavailableError(
                    f"no connection to the runner at {self._target} "
                    f"within {self._connect_timeout_s} s"
                ) from None
            state = channel.get_state(try_to_connect=True)
        return channel

    async def chat_stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str = "",
        request_id: str = "",
        options: GenerationOptions | None = None,
        timeout_s: float | None = None,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> AsyncGenerator[RunnerEvent, None]:
        """Streams StreamStarted, StreamDelta..., StreamFinished for one chat turn.

        `metadata` goes with the call (the caller's `x-request-id` and W3C `traceparent`).
        Raises `RunnerRejectedError` subclasses before StreamStarted, `RunnerUnavailableError`
        when the runner cannot be reached or the stream breaks (also after StreamStarted).
        """
        request, timeout, channel = await self._prepare(
            messages, model, request_id, options, timeout_s
        )
        if self._sessions_enabled:
            session = self._session_on(channel)
            events = session_stream(session, request, timeout, metadata, self._target)
            try:
                async with aclosing(events):
                    async for event in events:
                        yield event
                return
            except RunnerUnsupportedError:
                if not self._fall_back_to_calls(session):
                    raise
        events = call_stream(channel, request, timeout, metadata, self._target)
        async with aclosing(events):
            async for event in events:
                yield event

    async def chat_into(
        self,
        messages: Sequence[ChatMessage],
        *,
        on_event: Callable[[RunnerEvent], None],
        model: str = "",
        request_id: str = "",
        options: GenerationOptions | None = None,
        timeout_s: float | None = None,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        """`chat_stream`, pushed: calls `on_event` with each event as it arrives and returns
        after StreamFinished, with the same errors. On a session the reader calls `on_event`
        directly, so an event costs no wake-up of the caller's task (a relay's hot path);
        `on_event` must not block, and what it raises ends the request and is raised here."""
        request, timeout, channel = await self._prepare(
            messages, model, request_id, options, timeout_s
        )
        if self._sessions_enabled:
            session = self._session_on(channel)
            try:
                await session_into(session, request, timeout, metadata, self._target, on_event)
                return
            except RunnerUnsupportedError:
                if not self._fall_back_to_calls(session):
                    raise
        await push_events(call_stream(channel, request, timeout, metadata, self._target), on_event)

    async def _prepare(
        self,
        messages: Sequence[ChatMessage],
        model: str,
        request_id: str,
        options: GenerationOptions | None,
        timeout_s: float | None,
    ) -> tuple[pb.ChatRequest, float, aio.Channel]:
        """A chat's request, its timeout and a connected channel."""
        try:
            request = chat_request_to_proto(
                messages, model, request_id or uuid.uuid4().hex, options
            )
        except (ValueError, TypeError) as exc:  # e.g. a negative max_tokens or seed
            raise RunnerInvalidRequestError(f"invalid generation options: {exc}") from exc
        timeout = self._default_timeout_s if timeout_s is None else timeout_s
        return request, timeout, await self._connected()

    def _fall_back_to_calls(self, session: SessionChannel) -> bool:
        """After a session refused a chat as UNSUPPORTED: True when the runner has no
        ChatSession (an older runner; nothing was started), so this and later chats use one
        ChatStream call each."""
        if not session.unimplemented:
            return False
        self._sessions_enabled = False
        return True

    def _session_on(self, channel: aio.Channel) -> SessionChannel:
        session = self._sessions.get(channel)
        if session is None or session.broken:
            session = SessionChannel(channel, self._target)
            self._sessions[channel] = session
        return session

    async def abort(self, request_id: str) -> bool:
        """Aborts a request by id (from any connection); False if unknown or finished."""
        stub = pb_grpc.InferenceStub(await self._connected())
        try:
            response = await stub.Abort(
                pb.AbortRequest(request_id=request_id), timeout=self._unary_timeout_s
            )
        except aio.AioRpcError as exc:
            raise error_from_rpc(exc, started=False, target=self._target) from exc
        return response.found

    async def count_tokens(self, messages: Sequence[ChatMessage], *, model: str = "") -> int:
        """Prompt tokens of a conversation after the chat template."""
        stub = pb_grpc.InferenceStub(await self._connected())
        request = pb.TokenizeRequest(model=model, conversation=conversation_to_proto(messages))
        try:
            response = await stub.CountTokens(request, timeout=self._unary_timeout_s)
        except aio.AioRpcError as exc:
            raise error_from_rpc(exc, started=False, target=self._target) from exc
        return response.count

    async def list_models(self, *, loaded_only: bool = False) -> list[ModelSummary]:
        """The models the runner knows (loaded or loadable), or only the loaded ones."""
        stub = pb_grpc.ModelsStub(await self._connected())
        request = pb.ListModelsRequest(loaded_only=loaded_only)
        try:
            response = await stub.ListModels(request, timeout=self._unary_timeout_s)
        except aio.AioRpcError as exc:
            raise error_from_rpc(exc, started=False, target=self._target) from exc
        return [summary_from_proto(m) for m in response.models]

    async def get_model_info(self, model: str = "") -> ModelDetails:
        """Describes one model ("" = the default). Raises `RunnerModelNotFoundError`."""
        stub = pb_grpc.ModelsStub(await self._connected())
        request = pb.GetModelInfoRequest(model=model)
        try:
            info = await stub.GetModelInfo(request, timeout=self._unary_timeout_s)
        except aio.AioRpcError as exc:
            raise error_from_rpc(exc, started=False, target=self._target) from exc
        return details_from_proto(info)

    async def load_model(
        self,
        model: str,
        *,
        source: str = "",
        backend: str = "",
        keep_alive_s: float | None = None,
        options: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> AsyncGenerator[LoadProgressEvent, None]:
        """Loads (and, with `source`, registers) a model, yielding progress until "ready".

        Raises `RunnerModelNotFoundError` (unknown id without source, missing file),
        `RunnerBusyError` (it cannot fit: RESOURCE_EXHAUSTED), `RunnerInvalidRequestError`.
        Closing the iterator early stops listening; the load itself goes on.
        """
        request = pb.LoadModelRequest(
            model=model, source=source, backend=backend, options=dict(options or {})
        )
        if keep_alive_s is not None:
            request.keep_alive.FromNanoseconds(int(keep_alive_s * 1e9))
        stub = pb_grpc.ModelsStub(await self._connected())
        call = stub.LoadModel(request, timeout=timeout_s or self._default_timeout_s)
        try:
            async for progress in call:
                yield load_progress_from_proto(progress)
        except aio.AioRpcError as exc:
            raise error_from_rpc(exc, started=False, target=self._target) from exc
        finally:
            call.cancel()

    async def unload_model(self, model: str, *, drain_timeout_s: float = 0.0) -> int:
        """Unloads a model after letting its requests run for up to `drain_timeout_s`; returns
        how many were aborted. Raises `RunnerModelNotFoundError` for an unknown model."""
        request = pb.UnloadModelRequest(model=model)
        request.drain_timeout.FromNanoseconds(int(drain_timeout_s * 1e9))
        stub = pb_grpc.ModelsStub(await self._connected())
        try:
            response = await stub.UnloadModel(
                request, timeout=self._unary_timeout_s + drain_timeout_s
            )
        except aio.AioRpcError as exc:
            raise error_from_rpc(exc, started=False, target=self._target) from exc
        return response.aborted_requests

    async def get_load(self) -> RunnerLoad:
        stub = pb_grpc.ModelsStub(await self._connected())
        try:
            load = await stub.GetLoad(pb.GetLoadRequest(), timeout=self._unary_timeout_s)
        except aio.AioRpcError as exc:
            raise error_from_rpc(exc, started=False, target=self._target) from exc
        return load_from_proto(load)

    async def check_health(self) -> bool:
        """True when the runner has a warm model and admits requests; False otherwise
        (including when it cannot be reached)."""
        try:
            stub = health_pb2_grpc.HealthStub(await self._connected())
            response = await stub.Check(
                health_pb2.HealthCheckRequest(service=INFERENCE_HEALTH_SERVICE),
                timeout=self._connect_timeout_s,
            )
        except (aio.AioRpcError, RunnerUnavailableError):
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)
