"""Turn bookkeeping tables: client-chosen turn keys that make a send idempotent."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from webui_backend.db.models import Base, utcnow


class TurnKey(Base):
    """A client-chosen id for one send. (user, key) is unique, so a retried send finds the
    turn the first one started instead of generating a second reply."""

    __tablename__ = "turn_key"
    __table_args__ = (UniqueConstraint("user_id", "key", name="uq_turn_key_user_id_key"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(128))
    # What the first send started; the reply row is the turn (turn_id == assistant message id).
    chat_id: Mapped[str] = mapped_column(ForeignKey("chat.id", ondelete="CASCADE"))
    user_message_id: Mapped[str | None] = mapped_column(String(36), default=None)
    assistant_message_id: Mapped[str] = mapped_column(
        ForeignKey("message.id", ondelete="CASCADE"), index=True
    )
    created_chat: Mapped[bool] = mapped_column(default=False)
    # A digest of the request, so the same key reused for a different message is refused.
    request_digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
