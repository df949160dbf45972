"""One process at a time per database for start-up jobs (migrations, first-boot seeding).

Several workers, or several hosts, may start at the same moment against one database; two
Alembic runs at once fail half-way (`table ... already exists`) or record a revision twice.
The lock is an OS file lock next to a SQLite file (processes on one host share it) and a
PostgreSQL session advisory lock (any number of hosts).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

# pg_advisory_lock takes a bigint; any constant that other applications sharing the
# database are unlikely to use.
_PG_LOCK_KEY = 0x77656275695F6D67  # "webui_mg"
_POLL_S = 0.05


@asynccontextmanager
async def startup_lock(engine: AsyncEngine) -> AsyncIterator[None]:
    """Hold the database's start-up lock for the block, waiting as long as another process
    holds it. No lock for an in-memory SQLite database (nothing else can open it)."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if not database or database == ":memory:" or database.startswith("file::memory:"):
            yield
            return
        async with _file_lock(Path(database).with_name(Path(database).name + ".startup.lock")):
            yield
        return
    if url.get_backend_name() == "postgresql":
        async with engine.connect() as connection:
            await connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _PG_LOCK_KEY})
            await connection.commit()
            try:
                yield
            finally:
                await connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_LOCK_KEY}
                )
                await connection.commit()
        return
    yield


@asynccontextmanager
async def _file_lock(path: Path) -> AsyncIterator[None]:
    # Polled without blocking, so waiting never ties up a thread and stays cancellable.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(_POLL_S)
        yield
    finally:
        os.close(fd)  # releases the lock
