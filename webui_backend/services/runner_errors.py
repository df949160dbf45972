"""Turning the runner client's errors into codes and sentences for the person waiting."""

from __future__ import annotations

from model_runner.client import RunnerError, RunnerRejectedError, RunnerUnavailableError


def describe_runner_error(exc: RunnerError) -> tuple[str, str]:
    """Return (code, message) for an error raised by the runner client."""
    if isinstance(exc, RunnerUnavailableError):
        return "runner_unavailable", f"The model runner is unavailable: {exc}"
    if isinstance(exc, RunnerRejectedError):
        return f"runner_{exc.code}", f"The model runner refused the request: {exc}"
    return "runner_error", f"The model runner failed: {exc}"
