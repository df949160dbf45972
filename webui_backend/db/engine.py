"""The async engine and session factory, with the SQLite pragmas a server needs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def create_engine(
    database_url: str,
    *,
    sqlite_busy_timeout_ms: int = 5000,
    pool_size: int = 10,
    max_overflow: int = 20,
) -> AsyncEngine:
    """Create the engine. For SQLite: WAL (readers never block the writer), a busy timeout
    (concurrent writers wait instead of failing) and enforced foreign keys. For a server
    database (PostgreSQL): a pool of `pool_size` connections plus `max_overflow` under load,
    each checked before use (a restarted server does not fail the next request)."""
    is_sqlite = database_url.startswith("sqlite")
    kwargs: dict[str, Any] = {}
    if not is_sqlite:
        kwargs.update(pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True)
    engine = create_async_engine(database_url, **kwargs)
    if is_sqlite:

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            apply_sqlite_pragmas(dbapi_conn, sqlite_busy_timeout_ms)

    return engine


def apply_sqlite_pragmas(dbapi_conn: Any, busy_timeout_ms: int) -> None:
    """Every SQLite connection of the app, async or the writer thread's, gets these."""
    cursor = dbapi_conn.cursor()
    # Takes effect only in a new, empty file (before journal_mode writes its header): the
    # retention job can then hand freed pages back with `incremental_vacuum`. An existing
    # file keeps its mode until a VACUUM (db/sqlite_space.py).
    cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    cursor.execute("PRAGMA foreign_keys=ON")
    # NORMAL is durable in WAL mode across application crashes (not power loss).
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
