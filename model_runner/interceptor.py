"""The one place that maps the runner's domain errors to gRPC status codes.

A server interceptor wraps every unary-unary and unary-stream handler. Streaming handlers are
async generators, which a plain coroutine wrapper would break (grpc/grpc#28728), so those get
an async-generator wrapper. Errors can only become a status before the first message is sent;
the engine guarantees that (after Started it reports failures in-band as Finished).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, NoReturn, cast

import grpc
from grpc import aio

from model_runner.errors import (
    DeadlineExceeded,
    DeadlineTooShort,
    Draining,
    DuplicateRequest,
    EngineError,
    EngineUnavailable,
    InsufficientResources,
    InvalidArgument,
    ModelNotFound,
    ModelNotLoaded,
    NotSupported,
    QueueFull,
)

logger = logging.getLogger(__name__)

RETRY_PUSHBACK_KEY = "grpc-retry-pushback-ms"

_STATUS: dict[type[EngineError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    ModelNotFound: grpc.StatusCode.NOT_FOUND,
    ModelNotLoaded: grpc.StatusCode.FAILED_PRECONDITION,
    DuplicateRequest: grpc.StatusCode.ALREADY_EXISTS,
    QueueFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
    InsufficientResources: grpc.StatusCode.RESOURCE_EXHAUSTED,
    DeadlineTooShort: grpc.StatusCode.DEADLINE_EXCEEDED,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    Draining: grpc.StatusCode.UNAVAILABLE,
    EngineUnavailable: grpc.StatusCode.UNAVAILABLE,
    NotSupported: grpc.StatusCode.UNIMPLEMENTED,
}


def status_for(error: EngineError) -> tuple[grpc.StatusCode, tuple[tuple[str, str], ...]]:
    """The status code and trailing metadata for a domain error."""
    for cls in type(error).__mro__:
        code = _STATUS.get(cls)
        if code is not None:
            break
    else:
        code = grpc.StatusCode.INTERNAL
    if isinstance(error, QueueFull):
        return code, ((RETRY_PUSHBACK_KEY, str(error.retry_after_ms)),)
    return code, ()


async def abort_with(context: aio.ServicerContext[Any, Any], exc: BaseException) -> NoReturn:
    """Ends the call with the status that fits `exc`; unknown errors become INTERNAL."""
    if isinstance(exc, EngineError):
        code, trailing = status_for(exc)
        await context.abort(code, exc.message, trailing_metadata=trailing)
    logger.error("unexpected error in a handler", exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal runner error: {type(exc).__name__}")


_Unary = Callable[[Any, aio.ServicerContext[Any, Any]], Awaitable[Any]]
_Stream = Callable[[Any, aio.ServicerContext[Any, Any]], AsyncIterator[Any]]


def _wrap_unary(behavior: _Unary) -> _Unary:
    async def handler(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await behavior(request, context)
        except (asyncio.CancelledError, aio.AbortError):
            raise
        except Exception as exc:
            await abort_with(context, exc)

    return handler


def _wrap_stream(behavior: _Stream) -> _Stream | _Unary:
    if inspect.iscoroutinefunction(behavior):
        # A handler that writes with context.write() (e.g. grpc's own health Watch).
        return _wrap_unary(cast(_Unary, behavior))

    async def handler(request: Any, context: aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        try:
            # aclosing: when gRPC closes this wrapper, the inner generator is closed right away
            # (freeing its sequence), not whenever the garbage collector gets to it.
            async with aclosing(behavior(request, context)) as messages:  # type: ignore[type-var]
                async for message in messages:
                    yield message
        except (asyncio.CancelledError, aio.AbortError):
            raise
        except Exception as exc:
            await abort_with(context, exc)

    return handler


class ErrorMappingInterceptor(aio.ServerInterceptor):  # type: ignore[type-arg]
    """Maps exceptions escaping any handler to a status; see the module docstring."""

    def __init__(self) -> None:
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        method: str = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None:
            return cached
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        wrapped = handler
        if handler.unary_unary is not None:
            wrapped = grpc.unary_unary_rpc_method_handler(
                _wrap_unary(cast(_Unary, handler.unary_unary)),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        elif handler.unary_stream is not None:
            wrapped = grpc.unary_stream_rpc_method_handler(
                _wrap_stream(cast(_Stream, handler.unary_stream)),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        self._wrapped[method] = wrapped
        return wrapped
