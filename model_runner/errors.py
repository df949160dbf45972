"""The runner's domain errors.

Engine and backends raise these; the interceptor (`model_runner.interceptor`) is the one place
that turns them into gRPC status codes. Messages are shown to callers, so they say what to do.
This module imports nothing of ours.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the runner reports to a caller before a stream has started."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(EngineError):
    """The request is malformed: bad parameters, empty conversation, prompt too long."""


class ModelNotFound(EngineError):
    """No model with this id or alias is known to the runner."""


class ModelNotLoaded(EngineError):
    """The model is known but not ready (loading, unloading or failed)."""


class DuplicateRequest(EngineError):
    """A live request already uses this request id."""


class QueueFull(EngineError):
    """Running and queued slots are all taken; retry after `retry_after_ms`."""

    def __init__(self, message: str, *, retry_after_ms: int) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


class InsufficientResources(EngineError):
    """A model cannot be loaded: not enough memory, or too many models loaded already."""


class DeadlineTooShort(EngineError):
    """The call's deadline leaves too little time to produce a first token."""


class DeadlineExceeded(EngineError):
    """The deadline passed while the request was still waiting for a slot."""


class Draining(EngineError):
    """The runner is shutting down and admits nothing new; use another replica."""


class EngineUnavailable(EngineError):
    """The engine is dead or not started."""


class NotSupported(EngineError):
    """The operation exists in the contract but this runner does not implement it (yet)."""
