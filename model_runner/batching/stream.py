"""The event-loop side of one sequence: outputs pushed by the engine thread, read by `generate`.

Only the event loop's thread touches a `SequenceStream` (the engine thread hands outputs over
with `call_soon_threadsafe`). A reader that falls behind gets every pending token merged into
one `GenerationStep`, so a slow client costs fewer, larger messages, not a growing backlog of
awaits.

`cached_prompt_tokens` is the one field the engine thread writes directly, before it hands
over the sequence's first output (so the loop reads it after that hand-over).
"""

from __future__ import annotations

import asyncio

from model_runner.backends.base import GenerationStep


class SequenceStream:
    __slots__ = ("_eos", "_error", "_finished", "_ids", "_text", "_waiter", "cached_prompt_tokens")

    def __init__(self) -> None:
        self.cached_prompt_tokens = 0  # reported with the first step, then 0
        self._ids: list[int] = []
        self._text: list[str] = []
        self._finished = False
        self._eos = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    def push(
        self, ids: list[int], text: str, finished: bool, eos: bool, error: BaseException | None
    ) -> None:
        self._ids.extend(ids)
        if text:
            self._text.append(text)
        if finished:
            self._finished, self._eos, self._error = True, eos, error
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next_step(self) -> GenerationStep | None:
        """The outputs since the last call, merged; None once the sequence has ended."""
        while not (self._ids or self._text or self._finished):
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self._error is not None:
            raise self._error
        if not (self._ids or self._text):
            return None  # finished, everything already handed out
        ids, self._ids = self._ids, []
        text = self._text[0] if len(self._text) == 1 else "".join(self._text)
        self._text = []
        step = GenerationStep(ids, text, self._eos and self._finished, self.cached_prompt_tokens)
        self.cached_prompt_tokens = 0
        return step

    @property
    def finished(self) -> bool:
        return self._finished and not (self._ids or self._text)
