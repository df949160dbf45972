"""A lock that lets one process at a time run a periodic job against a database.

Every worker process on every host schedules the same periodic jobs (retention); the one
that gets the lock runs the pass, the others skip it. The lock lives with the database, so it
covers exactly the processes that share that database, whatever else they share:

- SQLite: an OS file lock next to the database file (a SQLite file is only ever shared by
  processes on one host);
- PostgreSQL: a session advisory lock, taken on a connection held for the job (any number of
  hosts; released by the server if the process dies). It needs session pooling: behind a
  transaction-pooling proxy (pgbouncer's `transaction` mode) a session lock does not hold.

Unlike `startup_lock`, nothing waits here: a taken lock answers False at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


def advisory_key(job: str) -> int:
    """The signed 64-bit advisory lock key of a job, stable across processes and versions."""
    digest = hashlib.sha256(f"webui-job:{job}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@asynccontextmanager
async def try_job_lock(engine: AsyncEngine, job: str) -> AsyncIterator[bool]:
    """Yield True while this process holds the lock of `job`, False when another holds it.

    An in-memory SQLite database is private to its connection: always True."""
    url = engine.url
    backend = url.get_backend_name()
    if backend == "sqlite":
        database = url.database or ""
        if not database or database == ":memory:" or database.startswith("file::memory:"):
            yield True
            return
        path = Path(database)
        with _file_lock(path.with_name(f"{path.name}.{job}.lock")) as held:
            yield held
        return
    if backend == "postgresql":
        key = advisory_key(job)
        async with engine.connect() as connection:
            held = bool(
                await connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": key})
            )
            await connection.commit()
            try:
                yield held
            finally:
                if held:
                    await connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                    await connection.commit()
        return
    raise NotImplementedError(f"no job lock for the {backend} database backend")


@contextmanager
def _file_lock(path: Path) -> Iterator[bool]:
    # flock without blocking; closing the descriptor releases it (also when the process dies).
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
        else:
            yield True
    finally:
        os.close(fd)
