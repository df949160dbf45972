"""Generating one reply: relay the runner's stream into the hub, then store the outcome.

This is the hot path of the backend. Per token it does one append, one publish and nothing
else, inside the runner client's reader (no task wake-up); the database sees the reply in
batched checkpoints (`ReplyCheckpointer`, one UPDATE per interval) and once when it ends, is
stopped, or the stream breaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field, replace

from opentelemetry import trace
from opentelemetry.trace import Span, Tracer

from model_runner.client import (
    ChatMessage,
    GenerationOptions,
    RunnerError,
    RunnerEvent,
    RunnerUnavailableError,
    StreamDelta,
    StreamFinished,
    StreamStarted,
)
from model_runner.telemetry.request_id import bind_request_id, reset_request_id
from webui_backend.db.models import MessageStatus, utcnow
from webui_backend.db.repositories.messages import ReplyOutcome
from webui_backend.db.repositories.turn_writes import TurnWrites
from webui_backend.db.transactions import Transactions
from webui_backend.observability.tracing import (
    TurnOrigin,
    record_turn_outcome,
    runner_metadata,
    start_turn_span,
)
from webui_backend.services.checkpoints import ReplyCheckpointer, ReplyProgress
from webui_backend.services.runner_errors import describe_runner_error
from webui_backend.services.runner_port import RunnerClient
from webui_backend.services.turn_events import TurnDelta, TurnFinished, TurnStarted
from webui_backend.services.turn_hub import TurnHub
from webui_backend.services.turn_observer import NoTurnObserver, TurnObserver

log = logging.getLogger(__name__)

# Runner finish reasons that end a reply normally; "aborted" means someone stopped it.
_STATUS_BY_REASON = {
    "aborted": MessageStatus.CANCELLED,
    "error": MessageStatus.ERROR,
}


@dataclass(frozen=True, slots=True)
class TurnPlan:
    turn_id: str
    chat_id: str
    model: str
    history: list[ChatMessage]
    options: GenerationOptions
    # A continued reply: the stored text it extends, and the seq its new events start at.
    base_content: str = ""
    first_seq: int = 1
    # The request that started the turn: its id and trace context, for this task's logs/span.
    origin: TurnOrigin = field(default_factory=TurnOrigin)
    # A new turn's own transaction (user message and empty reply), still committing while
    # the runner starts; None when the reply's row is already stored (continue, regenerate).
    committed: Awaitable[object] | None = None


class ReplyGenerator:
    def __init__(
        self,
        *,
        transactions: Transactions,
        runner: RunnerClient,
        hub: TurnHub,
        runner_timeout_s: float,
        checkpoints: ReplyCheckpointer,
        observer: TurnObserver | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self._observer: TurnObserver = observer or NoTurnObserver()
        self._tracer = tracer or trace.NoOpTracer()
        self._transactions = transactions
        self._runner = runner
        self._hub = hub
        self._runner_timeout_s = runner_timeout_s
        self._checkpoints = checkpoints

    async def run(self, plan: TurnPlan) -> None:
        """Generate the reply for `plan`; never raises except CancelledError at shutdown.

        The runner stream is read by a child task, so a stop request (from any worker,
        through the hub) cancels exactly that task: the gRPC call is cancelled and the runner
        frees the sequence at its next step, while this task stores the partial reply.

        The task outlives the request that started the turn: its request id and trace context
        come explicitly from `plan.origin`, and the `chat.turn` span is current while it runs.
        """
        span = start_turn_span(
            self._tracer, plan.origin, turn_id=plan.turn_id, chat_id=plan.chat_id, model=plan.model
        )
        token = bind_request_id(plan.origin.request_id)
        try:
            with trace.use_span(span, end_on_exit=True, record_exception=False):
                await self._generate(plan, span)
        finally:
            reset_request_id(token)

    async def _generate(self, plan: TurnPlan, span: Span) -> None:
        turn_id = plan.turn_id
        progress = ReplyProgress(plan.base_content, plan.first_seq - 1)
        state = _StreamState(plan.model or None)
        stop = self._hub.stop_signal(turn_id)
        metadata = runner_metadata(plan.origin.request_id, span)
        relay = asyncio.create_task(
            self._relay(plan, progress, state, metadata), name=f"relay-{turn_id}"
        )
        if plan.committed is not None and not await self._committed(plan, relay):
            return
        self._checkpoints.track(turn_id, progress)
        self._observer.turn_started()
        try:
            try:
                await asyncio.wait((relay, stop), return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                # Server shutdown: keep what was generated, then let the cancellation proceed.
                await _cancel(relay)
                outcome = _broken_outcome(
                    progress.text(),
                    state,
                    started=True,
                    message="The server shut down while this reply was being generated.",
                )
                await asyncio.shield(
                    self._finish(turn_id, progress.seq + 1, outcome, None, span, state)
                )
                raise
            if relay.done():
                outcome, error_code = relay.result()
            else:
                await _cancel(relay)
                outcome, error_code = _stopped_outcome(progress.text(), state), None
        finally:
            self._checkpoints.untrack(turn_id)
        await self._finish(turn_id, progress.seq + 1, outcome, error_code, span, state)

    async def _committed(
        self, plan: TurnPlan, relay: asyncio.Task[tuple[ReplyOutcome, str | None]]
    ) -> bool:
        """Wait for the transaction that stores the turn before writing anything of the reply
        (the relay runs meanwhile). False when it failed: the turn does not exist, so its
        runner call is cancelled and its hub log closed unread (nobody was given its id)."""
        assert plan.committed is not None
        try:
            # Shielded: a shutdown cancels this task, never the caller's transaction.
            await asyncio.shield(plan.committed)
        except asyncio.CancelledError:
            # A reply committed meanwhile stays `streaming`; start-up recovery marks it.
            await _cancel(relay)
            raise
        except Exception:
            await _cancel(relay)
            await self._hub.close(plan.turn_id)
            return False
        return True

    async def _relay(
        self,
        plan: TurnPlan,
        progress: ReplyProgress,
        state: _StreamState,
        metadata: list[tuple[str, str]],
    ) -> tuple[ReplyOutcome, str | None]:
        """Relay the runner's stream into the hub. The hot path: the runner client's reader
        calls `on_event` as each event arrives (`chat_into`), so a token costs one append, one
        int store and one publish, and no wake-up of this task."""
        parts = progress.parts
        publish = self._hub.publish
        turn_id = plan.turn_id
        finished: StreamFinished | None = None

        def on_event(event: RunnerEvent) -> None:
            nonlocal finished
            if type(event) is StreamDelta:
                seq = progress.seq + 1
                progress.seq = seq
                parts.append(event.text)
                state.completion_tokens = event.completion_tokens
                publish(turn_id, TurnDelta(seq, event.text))
            elif type(event) is StreamStarted:
                seq = progress.seq + 1
                progress.seq = seq
                state.started = True
                state.model = event.model
                state.prompt_tokens = event.prompt_tokens
                state.runner = event.runner
                publish(turn_id, TurnStarted(seq, event.model, event.prompt_tokens))
            elif type(event) is StreamFinished:
                finished = event

        try:
            await self._runner.chat_into(
                plan.history,
                on_event=on_event,
                model=plan.model,
                request_id=turn_id,
                options=plan.options,
                timeout_s=self._runner_timeout_s,
                metadata=metadata,
            )
        except RunnerError as exc:
            code, message = describe_runner_error(exc)
            started = state.started and isinstance(exc, RunnerUnavailableError)
            return _broken_outcome(progress.text(), state, started=started, message=message), code
        except Exception:
            log.exception("reply %s failed", turn_id)
            message = "The reply failed because of an internal error."
            return _broken_outcome(
                progress.text(), state, started=False, message=message
            ), "internal_error"
        if finished is None:
            message = "The model runner ended the stream without finishing it."
            return _broken_outcome(
                progress.text(), state, started=state.started, message=message
            ), None
        return _finished_outcome(finished, progress.text(), state.model), None

    async def _finish(
        self,
        turn_id: str,
        seq: int,
        outcome: ReplyOutcome,
        error_code: str | None,
        span: Span,
        state: _StreamState,
    ) -> None:
        # The stored text covers every event before the finished one (`seq`).
        outcome = replace(outcome, content_seq=seq - 1)
        try:
            await self._transactions.run_writes(
                lambda writes: store_reply(writes, turn_id, outcome)
            )
        except Exception:
            log.exception("could not store reply %s", turn_id)
            error_code = "storage_error"
        self._observer.turn_finished(
            outcome.status.value, outcome.completion_tokens, outcome.ttft_ms
        )
        record_turn_outcome(
            span,
            status=outcome.status.value,
            finish_reason=outcome.finish_reason,
            model=outcome.model,
            runner=state.runner,
            prompt_tokens=outcome.prompt_tokens,
            completion_tokens=outcome.completion_tokens,
            error_code=error_code,
        )
        self._hub.publish(
            turn_id,
            TurnFinished(
                seq=seq,
                status=outcome.status.value,
                finish_reason=outcome.finish_reason,
                prompt_tokens=outcome.prompt_tokens,
                completion_tokens=outcome.completion_tokens,
                queue_ms=outcome.queue_ms,
                ttft_ms=outcome.ttft_ms,
                total_ms=outcome.total_ms,
                error_code=error_code,
                error_message=outcome.error,
            ),
        )
        await self._hub.close(turn_id)


def store_reply(writes: TurnWrites, reply_id: str, outcome: ReplyOutcome) -> None:
    """The reply's final row and its tokens on the owner's daily usage, in one transaction."""
    now = utcnow()
    writes.finish_reply(reply_id, outcome, now)
    if outcome.prompt_tokens or outcome.completion_tokens:
        writes.add_usage_for_reply(
            reply_id,
            model=outcome.model or "",
            day=now.date(),
            prompt_tokens=outcome.prompt_tokens or 0,
            completion_tokens=outcome.completion_tokens or 0,
        )


class _StreamState:
    """What the runner said about the reply besides its text."""

    __slots__ = ("completion_tokens", "model", "prompt_tokens", "runner", "started")

    def __init__(self, model: str | None) -> None:
        self.model = model
        self.runner = ""  # the address of the runner that took the call
        self.started = False
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None


async def _cancel(task: asyncio.Task[tuple[ReplyOutcome, str | None]]) -> None:
    """Cancel the relay (which cancels its gRPC call) and wait until it has let go."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _finished_outcome(event: StreamFinished, content: str, model: str | None) -> ReplyOutcome:
    status = _STATUS_BY_REASON.get(event.reason, MessageStatus.COMPLETE)
    return ReplyOutcome(
        content=content,
        status=status,
        finish_reason=event.reason,
        error=event.error_message or None,
        model=model,
        prompt_tokens=event.prompt_tokens,
        completion_tokens=event.completion_tokens,
        queue_ms=event.queue_ms,
        ttft_ms=event.ttft_ms,
        total_ms=event.total_ms,
    )


def _stopped_outcome(content: str, state: _StreamState) -> ReplyOutcome:
    """A reply stopped on request: the partial text is kept as `cancelled`."""
    return ReplyOutcome(
        content=content,
        status=MessageStatus.CANCELLED,
        finish_reason="aborted",
        model=state.model,
        prompt_tokens=state.prompt_tokens,
        completion_tokens=state.completion_tokens,
    )


def _broken_outcome(
    content: str, state: _StreamState, *, started: bool, message: str
) -> ReplyOutcome:
    """A reply whose stream broke: kept as `interrupted` if anything began, else an error."""
    return ReplyOutcome(
        content=content,
        status=MessageStatus.INTERRUPTED if started else MessageStatus.ERROR,
        finish_reason="interrupted" if started else "error",
        error=message,
        model=state.model,
        prompt_tokens=state.prompt_tokens,
        completion_tokens=state.completion_tokens,
    )
