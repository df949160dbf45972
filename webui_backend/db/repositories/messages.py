"""Access to `message` rows: the conversation tree, its branches, and turn bookkeeping."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, Table, Update, bindparam, literal, select, update
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

    async def finish_reply(self, message_id: str, outcome: ReplyOutcome) -> None:
        await self._session.execute(
            _finish_statement(),
            {
                "f_id": message_id,
                "f_content": outcome.content,
                "f_status": outcome.status,
                "f_finish_reason": outcome.finish_reason,
                "f_error": outcome.error,
                "f_model": outcome.model,
                "f_prompt_tokens": outcome.prompt_tokens,
                "f_completion_tokens": outcome.completion_tokens,
                "f_queue_ms": outcome.queue_ms,
                "f_ttft_ms": outcome.ttft_ms,
                "f_total_ms": outcome.total_ms,
                "f_content_seq": outcome.content_seq,
                "f_now": utcnow(),
            },
        )

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


_FINISH_COLUMNS = (
    "content",
    "status",
    "finish_reason",
    "error",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "queue_ms",
    "ttft_ms",
    "total_ms",
    "content_seq",
)


@functools.cache
def _finish_statement() -> Update:
    """Core, built once: every reply ends with it, and the ORM update path cost more CPU than
    the statement."""
    table = cast(Table, Message.__table__)
    values: dict[str, Any] = {name: bindparam(f"f_{name}") for name in _FINISH_COLUMNS}
    values["updated_at"] = bindparam("f_now")
    return update(table).where(table.c.id == bindparam("f_id")).values(values)
