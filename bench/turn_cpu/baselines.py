"""The turn benchmark's baselines: the same two transactions per turn as bare SQL, through the
app's async engine (`sql`) and with the stdlib `sqlite3` on one writer thread (`sql-thread`)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from webui_backend.db.models import new_id, utcnow

MODEL = "fake"
CONTENT = "What is the capital of France? Answer in one word."

_SQL_CHAT = "INSERT INTO chat (id, user_id, title, pinned, archived, created_at, updated_at) "
_SQL_CHAT += "VALUES (?, ?, 'bench', 0, 0, ?, ?)"
_SQL_MESSAGE = (
    "INSERT INTO message (id, chat_id, parent_id, role, content, status, model, content_seq, "
    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?)"
)
_SQL_CURRENT = "UPDATE chat SET current_message_id = ?, updated_at = ? WHERE id = ?"
_SQL_BRANCH = (
    "WITH RECURSIVE path(id, parent_id, depth) AS (SELECT id, parent_id, 0 FROM message "
    "WHERE id = ? UNION ALL SELECT m.id, m.parent_id, path.depth + 1 FROM message m "
    "JOIN path ON m.id = path.parent_id) SELECT m.role, m.content FROM message m "
    "JOIN path ON m.id = path.id ORDER BY path.depth DESC"
)
_SQL_FINISH = (
    "UPDATE message SET content = ?, status = ?, finish_reason = ?, prompt_tokens = ?, "
    "completion_tokens = ?, content_seq = ?, updated_at = ? WHERE id = ?"
)
_SQL_USAGE = (
    "INSERT INTO usage_daily (user_id, model, day, requests, prompt_tokens, completion_tokens) "
    "VALUES (?, ?, ?, 1, ?, ?) ON CONFLICT (user_id, model, day) DO UPDATE SET "
    "requests = requests + 1, prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
    "completion_tokens = completion_tokens + excluded.completion_tokens"
)


async def sql_conversation(engine: AsyncEngine, user_id: str, turns: int) -> int:
    """Each turn's two transactions as bare SQL through the app's async engine (aiosqlite)."""
    chat_id: str | None = None
    parent: str | None = None
    for _ in range(turns):
        at = utcnow()
        now, later = _stamp(at), _stamp(at + timedelta(microseconds=1))
        question, reply = new_id(), new_id()
        async with engine.begin() as conn:
            if chat_id is None:
                chat_id = new_id()
                await conn.exec_driver_sql(_SQL_CHAT, (chat_id, user_id, now, now))
            await conn.exec_driver_sql(
                _SQL_MESSAGE,
                (question, chat_id, parent, "user", CONTENT, "complete", None, now, now),
            )
            await conn.exec_driver_sql(
                _SQL_MESSAGE,
                (reply, chat_id, question, "assistant", "", "streaming", MODEL, later, later),
            )
            await conn.exec_driver_sql(_SQL_CURRENT, (reply, now, chat_id))
            (await conn.exec_driver_sql(_SQL_BRANCH, (question,))).all()
        async with engine.begin() as conn:
            done = utcnow()
            await conn.exec_driver_sql(
                _SQL_FINISH, ("Hello there", "complete", "eos", 3, 2, 3, _stamp(done), reply)
            )
            await conn.exec_driver_sql(_SQL_USAGE, (user_id, MODEL, str(done.date()), 3, 2))
        parent = reply
    return turns


class ThreadWriter:
    """The design the `sql` figures argue for: stdlib sqlite3 on one writer thread, one
    hand-over per transaction instead of several per statement."""

    def __init__(self, path: Path) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-writer")
        self._path = path
        self._conn: sqlite3.Connection | None = None

    async def run(self, fn: Callable[[sqlite3.Connection], None]) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._in_thread, fn)

    def _in_thread(self, fn: Callable[[sqlite3.Connection], None]) -> None:
        if self._conn is None:
            self._conn = sqlite3.connect(self._path, isolation_level=None)
            for pragma in ("busy_timeout=5000", "foreign_keys=ON", "synchronous=NORMAL"):
                self._conn.execute(f"PRAGMA {pragma}")
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            fn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


async def thread_conversation(writer: ThreadWriter, user_id: str, turns: int) -> int:
    chat_id = new_id()
    parent: str | None = None
    for turn in range(turns):
        parent = await _thread_turn(writer, user_id, chat_id, parent, first=turn == 0)
    return turns


async def _thread_turn(
    writer: ThreadWriter, user_id: str, chat_id: str, parent: str | None, *, first: bool
) -> str:
    at = utcnow()
    now, later = _stamp(at), _stamp(at + timedelta(microseconds=1))
    question, reply = new_id(), new_id()

    def store(conn: sqlite3.Connection) -> None:
        if first:
            conn.execute(_SQL_CHAT, (chat_id, user_id, now, now))
        conn.execute(
            _SQL_MESSAGE, (question, chat_id, parent, "user", CONTENT, "complete", None, now, now)
        )
        conn.execute(
            _SQL_MESSAGE,
            (reply, chat_id, question, "assistant", "", "streaming", MODEL, later, later),
        )
        conn.execute(_SQL_CURRENT, (reply, now, chat_id))
        conn.execute(_SQL_BRANCH, (question,)).fetchall()

    def finish(conn: sqlite3.Connection) -> None:
        done = utcnow()
        conn.execute(_SQL_FINISH, ("Hello there", "complete", "eos", 3, 2, 3, _stamp(done), reply))
        conn.execute(_SQL_USAGE, (user_id, MODEL, str(done.date()), 3, 2))

    await writer.run(store)
    await writer.run(finish)
    return reply


def _stamp(at: datetime) -> str:
    # The text form SQLAlchemy stores for SQLite datetimes.
    return at.replace(tzinfo=None).isoformat(" ")
