"""Watching a reply from any sequence number, whether it is live, finished or evicted.

Rules (docs/websocket.md, "Resuming"), which give no gap and no duplicate:

1. The hub holds the events after the cursor: replay them, then follow live.
2. Otherwise (finished long ago, trimmed, generating on a worker this one cannot see, or the
   hub ended without a finished event because its worker died) read the stored reply. Its
   `content` covers exactly the events through `content_seq`:
   - cursor < content_seq: send a `TurnSnapshot(content_seq, content)` that replaces the
     client's text (or a delta when this watcher already sent the client's text);
   - reply finished: then its finished event, seq `content_seq + 1`, rebuilt from the row;
   - reply still streaming: follow the hub after `content_seq`; if the hub cannot, poll the
     stored checkpoint every interval, sending the new text as a delta.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from webui_backend.db.models import Message, MessageStatus
from webui_backend.db.repositories.turns import TurnRepository
from webui_backend.errors import NotFoundError
from webui_backend.services.turn_events import (
    TurnDelta,
    TurnFinished,
    TurnSnapshot,
    WatchEvent,
)
from webui_backend.services.turn_hub import ReplayRangeLostError, TurnHub


class TurnWatcher:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        hub: TurnHub,
        poll_interval_s: float,
        max_wait_s: float,
    ) -> None:
        self._sessions = sessions
        self._hub = hub
        self._poll_interval_s = poll_interval_s
        self._max_wait_s = max_wait_s

    async def watch(
        self, user_id: str, turn_id: str, *, after_seq: int = 0
    ) -> AsyncIterator[Sequence[WatchEvent]]:
        """Batches of the reply's events after `after_seq`, ending with its finished event.

        Raises NotFoundError when the reply does not exist or is not the user's.
        """
        cursor = max(after_seq, 0)
        known: str | None = None  # the client's full text, once this watcher has sent it
        deadline = time.monotonic() + self._max_wait_s
        while True:
            try:
                async for batch in self._hub.subscribe(turn_id, user_id, after_seq=cursor):
                    if known is not None:
                        known += "".join(e.text for e in batch if type(e) is TurnDelta)
                    cursor = batch[-1].seq
                    yield batch
                    if type(batch[-1]) is TurnFinished:
                        return
            except NotFoundError:
                pass  # not in this hub: storage decides whether it exists
            except ReplayRangeLostError as lost:
                cursor = lost.after_seq
            reply = await self._load(user_id, turn_id)
            stored_seq = reply.content_seq
            batch_out: list[WatchEvent] = []
            finished = reply.status is not MessageStatus.STREAMING
            # A cursor past the stored finished event means the client saw text a crashed
            # worker never stored: the stored reply is the truth, so it gets a snapshot.
            if stored_seq > cursor or (finished and cursor > stored_seq + 1):
                if known is not None and reply.content.startswith(known):
                    batch_out.append(TurnDelta(stored_seq, reply.content[len(known) :]))
                else:
                    batch_out.append(TurnSnapshot(stored_seq, reply.content))
                known = reply.content
                cursor = stored_seq
            if finished:
                if cursor <= stored_seq:
                    batch_out.append(_finished_from(reply))
                if batch_out:
                    yield batch_out
                return
            if batch_out:
                yield batch_out
            if time.monotonic() > deadline:
                return
            # Still generating somewhere the hub cannot serve from here: wait a checkpoint.
            await asyncio.sleep(self._poll_interval_s)

    async def _load(self, user_id: str, turn_id: str) -> Message:
        async with self._sessions() as session:
            stored = await TurnRepository(session).get_reply(turn_id)
        if stored is None or stored.user_id != user_id:
            raise NotFoundError("No reply with this id.")
        return stored.message


def _finished_from(reply: Message) -> TurnFinished:
    status = reply.status.value
    error_code = None
    if reply.status is MessageStatus.ERROR or (
        reply.error and reply.status is not MessageStatus.COMPLETE
    ):
        error_code = "runner_error" if reply.status is MessageStatus.ERROR else status
    return TurnFinished(
        seq=reply.content_seq + 1,
        status=status,
        finish_reason=reply.finish_reason,
        prompt_tokens=reply.prompt_tokens,
        completion_tokens=reply.completion_tokens,
        queue_ms=reply.queue_ms,
        ttft_ms=reply.ttft_ms,
        total_ms=reply.total_ms,
        error_code=error_code,
        error_message=reply.error,
    )
