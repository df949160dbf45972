"""The registry entry of one live request: how abort() and the deadline reach its task.

An interrupt must stop a request that is awaiting the backend (or a queue slot) right away,
but must never cancel the task while it is elsewhere, e.g. inside gRPC sending a message: that
would look like a client cancel. So the request's task marks the awaits that may be
interrupted, and an interrupt cancels the task only inside such an await; otherwise it just
records the reason, which the task checks before its next await.
"""

from __future__ import annotations

import asyncio

from model_runner.domain import FinishReason


class LiveRequest:
    __slots__ = ("_cancel_sent", "interruptible", "model", "reason", "request_id", "task")

    def __init__(self, request_id: str, task: asyncio.Task[object], model: str = "") -> None:
        self.request_id = request_id
        self.task = task
        self.model = model  # the model id serving it, so an unload can abort its requests
        self.interruptible = False
        self.reason: FinishReason | None = None
        self._cancel_sent = False

    def interrupt(self, reason: FinishReason) -> bool:
        """Asks the request to end with `reason`; False if it was already asked."""
        if self.reason is not None:
            return False
        self.reason = reason
        if self.interruptible:
            self._cancel_sent = True
            self.task.cancel()
        return True

    def owns_cancellation(self) -> bool:
        """Called on CancelledError inside an interruptible await: True if the cancellation was
        ours (an interrupt) and nobody else cancelled the task too; the task then goes on."""
        if not self._cancel_sent:
            return False
        self._cancel_sent = False
        return self.task.uncancel() == 0
