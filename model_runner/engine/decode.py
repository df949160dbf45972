"""The per-token half of a request: from the backend's steps to Deltas and one Finished.

`Engine.stream` admits the request and resolves its limits; `decode` then runs the loop that
every token goes through, and `interruptible` wraps the awaits that abort or the deadline may
cut short (see `live.py` for why only those).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from model_runner.backends.base import Backend, SequenceParams
from model_runner.domain import Delta, Finished, FinishReason, GenerationRequest, Usage
from model_runner.engine.live import LiveRequest
from model_runner.engine.stop_strings import StopStringMatcher

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


async def decode(
    live: LiveRequest,
    backend: Backend,
    request: GenerationRequest,
    params: SequenceParams,
    limit_reason: FinishReason,
    arrival_ns: int,
) -> AsyncIterator[Delta | Finished]:
    """The per-token loop of one request: backend steps in, Deltas and one Finished out.

    Applies stop strings, `stream_interval`, max_tokens (ending with `limit_reason`) and
    interrupts (abort, deadline); closes the backend's iterator on every way out. The hot path,
    so it stays plain.
    """
    stops = request.stopping.stop
    matcher = StopStringMatcher(stops) if stops else None
    with_ids = request.output.return_token_ids
    interval = request.output.stream_interval
    sent_count = -1  # completion tokens when the last Delta went out; -1 = none yet
    held_text: list[str] = []  # output withheld to honour stream_interval
    held_ids: list[int] = []
    max_tokens = params.max_tokens
    slot_ns = time.monotonic_ns()
    first_ns = 0
    cached = 0
    count = 0
    reason: FinishReason | None = None
    stop_sequence: str | None = None
    error_message = ""
    steps = backend.generate(params)
    try:
        while reason is None:
            if live.reason is not None:
                reason = live.reason
                break
            live.interruptible = True
            try:
                step = await anext(steps)
            except StopAsyncIteration:
                reason = FinishReason.EOS
                break
            except asyncio.CancelledError:
                if not live.owns_cancellation():
                    raise
                reason = live.reason
                break
            except Exception as exc:
                logger.exception("backend failed in request %s", live.request_id)
                reason, error_message = FinishReason.ERROR, f"backend failed: {exc}"
                break
            finally:
                live.interruptible = False
            if not first_ns:
                first_ns = time.monotonic_ns()
                cached = step.cached_prompt_tokens
            count += len(step.token_ids)
            text = step.text
            if matcher is not None:
                text, stop_sequence = matcher.push(text)
            if text or (with_ids and step.token_ids):
                if interval > 1 and sent_count >= 0 and count - sent_count < interval:
                    held_text.append(text)
                    held_ids.extend(step.token_ids if with_ids else ())
                else:
                    if held_text:
                        text = "".join(held_text) + text
                        held_text.clear()
                    ids = tuple(held_ids) + tuple(step.token_ids) if with_ids else ()
                    held_ids.clear()
                    sent_count = count
                    yield Delta(text, count, ids)
            if stop_sequence is not None:
                reason = FinishReason.STOP_SEQUENCE
            elif step.eos:
                reason = FinishReason.EOS
            elif count >= max_tokens:
                reason = limit_reason
    finally:
        aclose = getattr(steps, "aclose", None)
        if aclose is not None:
            await aclose()
    if matcher is not None and reason is not FinishReason.STOP_SEQUENCE:
        held_text.append(matcher.flush())
    tail = "".join(held_text)
    if tail or held_ids:
        yield Delta(tail, count, tuple(held_ids))
    end_ns = time.monotonic_ns()
    usage = Usage(
        prompt_tokens=len(params.prompt_token_ids),
        completion_tokens=count,
        cached_prompt_tokens=cached,
        queue_ns=slot_ns - arrival_ns,
        ttft_ns=first_ns - slot_ns if first_ns else 0,
        total_ns=end_ns - arrival_ns,
    )
    yield Finished(reason or FinishReason.ERROR, usage, stop_sequence or "", error_message)


async def interruptible(live: LiveRequest, awaitable: Awaitable[_T]) -> _T | None:
    """Awaits unless interrupted (abort, deadline); None when interrupted."""
    if live.reason is not None:
        if asyncio.iscoroutine(awaitable):
            awaitable.close()
        return None
    live.interruptible = True
    try:
        return await awaitable
    except asyncio.CancelledError:
        if not live.owns_cancellation():
            raise
        return None
    finally:
        live.interruptible = False
