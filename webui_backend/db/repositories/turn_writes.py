"""The SQL of a chat turn's own transactions, behind one interface per database.

These run inside `Transactions.run_writes` (see `webui_backend/db/transactions.py`), which
picks the implementation once per database: on SQLite `SqliteTurnWrites`
(`turn_writes_sqlite.py`: cached SQL text on the writer thread's own `sqlite3` connection), on
any other database `SessionTurnWrites` here (Core over a synchronous `Session`, through
`run_sync`). Every statement here is Core and built once, because a turn's fixed CPU is the
product's hot path and building a statement cost about as much as running it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol, cast

from sqlalchemy import (
    Date,
    Insert,
    Integer,
    Select,
    String,
    Table,
    Update,
    bindparam,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from webui_backend.db.models import Chat, Message, MessageRole, MessageStatus
from webui_backend.db.models_admin import UsageDaily
from webui_backend.db.models_turns import TurnKey
from webui_backend.db.repositories.chats import _current_message_statement
from webui_backend.db.repositories.messages import ReplyOutcome


@dataclass(frozen=True, slots=True)
class Checkpoint:
    message_id: str
    content: str
    content_seq: int


class TurnWrites(Protocol):
    """The statements of a turn's transactions; the caller's transaction holds them all."""

    def owned_chat_leaf(self, chat_id: str, user_id: str) -> tuple[str | None] | None:
        """`(active leaf id or None,)` for a chat the user owns; None when there is no such
        chat for this user (absent and foreign look the same)."""
        ...

    def message_in_chat(self, message_id: str, chat_id: str) -> bool: ...

    def add_chat(self, *, chat_id: str, user_id: str, title: str, at: datetime) -> None: ...

    def add_messages(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert messages given as full column dicts (see `message_row`), in order."""
        ...

    def set_current_message(self, chat_id: str, message_id: str, at: datetime) -> None: ...

    def branch_history(self, leaf_id: str) -> list[tuple[MessageRole, str]]:
        """(role, content) from the root to `leaf_id`, oldest first."""
        ...

    def add_turn_key(self, row: dict[str, Any]) -> bool:
        """Insert a turn key (see `turn_key_row`); False when (user, key) is taken (no
        savepoint: ON CONFLICT DO NOTHING)."""
        ...

    def finish_reply(self, message_id: str, outcome: ReplyOutcome, at: datetime) -> None: ...

    def add_usage_for_reply(
        self, reply_id: str, *, model: str, day: date, prompt_tokens: int, completion_tokens: int
    ) -> None:
        """Add one request and its tokens to the reply's owner's usage for (model, day)."""
        ...

    def add_usage(
        self, user_id: str, *, model: str, day: date, prompt_tokens: int, completion_tokens: int
    ) -> None:
        """Add one request and its tokens to `user_id`'s usage for (model, day) (requests
        outside a chat, such as `/v1/chat/completions`)."""
        ...

    def checkpoint(self, checkpoints: Sequence[Checkpoint], at: datetime) -> None:
        """Store partial replies in one executemany (a statement per reply, with hundreds
        live, held SQLite's write lock long enough for other writers to time out). Only a
        reply still `streaming` and behind the checkpoint is written, so a late checkpoint
        never overwrites a finished reply or a newer checkpoint."""
        ...


class SessionTurnWrites:
    """`TurnWrites` as Core statements over a synchronous `Session` (any dialect)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def owned_chat_leaf(self, chat_id: str, user_id: str) -> tuple[str | None] | None:
        row = self._session.execute(
            _leaf_statement(), {"l_chat": chat_id, "l_user": user_id}
        ).first()
        return None if row is None else (row[0],)

    def message_in_chat(self, message_id: str, chat_id: str) -> bool:
        row = self._session.execute(
            _in_chat_statement(), {"i_id": message_id, "i_chat": chat_id}
        ).first()
        return row is not None

    def add_chat(self, *, chat_id: str, user_id: str, title: str, at: datetime) -> None:
        self._session.execute(
            _chat_insert(),
            {"id": chat_id, "user_id": user_id, "title": title, "created_at": at, "updated_at": at},
        )

    def add_messages(self, rows: Sequence[dict[str, Any]]) -> None:
        self._session.execute(_message_insert(), list(rows))

    def set_current_message(self, chat_id: str, message_id: str, at: datetime) -> None:
        self._session.execute(
            _current_message_statement(), {"c_id": chat_id, "c_message": message_id, "c_now": at}
        )

    def branch_history(self, leaf_id: str) -> list[tuple[MessageRole, str]]:
        result = self._session.execute(_branch_history_statement(), {"leaf_id": leaf_id})
        return [(row[0], row[1]) for row in result]

    def add_turn_key(self, row: dict[str, Any]) -> bool:
        dialect = self._session.get_bind().dialect.name
        result = self._session.execute(turn_key_insert(dialect), row)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def finish_reply(self, message_id: str, outcome: ReplyOutcome, at: datetime) -> None:
        self._session.execute(
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
                "f_now": at,
            },
        )

    def add_usage_for_reply(
        self, reply_id: str, *, model: str, day: date, prompt_tokens: int, completion_tokens: int
    ) -> None:
        dialect = self._session.get_bind().dialect.name
        self._session.execute(
            _usage_for_reply_statement(dialect),
            {
                "u_reply": reply_id,
                "u_model": model,
                "u_day": day,
                "u_prompt": prompt_tokens,
                "u_completion": completion_tokens,
            },
        )

    def add_usage(
        self, user_id: str, *, model: str, day: date, prompt_tokens: int, completion_tokens: int
    ) -> None:
        dialect = self._session.get_bind().dialect.name
        self._session.execute(
            _usage_statement(dialect),
            {
                "u_user": user_id,
                "u_model": model,
                "u_day": day,
                "u_prompt": prompt_tokens,
                "u_completion": completion_tokens,
            },
        )

    def checkpoint(self, checkpoints: Sequence[Checkpoint], at: datetime) -> None:
        if checkpoints:
            self._session.execute(
                _checkpoint_statement(),
                [
                    {
                        "cp_id": cp.message_id,
                        "cp_content": cp.content,
                        "cp_seq": cp.content_seq,
                        "cp_now": at,
                    }
                    for cp in checkpoints
                ],
            )


def message_row(
    *,
    message_id: str,
    chat_id: str,
    parent_id: str | None,
    role: MessageRole,
    content: str,
    status: MessageStatus,
    model: str | None,
    at: datetime,
) -> dict[str, Any]:
    return {
        "id": message_id,
        "chat_id": chat_id,
        "parent_id": parent_id,
        "role": role,
        "content": content,
        "status": status,
        "model": model,
        "content_seq": 0,
        "created_at": at,
        "updated_at": at,
    }


def _table(entity: type[Any]) -> Table:
    return cast(Table, entity.__table__)


@functools.cache
def _leaf_statement() -> Select[str | None]:
    chat = _table(Chat)
    return select(chat.c.current_message_id).where(
        chat.c.id == bindparam("l_chat"), chat.c.user_id == bindparam("l_user")
    )


@functools.cache
def _in_chat_statement() -> Select[int]:
    message = _table(Message)
    return select(literal(1)).where(
        message.c.id == bindparam("i_id"), message.c.chat_id == bindparam("i_chat")
    )


@functools.cache
def _chat_insert() -> Insert:
    return insert(_table(Chat))


@functools.cache
def _message_insert() -> Insert:
    return insert(_table(Message))


@functools.cache
def turn_key_insert(dialect: str) -> Any:
    dialect_insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    return dialect_insert(_table(TurnKey)).on_conflict_do_nothing(index_elements=["user_id", "key"])


@functools.cache
def _branch_history_statement() -> Select[MessageRole, str]:
    """The recursive walk from a leaf to the root, as columns only (no ORM objects)."""
    message = _table(Message)
    path = (
        select(message.c.id, message.c.parent_id, literal(0).label("depth"))
        .where(message.c.id == bindparam("leaf_id"))
        .cte("path", recursive=True)
    )
    path = path.union_all(
        select(message.c.id, message.c.parent_id, (path.c.depth + 1).label("depth")).join(
            path, message.c.id == path.c.parent_id
        )
    )
    return (
        select(message.c.role, message.c.content)
        .join(path, message.c.id == path.c.id)
        .order_by(path.c.depth.desc())
    )


@functools.cache
def _usage_for_reply_statement(dialect: str) -> Any:
    """Built once per dialect: every reply that ends runs it, and building the upsert cost
    more CPU than executing it."""
    owner = (
        select(
            Chat.user_id,
            bindparam("u_model", type_=String),
            bindparam("u_day", type_=Date),
            literal(1),
            bindparam("u_prompt", type_=Integer),
            bindparam("u_completion", type_=Integer),
        )
        .join(Message, Message.chat_id == Chat.id)
        .where(Message.id == bindparam("u_reply"))
    )
    return _usage_upsert(dialect, owner)


@functools.cache
def _usage_statement(dialect: str) -> Any:
    """`_usage_for_reply_statement` for a known user (built once per dialect, likewise)."""
    row = select(
        bindparam("u_user", type_=String),
        bindparam("u_model", type_=String),
        bindparam("u_day", type_=Date),
        literal(1),
        bindparam("u_prompt", type_=Integer),
        bindparam("u_completion", type_=Integer),
    )
    return _usage_upsert(dialect, row)


def _usage_upsert(dialect: str, rows: Select[*tuple[Any, ...]]) -> Any:
    """INSERT the usage row(s) selected by `rows`, adding to the row that exists."""
    dialect_insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    # The Core table, not the entity: with a parameter dict the ORM would run a bulk insert.
    table = cast(Table, UsageDaily.__table__)
    stmt = dialect_insert(table).from_select(
        ["user_id", "model", "day", "requests", "prompt_tokens", "completion_tokens"], rows
    )
    return stmt.on_conflict_do_update(
        index_elements=["user_id", "model", "day"],
        set_={
            "requests": table.c.requests + 1,
            "prompt_tokens": table.c.prompt_tokens + stmt.excluded.prompt_tokens,
            "completion_tokens": table.c.completion_tokens + stmt.excluded.completion_tokens,
        },
    )


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


@functools.cache
def _checkpoint_statement() -> Update:
    """Core (not ORM) UPDATE, so a list of parameters runs as one executemany."""
    table = cast(Table, Message.__table__)
    return (
        update(table)
        .where(
            table.c.id == bindparam("cp_id"),
            table.c.status == MessageStatus.STREAMING,
            table.c.content_seq < bindparam("cp_seq"),
        )
        .values(
            content=bindparam("cp_content"),
            content_seq=bindparam("cp_seq"),
            updated_at=bindparam("cp_now"),
        )
    )
