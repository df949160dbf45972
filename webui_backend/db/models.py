"""ORM models. A conversation is a tree of `message` rows linked by `parent_id`."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Named constraints keep Alembic's batch mode (SQLite) and PostgreSQL migrations in step.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UserRole(enum.StrEnum):
    ADMIN = "admin"
    USER = "user"
    PENDING = "pending"


class MessageRole(enum.StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"


class MessageStatus(enum.StrEnum):
    """Lifecycle of a message row. Only assistant replies pass through `streaming`."""

    COMPLETE = "complete"
    STREAMING = "streaming"
    # The stream broke (runner died, backend restarted); the partial text is kept.
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"
    ERROR = "error"


class User(Base):
    __tablename__ = "user"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[UserRole] = mapped_column(
        Enum(UserRole, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])
    )
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # A disabled account cannot authenticate in any way; its sessions and keys are gone.
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    # Bumped on disable and password change: every access token issued before is refused.
    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class Chat(Base):
    __tablename__ = "chat"
    # The list query: one user's chats, archived or not, pinned first, newest activity first.
    __table_args__ = (
        Index("ix_chat_user_id_updated_at", "user_id", "updated_at"),
        Index("ix_chat_list", "user_id", "archived", "pinned", "updated_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(500), default="")
    # The leaf of the active branch; the history sent to the model is its ancestor path.
    current_message_id: Mapped[str | None] = mapped_column(String(36), default=None)
    pinned: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    archived: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Message(Base):
    __tablename__ = "message"
    __table_args__ = (
        Index("ix_message_chat_id_created_at", "chat_id", "created_at"),
        Index("ix_message_parent_id", "parent_id"),
        Index("ix_message_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    chat_id: Mapped[str] = mapped_column(ForeignKey("chat.id", ondelete="CASCADE"))
    parent_id: Mapped[str | None] = mapped_column(
        ForeignKey("message.id", ondelete="CASCADE"), default=None
    )
    role: Mapped[MessageRole] = mapped_column(
        Enum(
            MessageRole,
            native_enum=False,
            length=16,
            values_callable=lambda e: [m.value for m in e],
        )
    )
    content: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[MessageStatus] = mapped_column(
        Enum(
            MessageStatus,
            native_enum=False,
            length=16,
            values_callable=lambda e: [m.value for m in e],
        ),
        default=MessageStatus.COMPLETE,
    )
    model: Mapped[str | None] = mapped_column(String(200), default=None)
    # Runner finish reason: eos, stop, length, context_length, time_limit, aborted, error,
    # or "interrupted" when the stream broke.
    finish_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer, default=None)
    completion_tokens: Mapped[int | None] = mapped_column(Integer, default=None)
    queue_ms: Mapped[float | None] = mapped_column(default=None)
    ttft_ms: Mapped[float | None] = mapped_column(default=None)
    total_ms: Mapped[float | None] = mapped_column(default=None)
    # The turn event sequence number that `content` covers (0 = none): a resume that the hub
    # can no longer serve starts from this checkpoint, then takes the hub's events after it.
    content_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# Accounts, sharing and administration tables live in their own module; importing it here
# registers them on Base.metadata for Alembic.
from webui_backend.db import models_admin, models_turns  # noqa: E402, F401
