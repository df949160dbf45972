"""Run a whole transaction as one unit of synchronous work, handed over once.

The hot writes of a chat turn (the user message with its empty reply; the finished reply with
its usage; the batched checkpoints) are a handful of statements each. Through aiosqlite every
statement is several hops between the event loop and the driver's thread, and those hops, not
SQLite, were most of a turn's CPU. Here the transaction is a plain function over a synchronous
`Session`, so:

- on SQLite it runs on one dedicated writer thread with its own connection: one hand-over per
  transaction, and the process's turn writes never contend for SQLite's write lock with each
  other (other writers still wait on the busy timeout);
- on any other database (PostgreSQL) it runs through `AsyncSession.run_sync`, on the async
  driver, so the same function is the same SQL everywhere.

The turn's own transactions (`run_writes`) are functions over `TurnWrites` instead, whose
implementation is chosen here once per database: on SQLite plain `sqlite3` calls on the writer
thread's connection (`SqliteTurnWrites`; SQLAlchemy's per-statement work cost more than
SQLite's), elsewhere Core statements over the `run_sync` session (`SessionTurnWrites`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from webui_backend.db.engine import apply_sqlite_pragmas
from webui_backend.db.repositories.turn_writes import SessionTurnWrites, TurnWrites
from webui_backend.db.repositories.turn_writes_sqlite import SqliteTurnWrites
from webui_backend.db.writer_thread import WriterThread

T = TypeVar("T")
Work = Callable[[Session], T]


class Transactions(Protocol):
    async def run(self, work: Callable[[Session], T]) -> T:
        """Run `work` in one transaction: committed when it returns, rolled back if it raises
        (the exception propagates)."""
        ...

    async def run_writes(self, work: Callable[[TurnWrites], T]) -> T:
        """Like `run`, for a function over the chat turn's statements (`TurnWrites`)."""
        ...

    async def aclose(self) -> None: ...


class AsyncSessionTransactions:
    """Any database: the work runs on the async driver through `run_sync`."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def run(self, work: Callable[[Session], T]) -> T:
        async with self._sessions() as session, session.begin():
            return await session.run_sync(work)

    async def run_writes(self, work: Callable[[TurnWrites], T]) -> T:
        return await self.run(lambda session: work(SessionTurnWrites(session)))

    async def aclose(self) -> None:
        return None


class SqliteWriterThread:
    """SQLite: one thread owns one connection and runs every transaction handed to it."""

    def __init__(self, database_url: str, *, busy_timeout_ms: int) -> None:
        sync_url = database_url.replace("sqlite+aiosqlite:", "sqlite:", 1)
        # One connection, used only by the writer thread (StaticPool hands out that one).
        self._engine: Engine = create_engine(
            sync_url, poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
        # The turn statements on the pool's one connection, bare (set when it connects).
        self._writes: SqliteTurnWrites | None = None

        @event.listens_for(self._engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            # The driver's own implicit BEGIN is off, so that the "begin" hook below and
            # `_run_writes` decide.
            dbapi_conn.isolation_level = None
            apply_sqlite_pragmas(dbapi_conn, busy_timeout_ms)
            self._writes = SqliteTurnWrites(dbapi_conn)

        @event.listens_for(self._engine, "begin")
        def _begin(conn: Any) -> None:
            # IMMEDIATE: take the write lock when the transaction starts. A deferred one that
            # reads first and then writes can fail at once with SQLITE_BUSY if another process
            # wrote in between (the busy timeout does not apply to that upgrade).
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        self._thread = WriterThread("sqlite-writer")

    async def run(self, work: Callable[[Session], T]) -> T:
        return await self._thread.call(self._run, work)

    def _run(self, work: Callable[[Session], T]) -> T:
        with self._sessions() as session, session.begin():
            return work(session)

    async def run_writes(self, work: Callable[[TurnWrites], T]) -> T:
        return await self._thread.call(self._run_writes, work)

    def _run_writes(self, work: Callable[[TurnWrites], T]) -> T:
        writes = self._writes or self._connect()
        connection = writes.connection
        # IMMEDIATE for the same reason as the "begin" hook above.
        connection.execute("BEGIN IMMEDIATE")
        try:
            result = work(writes)
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
        return result

    def _connect(self) -> SqliteTurnWrites:
        # A checkout makes the pool open its one connection (the "connect" hook); the
        # connection stays open for both kinds of work after it is handed back.
        with self._engine.connect():
            pass
        assert self._writes is not None
        return self._writes

    async def aclose(self) -> None:
        await asyncio.to_thread(self._thread.close)
        self._engine.dispose()


def create_transactions(
    database_url: str, sessions: async_sessionmaker[AsyncSession], *, busy_timeout_ms: int
) -> Transactions:
    if database_url.startswith("sqlite"):
        return SqliteWriterThread(database_url, busy_timeout_ms=busy_timeout_ms)
    return AsyncSessionTransactions(sessions)
