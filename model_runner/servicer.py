"""gRPC servicers: proto -> domain, call the engine, domain -> proto. Nothing else.

Errors are not handled here: domain errors escape to `ErrorMappingInterceptor`, which is safe
because nothing is sent before the engine's first event (Started) -- the engine raises its
rejections before that.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

from grpc import aio

from model_runner.coalesce import coalesce
from model_runner.domain import Conversation, Delta, Finished, GenerationRequest, Started
from model_runner.engine import Engine
from model_runner.errors import InvalidArgument
from model_runner.generation_telemetry import GenerationCall, GenerationTelemetry
from model_runner.proto_convert import (
    chat_request_from_proto,
    conversation_from_proto,
    finished_to_proto,
    generate_request_from_proto,
    keep_alive_from_proto,
    load_to_proto,
    load_update_to_proto,
    model_to_proto,
    started_to_proto,
)
from model_runner.session import SessionCall
from model_runner.v1 import runner_pb2 as pb
from model_runner.v1 import runner_pb2_grpc as pb_grpc

Context = aio.ServicerContext[Any, Any]


class InferenceServicer(pb_grpc.InferenceServicer):
    def __init__(self, engine: Engine, telemetry: GenerationTelemetry | None = None) -> None:
        self._engine = engine
        self._telemetry = telemetry or GenerationTelemetry()

    async def ChatStream(
        self, request: pb.ChatRequest, context: Context
    ) -> AsyncIterator[pb.GenerateResponse]:
        call = self._telemetry.begin("ChatStream", context.invocation_metadata())
        try:
            generation = chat_request_from_proto(request, context.time_remaining())
        except Exception as exc:
            call.end(exc)
            raise
        relay = self._relay(generation, call)
        async with aclosing(relay):
            async for message in relay:
                yield message

    async def Generate(
        self, request: pb.GenerateRequest, context: Context
    ) -> AsyncIterator[pb.GenerateResponse]:
        call = self._telemetry.begin("Generate", context.invocation_metadata())
        try:
            generation = generate_request_from_proto(request, context.time_remaining())
        except Exception as exc:
            call.end(exc)
            raise
        relay = self._relay(generation, call)
        async with aclosing(relay):
            async for message in relay:
                yield message

    async def ChatSession(
        self, request_iterator: AsyncIterator[pb.SessionRequest], context: Context
    ) -> AsyncIterator[pb.SessionResponse]:
        session = SessionCall(self._engine, self._telemetry)
        async with aclosing(session.serve(request_iterator)) as responses:
            async for response in responses:
                yield response

    async def _relay(
        self, request: GenerationRequest, call: GenerationCall
    ) -> AsyncGenerator[pb.GenerateResponse, None]:
        request_id = request.request_id
        call.request(request)
        # Merges Deltas that arrive while gRPC still writes the previous message (coalesce.py).
        events = coalesce(self._engine.stream(request))
        GenerateResponse, DeltaMessage = pb.GenerateResponse, pb.Delta  # hot loop: local names
        error: Exception | None = None
        try:
            async for event in events:
                if type(event) is Delta:
                    delta = DeltaMessage(text=event.text, completion_tokens=event.completion_tokens)
                    if event.token_ids:
                        delta.token_ids.extend(event.token_ids)
                    yield GenerateResponse(request_id=request_id, delta=delta)
                elif isinstance(event, Started):
                    request_id = event.request_id
                    call.started(event)
                    yield started_to_proto(event)
                elif isinstance(event, Finished):
                    call.finished(event)
                    yield finished_to_proto(request_id, event)
        except asyncio.CancelledError:
            # The client went away (or the call's deadline passed): free the sequence now.
            if request_id:
                self._engine.abort(request_id)
            raise
        except Exception as exc:  # a refusal (queue full...): the interceptor maps it
            error = exc
            raise
        finally:
            await events.aclose()
            call.end(error)

    async def Abort(self, request: pb.AbortRequest, context: Context) -> pb.AbortResponse:
        if not request.request_id:
            raise InvalidArgument("request_id is empty; pass the id of the request to abort")
        return pb.AbortResponse(found=self._engine.abort(request.request_id))

    async def Tokenize(self, request: pb.TokenizeRequest, context: Context) -> pb.TokenizeResponse:
        result = await self._engine.tokenize_result(
            request.model,
            _tokenize_input(request),
            add_special_tokens=_add_special_tokens(request),
            with_strings=request.return_token_strings,
            timeout_s=context.time_remaining(),
        )
        return pb.TokenizeResponse(
            count=len(result.ids),
            ids=result.ids,
            tokens=result.tokens,
            max_context_tokens=result.max_context_tokens,
        )

    async def CountTokens(
        self, request: pb.TokenizeRequest, context: Context
    ) -> pb.TokenizeResponse:
        ids, info = await self._engine.tokenize(
            request.model,
            _tokenize_input(request),
            add_special_tokens=_add_special_tokens(request),
            timeout_s=context.time_remaining(),
        )
        return pb.TokenizeResponse(count=len(ids), max_context_tokens=info.max_context_tokens)


class ModelsServicer(pb_grpc.ModelsServicer):
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def ListModels(
        self, request: pb.ListModelsRequest, context: Context
    ) -> pb.ListModelsResponse:
        statuses = self._engine.models.statuses(loaded_only=request.loaded_only)
        return pb.ListModelsResponse(models=[model_to_proto(status) for status in statuses])

    async def GetModelInfo(self, request: pb.GetModelInfoRequest, context: Context) -> pb.ModelInfo:
        models = self._engine.models
        return model_to_proto(models.status(models.find(request.model)))

    async def LoadModel(
        self, request: pb.LoadModelRequest, context: Context
    ) -> AsyncIterator[pb.LoadProgress]:
        updates = self._engine.models.load(
            request.model,
            source=request.source,
            backend=request.backend,
            keep_alive_s=keep_alive_from_proto(request),
            options=dict(request.options),
        )
        async for update in updates:
            yield load_update_to_proto(update)

    async def UnloadModel(
        self, request: pb.UnloadModelRequest, context: Context
    ) -> pb.UnloadModelResponse:
        if not request.model:
            raise InvalidArgument("model is empty; name the model to unload (see ListModels)")
        drain = keep_alive_from_proto(request, "drain_timeout") or 0.0
        if drain < 0:
            raise InvalidArgument("drain_timeout is negative; use 0 to abort running requests")
        aborted = await self._engine.models.unload(request.model, drain)
        return pb.UnloadModelResponse(aborted_requests=aborted)

    async def GetLoad(self, request: pb.GetLoadRequest, context: Context) -> pb.LoadInfo:
        return load_to_proto(self._engine.load_snapshot())


def _tokenize_input(request: pb.TokenizeRequest) -> Conversation | str:
    which = request.WhichOneof("input")
    if which == "text":
        return request.text
    if which == "conversation":
        return conversation_from_proto(request.conversation)
    raise InvalidArgument("set either text or conversation")


def _add_special_tokens(request: pb.TokenizeRequest) -> bool:
    return request.add_special_tokens if request.HasField("add_special_tokens") else True
