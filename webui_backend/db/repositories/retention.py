"""The SQL of the retention job: expired chats go in batches; each pass leaves a record.

`RetentionWrites` runs inside `Transactions.run` (on SQLite the writer thread, whose BEGIN
IMMEDIATE holds the write lock for the batch only; elsewhere `run_sync`). Deleting a chat
deletes its messages, tags, shares and turn keys through ON DELETE CASCADE, and the search
index with them: on SQLite the FTS5 triggers of migration 0002 fire for the cascaded
message rows too; PostgreSQL's GIN expression indexes (migration 0004) are maintained by the
server with the rows.

The last pass is kept in `app_setting` under `LAST_PASS_KEY` (one row, rewritten by each
pass), so every worker and host can show it; a pass that deleted chats is also audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, false, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from webui_backend.db.models import Chat, Message, MessageStatus, new_id, utcnow
from webui_backend.db.models_admin import AppSetting, AuditLog

LAST_PASS_KEY = "retention.last_pass"
AUDIT_ACTION = "retention.delete"


@dataclass(frozen=True, slots=True)
class DeletedBatch:
    chats: int
    messages: int


class RetentionWrites:
    def __init__(self, session: Session) -> None:
        self._session = session

    def delete_expired_chats(
        self, *, cutoff: datetime, keep_pinned: bool, limit: int
    ) -> DeletedBatch:
        """Delete up to `limit` chats last active before `cutoff`, oldest first, never one
        with a reply still `streaming` (nor a pinned one with `keep_pinned`)."""
        select_ids = (
            select(Chat.id)
            .where(*_expired(cutoff, keep_pinned=keep_pinned))
            .order_by(Chat.updated_at, Chat.id)
            .limit(limit)
        )
        if self._session.get_bind().dialect.name == "postgresql":
            # Rows a concurrent turn holds are left for the next pass; the ones taken cannot
            # get a new message (its foreign key check waits on this lock) before they go.
            select_ids = select_ids.with_for_update(skip_locked=True)
        ids = list(self._session.scalars(select_ids))
        if not ids:
            return DeletedBatch(chats=0, messages=0)
        messages = self._session.scalar(
            select(func.count()).select_from(Message).where(Message.chat_id.in_(ids))
        )
        result = self._session.execute(
            delete(Chat).where(Chat.id.in_(ids)).execution_options(synchronize_session=False)
        )
        return DeletedBatch(
            chats=int(result.rowcount or 0),  # type: ignore[attr-defined]
            messages=int(messages or 0),
        )

    def record_pass(self, summary: dict[str, Any], *, audit: bool) -> None:
        """Store `summary` (JSON values) as the last pass; with `audit` also in the audit
        log, as an action of the system (no actor)."""
        now = utcnow()
        row = self._session.get(AppSetting, LAST_PASS_KEY)
        if row is None:
            self._session.add(AppSetting(key=LAST_PASS_KEY, value=summary, updated_at=now))
        else:
            row.value = summary
            row.updated_at = now
        if audit:
            self._session.add(
                AuditLog(
                    id=new_id(),
                    actor_id=None,
                    actor_email="",
                    action=AUDIT_ACTION,
                    target_type="chat",
                    target_id="",
                    details=summary,
                    created_at=now,
                )
            )


async def read_last_pass(session: AsyncSession) -> dict[str, Any] | None:
    """The summary the newest pass stored, or None before the first pass."""
    value = await session.scalar(select(AppSetting.value).where(AppSetting.key == LAST_PASS_KEY))
    return value if isinstance(value, dict) else None


def _expired(cutoff: datetime, *, keep_pinned: bool) -> list[ColumnElement[bool]]:
    streaming = (
        select(Message.id)
        .where(Message.chat_id == Chat.id, Message.status == MessageStatus.STREAMING)
        .exists()
    )
    conditions = [Chat.updated_at < cutoff, ~streaming]
    if keep_pinned:
        conditions.append(Chat.pinned == false())
    return conditions
