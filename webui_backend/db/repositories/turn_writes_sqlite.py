"""`TurnWrites` on SQLite: fixed SQL text on the writer thread's own `sqlite3` connection.

The same statements as `SessionTurnWrites` (turn_writes.py), written out once for SQLite. On
the writer thread SQLAlchemy's per-statement machinery (compile-cache lookup, parameter
processing, result objects, the Session's transaction bookkeeping) cost more CPU than SQLite
itself: the writer thread spent 1.7 to 2.1 ms per turn through the Session, 0.7 to 0.8 ms this
way (docs/benchmarks.md, "Turn CPU"). The text is constant, so `sqlite3`'s own statement cache
prepares each statement once per connection.

Values are stored exactly as SQLAlchemy stores them on SQLite (text datetimes with six
fractional digits, dates as ISO text, enums as their values, booleans as 0/1);
tests/unit/backend/test_turn_writes_sqlite.py holds both implementations to the same rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from webui_backend.db.models import MessageRole, MessageStatus
from webui_backend.db.repositories.messages import ReplyOutcome
from webui_backend.db.repositories.turn_writes import Checkpoint

_LEAF = "SELECT current_message_id FROM chat WHERE id = ? AND user_id = ?"
_IN_CHAT = "SELECT 1 FROM message WHERE id = ? AND chat_id = ?"
_CHAT = (
    "INSERT INTO chat (id, user_id, title, pinned, archived, created_at, updated_at) "
    "VALUES (?, ?, ?, 0, 0, ?, ?)"
)
_MESSAGE = (
    "INSERT INTO message (id, chat_id, parent_id, role, content, status, model, content_seq, "
    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_CURRENT = "UPDATE chat SET current_message_id = ?, updated_at = ? WHERE id = ?"
_TURN_KEY = (
    'INSERT INTO turn_key (user_id, "key", chat_id, user_message_id, assistant_message_id, '
    "created_chat, request_digest, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    'ON CONFLICT (user_id, "key") DO NOTHING'
)
_BRANCH = (
    "WITH RECURSIVE path(id, parent_id, depth) AS ("
    "SELECT id, parent_id, 0 FROM message WHERE id = ? "
    "UNION ALL SELECT message.id, message.parent_id, path.depth + 1 "
    "FROM message JOIN path ON message.id = path.parent_id) "
    "SELECT message.role, message.content FROM message JOIN path ON message.id = path.id "
    "ORDER BY path.depth DESC"
)
_FINISH = (
    "UPDATE message SET content = ?, status = ?, model = ?, finish_reason = ?, error = ?, "
    "prompt_tokens = ?, completion_tokens = ?, queue_ms = ?, ttft_ms = ?, total_ms = ?, "
    "content_seq = ?, updated_at = ? WHERE id = ?"
)
# One request's tokens added to a user's row for (model, day), or the row created.
_USAGE_INSERT = (
    "INSERT INTO usage_daily (user_id, model, day, requests, prompt_tokens, completion_tokens) "
)
_USAGE_ADD = (
    " ON CONFLICT (user_id, model, day) DO UPDATE SET "
    "requests = usage_daily.requests + 1, "
    "prompt_tokens = usage_daily.prompt_tokens + excluded.prompt_tokens, "
    "completion_tokens = usage_daily.completion_tokens + excluded.completion_tokens"
)
# The owner comes from the reply's chat; `WHERE` is required by SQLite's grammar for an upsert
# whose rows come from a SELECT.
_USAGE = (
    _USAGE_INSERT
    + "SELECT chat.user_id, ?, ?, 1, ?, ? FROM chat JOIN message ON message.chat_id = chat.id "
    "WHERE message.id = ?" + _USAGE_ADD
)
_USAGE_OF_USER = _USAGE_INSERT + "VALUES (?, ?, ?, 1, ?, ?)" + _USAGE_ADD
_CHECKPOINT = (
    "UPDATE message SET content = ?, content_seq = ?, updated_at = ? "
    f"WHERE id = ? AND status = '{MessageStatus.STREAMING.value}' AND content_seq < ?"
)
_ROLES = {role.value: role for role in MessageRole}


def sqlite_datetime(at: datetime) -> str:
    """The text SQLAlchemy's SQLite `DateTime` stores: wall time as given (our datetimes are
    UTC), always six fractional digits, no offset."""
    return at.replace(tzinfo=None).isoformat(" ", "microseconds")


class SqliteTurnWrites:
    """`TurnWrites` over one `sqlite3` connection in autocommit mode (`isolation_level=None`):
    the caller opens and ends each transaction."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection
        # One cursor for every statement: each execute resets the previous one, so no
        # statement stays open past the next (reads are fetched whole).
        self._cursor = connection.cursor()

    def owned_chat_leaf(self, chat_id: str, user_id: str) -> tuple[str | None] | None:
        rows = self._cursor.execute(_LEAF, (chat_id, user_id)).fetchall()
        return (rows[0][0],) if rows else None

    def message_in_chat(self, message_id: str, chat_id: str) -> bool:
        return bool(self._cursor.execute(_IN_CHAT, (message_id, chat_id)).fetchall())

    def add_chat(self, *, chat_id: str, user_id: str, title: str, at: datetime) -> None:
        stamp = sqlite_datetime(at)
        self._cursor.execute(_CHAT, (chat_id, user_id, title, stamp, stamp))

    def add_messages(self, rows: Sequence[dict[str, Any]]) -> None:
        execute = self._cursor.execute
        for row in rows:
            execute(
                _MESSAGE,
                (
                    row["id"],
                    row["chat_id"],
                    row["parent_id"],
                    row["role"].value,
                    row["content"],
                    row["status"].value,
                    row["model"],
                    row["content_seq"],
                    sqlite_datetime(row["created_at"]),
                    sqlite_datetime(row["updated_at"]),
                ),
            )

    def set_current_message(self, chat_id: str, message_id: str, at: datetime) -> None:
        self._cursor.execute(_CURRENT, (message_id, sqlite_datetime(at), chat_id))

    def branch_history(self, leaf_id: str) -> list[tuple[MessageRole, str]]:
        rows = self._cursor.execute(_BRANCH, (leaf_id,)).fetchall()
        return [(_ROLES[role], content) for role, content in rows]

    def add_turn_key(self, row: dict[str, Any]) -> bool:
        cursor = self._cursor.execute(
            _TURN_KEY,
            (
                row["user_id"],
                row["key"],
                row["chat_id"],
                row["user_message_id"],
                row["assistant_message_id"],
                int(row["created_chat"]),
                row["request_digest"],
                sqlite_datetime(row["created_at"]),
            ),
        )
        return cursor.rowcount > 0

    def finish_reply(self, message_id: str, outcome: ReplyOutcome, at: datetime) -> None:
        self._cursor.execute(
            _FINISH,
            (
                outcome.content,
                outcome.status.value,
                outcome.model,
                outcome.finish_reason,
                outcome.error,
                outcome.prompt_tokens,
                outcome.completion_tokens,
                outcome.queue_ms,
                outcome.ttft_ms,
                outcome.total_ms,
                outcome.content_seq,
                sqlite_datetime(at),
                message_id,
            ),
        )

    def add_usage_for_reply(
        self, reply_id: str, *, model: str, day: date, prompt_tokens: int, completion_tokens: int
    ) -> None:
        self._cursor.execute(
            _USAGE, (model, day.isoformat(), prompt_tokens, completion_tokens, reply_id)
        )

    def add_usage(
        self, user_id: str, *, model: str, day: date, prompt_tokens: int, completion_tokens: int
    ) -> None:
        self._cursor.execute(
            _USAGE_OF_USER, (user_id, model, day.isoformat(), prompt_tokens, completion_tokens)
        )

    def checkpoint(self, checkpoints: Sequence[Checkpoint], at: datetime) -> None:
        if checkpoints:
            stamp = sqlite_datetime(at)
            self._cursor.executemany(
                _CHECKPOINT,
                [
                    (cp.content, cp.content_seq, stamp, cp.message_id, cp.content_seq)
                    for cp in checkpoints
                ],
            )
