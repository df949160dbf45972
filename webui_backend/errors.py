"""The backend's domain errors. Services raise these; `api/error_handlers.py` renders them.

This module imports nothing of ours, so every layer may depend on it.
"""

from __future__ import annotations


class AppError(Exception):
    """Base of every error a client may see. `code` is stable; `message` is for people."""

    code = "internal_error"
    status_code = 500

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidInputError(AppError):
    code = "invalid_input"
    status_code = 400


class PayloadTooLargeError(AppError):
    code = "payload_too_large"
    status_code = 413


class NotFoundError(AppError):
    code = "not_found"
    status_code = 404


class UnauthorizedError(AppError):
    """No valid credentials: missing, malformed, expired or revoked."""

    code = "unauthorized"
    status_code = 401


class ForbiddenError(AppError):
    """Authenticated, but this account may not do this (role, pending, disabled, CSRF)."""

    code = "forbidden"
    status_code = 403


class RateLimitedError(AppError):
    code = "rate_limited"
    status_code = 429

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ConflictError(AppError):
    code = "conflict"
    status_code = 409


class ModelNotFoundError(AppError):
    code = "model_not_found"
    status_code = 404


class RunnerUnavailableError(AppError):
    code = "runner_unavailable"
    status_code = 503


class RunnerBusyError(AppError):
    code = "runner_busy"
    status_code = 503

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RunnerRejectedError(AppError):
    """The runner refused the request as invalid (e.g. a prompt longer than the context)."""

    code = "runner_rejected"
    status_code = 422
