"""Start-up repair of what a crash or a restart left behind."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from webui_backend.db.repositories import MessageRepository

log = logging.getLogger(__name__)


async def interrupt_orphaned_replies(
    sessions: async_sessionmaker[AsyncSession], *, live_elsewhere: Sequence[str] = ()
) -> int:
    """Mark replies still `streaming` from a previous process as interrupted.

    Run once, before this process starts any turn. `live_elsewhere` are replies another
    worker is generating (the Redis hub knows them by their worker's heartbeat); without a
    shared hub this cannot tell another live process's replies from orphans, so several
    workers without Redis must run it before they start serving.
    """
    async with sessions() as session, session.begin():
        count = await MessageRepository(session).interrupt_streaming(exclude_ids=live_elsewhere)
    if count:
        log.warning("marked %d reply(ies) left streaming by a previous run as interrupted", count)
    return count
