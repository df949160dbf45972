"""Access to `message` rows: the conversation tree, its branches, and turn bookkeeping."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, bindparam, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from webui_backend.db.models import Message, MessageRole, MessageStatus, new_id, utcnow


@dataclass(frozen=True, slots=True)
class ReplyOutcome:
    """What a finished (or broken) generation leaves in its assistant row."""

    content: str
    status: MessageStatus
    finish_reason: str | None
    error: str | None = None
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    queue_ms: float | None = None
    ttft_ms: float | None = None
    total_ms: float | None = None
    # The last turn event seq that `content` covers (see Message.content_seq).
    content_seq: int = 0


class MessageRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get_in_chat(self, message_id: str, chat_id: str) -> Message | None:
        result = await self._session.execute(
            select(Message).where(Message.id == message_id, Message.chat_id == chat_id)
        )
        return result.scalar_one_or_none()

    def add(
        self,
        *,
        chat_id: str,
        parent_id: str | None,
        role: MessageRole,
        content: str,
        status: MessageStatus = MessageStatus.COMPLETE,
        model: str | None = None,
        at: datetime | None = None,
    ) -> Message:
        now = at or utcnow()
        message = Message(
            id=new_id(),
            chat_id=chat_id,
            parent_id=parent_id,
            role=role,
            content=content,
            status=status,
            model=model,
            created_at=now,
            updated_at=now,
        )
        self._session.add(message)
        return message

    async def list_in_chat(self, chat_id: str) -> list[Message]:
        result = await self._session.execute(
            select(Message)
            .where(Message.chat_id == chat_id)
            .order_by(Message.created_at, Message.id)
        )
        return list(result.scalars())

    async def branch(self, leaf_id: str) -> list[Message]:
        """The path from the root to `leaf_id`, oldest first (one recursive query)."""
        result = await self._session.execute(_branch_statement(), {"leaf_id": leaf_id})
        return list(result.scalars())

    async def interrupt_streaming(self, *, exclude_ids: Sequence[str] = ()) -> int:
        """Mark replies left `streaming` (by a crash or a restart) as interrupted."""
        stmt = (
            update(Message)
            .where(Message.status == MessageStatus.STREAMING)
            .values(
                status=MessageStatus.INTERRUPTED,
                finish_reason="interrupted",
                error="The server restarted while this reply was being generated.",
                updated_at=utcnow(),
            )
        )
        if exclude_ids:
            stmt = stmt.where(Message.id.not_in(list(exclude_ids)))
        result = await self._session.execute(stmt)
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def stale_streaming(self, updated_before: datetime, *, limit: int) -> list[Message]:
        """Replies still `streaming` whose row has not changed since `updated_before` (no
        checkpoint since): the dead-worker sweep's candidates, oldest first."""
        result = await self._session.execute(
            select(Message)
            .where(Message.status == MessageStatus.STREAMING, Message.updated_at < updated_before)
            .order_by(Message.updated_at)
            .limit(limit)
        )
        return list(result.scalars())

    async def interrupt_orphan(
        self,
        message_id: str,
        *,
        seen_seq: int,
        content: str,
        content_seq: int,
        updated_before: datetime,
        error: str,
    ) -> bool:
        """Mark one orphaned reply `interrupted` with `content` through `content_seq`; only
        while it is still `streaming` at `seen_seq` and unchanged since `updated_before`, so a
        reply that a live worker checkpointed or reopened meanwhile, or that another sweeper
        took first, is left alone. True when this call marked it."""
        result = await self._session.execute(
            update(Message)
            .where(
                Message.id == message_id,
                Message.status == MessageStatus.STREAMING,
                Message.content_seq == seen_seq,
                Message.updated_at < updated_before,
            )
            .values(
                status=MessageStatus.INTERRUPTED,
                finish_reason="interrupted",
                error=error,
                content=content,
                content_seq=content_seq,
                updated_at=utcnow(),
            )
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


@functools.cache
def _branch_statement() -> Select[Message]:
    """Built once: constructing the recursive CTE costs more CPU than running it, and every
    chat turn asks for its branch."""
    path = (
        select(Message.id, Message.parent_id, literal(0).label("depth"))
        .where(Message.id == bindparam("leaf_id"))
        .cte("path", recursive=True)
    )
    path = path.union_all(
        select(Message.id, Message.parent_id, (path.c.depth + 1).label("depth")).join(
            path, Message.id == path.c.parent_id
        )
    )
    return select(Message).join(path, Message.id == path.c.id).order_by(path.c.depth.desc())
