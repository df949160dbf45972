"""Giving a SQLite file's free pages back to the file system, after rows were deleted.

Deleting rows only puts their pages on SQLite's freelist: later writes reuse them, but the
file keeps its size. Two ways give them back:

- `PRAGMA incremental_vacuum`, in a file whose `auto_vacuum` mode is INCREMENTAL: moves pages
  from the end of the file into the holes and truncates, a few MB per short write
  transaction. The mode can only be chosen before the first table exists (the app's
  connections ask for it, db/engine.py), so only files created since then have it.
- `VACUUM`, which rewrites the whole file and holds the write lock while it does (seconds per
  GB; other writers wait up to their busy timeout, then fail). Run here with `auto_vacuum`
  set to INCREMENTAL first, so it converts an older file once and every later pass is
  incremental. It runs only when the freelist is large: `full_vacuum_min_free_bytes` and a
  quarter of the file.

Both are synchronous and slow by design: call `reclaim_space` in a worker thread. In WAL mode
the file shrinks at the next checkpoint, which is requested here (TRUNCATE, which also empties
the WAL that the vacuum filled); while a reader holds an older snapshot the checkpoint cannot
finish, and the file shrinks at a later one.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncEngine

# Pages moved per incremental step: 4 MB with 4 KiB pages, some ms of write lock.
_CHUNK_PAGES = 1024
# Between steps the write lock is free for others (SQLite's busy handler polls, no queue).
_STEP_PAUSE_S = 0.02
_AUTO_VACUUM_INCREMENTAL = 2
# A full VACUUM also needs a quarter of the file free: rewriting 10 GB for 100 MB is not worth
# the write lock.
_FULL_VACUUM_MIN_FREE_FRACTION = 0.25

VacuumMethod = Literal["none", "incremental", "full"]


@dataclass(frozen=True, slots=True)
class SpaceReport:
    method: VacuumMethod
    # Pages cut from the end of the database, in bytes (the file shrinks by this much once
    # the WAL is checkpointed).
    bytes_reclaimed: int
    # Free pages left on the freelist, in bytes (reused by later writes).
    free_bytes: int
    # The database file's size when done (without the -wal file).
    file_bytes: int


def reclaim_space(
    database: Path, *, busy_timeout_ms: int, full_vacuum_min_free_bytes: int
) -> SpaceReport:
    """Give the free pages of `database` back, incrementally if the file allows, else by one
    full VACUUM when the freelist is large enough (`full_vacuum_min_free_bytes`, 0 = never).

    Blocking; raises `sqlite3.OperationalError` when the database stays locked beyond
    `busy_timeout_ms` (the next pass tries again)."""
    connection = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    try:
        connection.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        page_size = _pragma(connection, "page_size")
        pages_before = _pragma(connection, "page_count")
        free = _pragma(connection, "freelist_count")
        method: VacuumMethod = "none"
        if free and _pragma(connection, "auto_vacuum") == _AUTO_VACUUM_INCREMENTAL:
            method = "incremental"
            _incremental_vacuum(connection)
        elif (
            free
            and full_vacuum_min_free_bytes > 0
            and free * page_size >= full_vacuum_min_free_bytes
            and free >= pages_before * _FULL_VACUUM_MIN_FREE_FRACTION
        ):
            method = "full"
            connection.execute("PRAGMA auto_vacuum=INCREMENTAL")
            connection.execute("VACUUM")
        if method != "none":
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        pages_after = _pragma(connection, "page_count")
        return SpaceReport(
            method=method,
            bytes_reclaimed=max(0, pages_before - pages_after) * page_size,
            free_bytes=_pragma(connection, "freelist_count") * page_size,
            file_bytes=database.stat().st_size,
        )
    finally:
        connection.close()


def _incremental_vacuum(connection: sqlite3.Connection) -> None:
    while True:
        before = _pragma(connection, "freelist_count")
        if before == 0:
            return
        # executescript steps the statement to the end; execute() would free one page only.
        connection.executescript(f"PRAGMA incremental_vacuum({_CHUNK_PAGES});")
        if _pragma(connection, "freelist_count") >= before:
            return  # nothing moved (cannot happen in INCREMENTAL mode; never loop forever)
        time.sleep(_STEP_PAUSE_S)


def _pragma(connection: sqlite3.Connection, name: str) -> int:
    row = connection.execute(f"PRAGMA {name}").fetchone()
    return int(row[0])


def sqlite_database_path(engine: AsyncEngine) -> Path | None:
    """The file of a SQLite engine; None for another database or an in-memory one."""
    url = engine.url
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):
        return None  # a URI filename (in-memory or with options): not ours to vacuum
    return Path(database)
