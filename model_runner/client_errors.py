"""Errors raised by `GrpcRunnerClient`; the only place grpc status codes become our errors.

RunnerError                      base; `code` is a short stable string
├── RunnerUnavailableError       cannot connect, UNAVAILABLE (draining), or the stream broke
│                                after Started (the partial reply is interrupted)
├── RunnerInternalError          the runner failed (INTERNAL, UNKNOWN, ...)
└── RunnerRejectedError          the runner refused the request before starting it
    ├── RunnerInvalidRequestError   INVALID_ARGUMENT / ALREADY_EXISTS: fix the request
    ├── RunnerModelNotFoundError    NOT_FOUND / FAILED_PRECONDITION: unknown or unloaded model
    ├── RunnerBusyError             RESOURCE_EXHAUSTED: retry after `retry_after_ms`
    ├── RunnerDeadlineError         DEADLINE_EXCEEDED before the stream started
    └── RunnerUnsupportedError      UNIMPLEMENTED
"""

from __future__ import annotations

import grpc


class RunnerError(Exception):
    code = "runner_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RunnerUnavailableError(RunnerError):
    code = "unavailable"


class RunnerInternalError(RunnerError):
    code = "internal"


class RunnerRejectedError(RunnerError):
    code = "rejected"


class RunnerInvalidRequestError(RunnerRejectedError):
    code = "invalid_request"


class RunnerModelNotFoundError(RunnerRejectedError):
    code = "model_not_found"


class RunnerBusyError(RunnerRejectedError):
    code = "busy"

    def __init__(self, message: str, *, retry_after_ms: int | None) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


class RunnerDeadlineError(RunnerRejectedError):
    code = "deadline"


class RunnerUnsupportedError(RunnerRejectedError):
    code = "unsupported"


_BY_STATUS: dict[grpc.StatusCode, type[RunnerError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: RunnerInvalidRequestError,
    grpc.StatusCode.ALREADY_EXISTS: RunnerInvalidRequestError,
    grpc.StatusCode.OUT_OF_RANGE: RunnerInvalidRequestError,
    grpc.StatusCode.NOT_FOUND: RunnerModelNotFoundError,
    grpc.StatusCode.FAILED_PRECONDITION: RunnerModelNotFoundError,
    grpc.StatusCode.DEADLINE_EXCEEDED: RunnerDeadlineError,
    grpc.StatusCode.UNAVAILABLE: RunnerUnavailableError,
    grpc.StatusCode.CANCELLED: RunnerUnavailableError,
    grpc.StatusCode.UNIMPLEMENTED: RunnerUnsupportedError,
}
_PUSHBACK_KEY = "grpc-retry-pushback-ms"


def error_from_rpc(error: grpc.aio.AioRpcError, *, started: bool, target: str) -> RunnerError:
    """Maps a failed call. After Started every failure is "unavailable": the reply broke off."""
    code = error.code()
    details = error.details() or code.name
    if started:
        return RunnerUnavailableError(
            f"the runner stream at {target} broke after it started ({code.name}: {details})"
        )
    pushback = _pushback_ms(error) if code is grpc.StatusCode.RESOURCE_EXHAUSTED else None
    return _refusal(code, details, pushback, target)


_CODES = {code.value[0]: code for code in grpc.StatusCode}


def error_from_code(
    number: int, details: str, *, retry_after_ms: int | None, target: str
) -> RunnerError:
    """Maps a status given as a number (a ChatSession rejection), like `error_from_rpc`."""
    code = _CODES.get(number, grpc.StatusCode.UNKNOWN)
    return _refusal(code, details or code.name, retry_after_ms, target)


def _refusal(
    code: grpc.StatusCode, details: str, retry_after_ms: int | None, target: str
) -> RunnerError:
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return RunnerBusyError(details, retry_after_ms=retry_after_ms)
    if code is grpc.StatusCode.UNAVAILABLE:
        return RunnerUnavailableError(f"runner at {target} is unavailable: {details}")
    return _BY_STATUS.get(code, RunnerInternalError)(details)


def _pushback_ms(error: grpc.aio.AioRpcError) -> int | None:
    # At runtime the metadata is a sequence of (key, value) pairs; the stubs say otherwise.
    pairs: tuple[tuple[str, str | bytes], ...] = error.trailing_metadata() or ()  # type: ignore[assignment]
    for key, value in pairs:
        if key == _PUSHBACK_KEY:
            text = value.decode() if isinstance(value, bytes) else value
            return int(text) if text.isdigit() else None
    return None
