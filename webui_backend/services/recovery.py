"""Repair of replies left `streaming` by a process that is gone.

Two cases. At start-up of a lone process (no shared hub), every `streaming` reply was left by
a previous run: `interrupt_orphaned_replies` marks them all. With several workers (the Redis
hub) the others keep generating while one starts or dies, so `OrphanSweeper` marks only the
replies whose worker is gone: not live on any worker with a fresh heartbeat, and not
checkpointed for a grace period.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from webui_backend.db.models import utcnow
from webui_backend.db.repositories import MessageRepository
from webui_backend.services.background import every
from webui_backend.services.turn_events import TurnFinished
from webui_backend.services.turn_hub import TurnHub

log = logging.getLogger(__name__)

ORPHAN_MESSAGE = "The worker generating this reply stopped before it finished."


async def interrupt_orphaned_replies(
    sessions: async_sessionmaker[AsyncSession], *, live_elsewhere: Sequence[str] = ()
) -> int:
    """Mark replies still `streaming` from a previous process as interrupted.

    Run once, before this process starts any turn, and only when no other process can be
    generating (`live_elsewhere` excepted): several workers use `OrphanSweeper` instead.
    """
    async with sessions() as session, session.begin():
        count = await MessageRepository(session).interrupt_streaming(exclude_ids=live_elsewhere)
    if count:
        log.warning("marked %d reply(ies) left streaming by a previous run as interrupted", count)
    return count


class OrphanSweeper:
    """Finds replies whose generating worker died and ends them as `interrupted`.

    A reply is an orphan when it is `streaming`, its row has not changed for `grace_s` (a
    generating worker checkpoints it every interval while text flows; the grace also covers
    the moment between storing a new reply and registering it in the hub) and the hub does
    not know it as live on a worker whose heartbeat is fresh. The sweep keeps the stored
    checkpoint plus the text the dead worker had already published to the hub, stores the
    reply as `interrupted`, and finishes its hub log so that watchers get `turn.finished`.

    Cheap: one indexed query per pass, which finds nothing while every worker is healthy.
    Idempotent: each reply is marked by a conditional UPDATE, so workers sweeping at once
    (every worker runs the sweep) mark and announce it once.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        hub: TurnHub,
        *,
        interval_s: float,
        grace_s: float,
        batch: int = 100,
    ) -> None:
        self._sessions = sessions
        self._hub = hub
        self._interval_s = interval_s
        self._grace_s = grace_s
        self._batch = batch

    async def run(self) -> None:
        """Sweep every interval until cancelled (a server-owned task)."""
        await every(
            self._interval_s,
            self.sweep,
            log=log,
            failure="orphaned-reply sweep failed; retrying next interval",
        )

    async def sweep(self) -> int:
        """One pass; returns how many replies this call marked interrupted."""
        cutoff = utcnow() - timedelta(seconds=self._grace_s)
        async with self._sessions() as session:
            candidates = await MessageRepository(session).stale_streaming(cutoff, limit=self._batch)
        swept = 0
        for reply in candidates:
            if await self._hub.live_owner(reply.id) is not None:
                continue
            tail, last_seq = await self._hub.orphan_tail(reply.id, reply.content_seq)
            async with self._sessions() as session, session.begin():
                marked = await MessageRepository(session).interrupt_orphan(
                    reply.id,
                    seen_seq=reply.content_seq,
                    content=reply.content + tail,
                    content_seq=last_seq,
                    updated_before=cutoff,
                    error=ORPHAN_MESSAGE,
                )
            if not marked:
                continue
            swept += 1
            await self._hub.finish_orphan(
                reply.id,
                TurnFinished(
                    seq=last_seq + 1,
                    status="interrupted",
                    finish_reason="interrupted",
                    prompt_tokens=reply.prompt_tokens,
                    completion_tokens=reply.completion_tokens,
                    error_code="interrupted",
                    error_message=ORPHAN_MESSAGE,
                ),
            )
        if swept:
            log.warning("marked %d reply(ies) of a stopped worker as interrupted", swept)
        return swept
