"""What the turn path reports to monitoring, without knowing how it is exported."""

from __future__ import annotations

from typing import Protocol


class TurnObserver(Protocol):
    def turn_started(self) -> None:
        """A reply began generating (called once per reply, never per token)."""

    def turn_finished(
        self, status: str, completion_tokens: int | None, ttft_ms: float | None
    ) -> None:
        """A reply ended with `status` (complete, cancelled, interrupted, error)."""


class NoTurnObserver:
    def turn_started(self) -> None:
        pass

    def turn_finished(
        self, status: str, completion_tokens: int | None, ttft_ms: float | None
    ) -> None:
        pass
