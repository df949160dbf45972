"""Retention: chats idle for longer than the configured days are deleted, and their space
given back (docs/operations.md, "Retention").

Every worker process runs `RetentionJob.run`; a pass happens in the one process that holds the
database's job lock (db/job_lock.py), and only when no pass started in the last half interval,
so a fleet of workers makes about one pass per interval. A pass:

1. deletes chats last active (`chat.updated_at`) before the cutoff, archived or not, pinned
   ones only if so configured, never one with a reply still `streaming`, in transactions of
   `batch_size` chats with a pause between them, so turns keep getting the write lock;
2. gives the freed space back: on SQLite `incremental_vacuum`, or one full VACUUM of an
   older file when much is free, in a worker thread (db/sqlite_space.py); on PostgreSQL
   autovacuum makes the dead rows reusable and the job does nothing more;
3. stores its summary as the last pass, and in the audit log when it deleted chats.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from webui_backend.db.job_lock import try_job_lock
from webui_backend.db.models import utcnow
from webui_backend.db.repositories.retention import DeletedBatch, RetentionWrites, read_last_pass
from webui_backend.db.sqlite_space import SpaceReport, reclaim_space, sqlite_database_path
from webui_backend.db.transactions import Transactions
from webui_backend.settings import Settings

log = logging.getLogger(__name__)

JOB_NAME = "retention"
# Between two delete transactions: other writers (this process's turns on the writer thread,
# other processes polling SQLite's busy handler) get the write lock.
_BATCH_PAUSE_S = 0.05


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    days: int
    keep_pinned: bool
    interval_s: float
    batch_size: int
    vacuum_min_free_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        return cls(
            days=settings.retention_days,
            keep_pinned=settings.retention_keep_pinned,
            interval_s=settings.retention_interval_s,
            batch_size=settings.retention_batch_size,
            vacuum_min_free_bytes=settings.retention_vacuum_min_free_mb * 1024 * 1024,
        )

    @property
    def enabled(self) -> bool:
        return self.days > 0


@dataclass(frozen=True, slots=True)
class RetentionPass:
    started_at: datetime
    finished_at: datetime
    # Chats last active before this instant were due.
    cutoff: datetime
    chats_deleted: int
    messages_deleted: int
    # "none", "incremental" or "full" on SQLite; "autovacuum" on PostgreSQL; "failed" when
    # the SQLite vacuum raised (logged; the next pass tries again).
    vacuum: str
    # SQLite: bytes cut from the database file, and its size after; None on PostgreSQL.
    bytes_reclaimed: int | None
    file_bytes: int | None

    def to_json(self) -> dict[str, Any]:
        values = asdict(self)
        for key in ("started_at", "finished_at", "cutoff"):
            values[key] = values[key].isoformat()
        return values

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> RetentionPass:
        parsed = dict(values)
        for key in ("started_at", "finished_at", "cutoff"):
            parsed[key] = datetime.fromisoformat(parsed[key])
        return cls(**parsed)


async def last_retention_pass(sessions: async_sessionmaker[AsyncSession]) -> RetentionPass | None:
    """The newest pass of any process, or None before the first."""
    async with sessions() as session:
        stored = await read_last_pass(session)
    return None if stored is None else RetentionPass.from_json(stored)


class RetentionJob:
    """Deletes expired chats once per interval across all processes sharing the database.

    `min_gap_s` (default: half the interval) is how recent another process's pass may be for
    this one to skip its turn."""

    def __init__(
        self,
        policy: RetentionPolicy,
        *,
        engine: AsyncEngine,
        transactions: Transactions,
        sessions: async_sessionmaker[AsyncSession],
        sqlite_busy_timeout_ms: int = 5000,
        min_gap_s: float | None = None,
    ) -> None:
        if not policy.enabled:
            raise ValueError("retention is off (days = 0): nothing to run")
        self._policy = policy
        self._engine = engine
        self._transactions = transactions
        self._sessions = sessions
        self._sqlite_path = sqlite_database_path(engine)
        # What gives space back when this job does not: PostgreSQL's autovacuum.
        self._other_vacuum = "none" if engine.url.get_backend_name() == "sqlite" else "autovacuum"
        self._busy_timeout_ms = sqlite_busy_timeout_ms
        self._min_gap_s = policy.interval_s / 2 if min_gap_s is None else min_gap_s

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        engine: AsyncEngine,
        transactions: Transactions,
        sessions: async_sessionmaker[AsyncSession],
    ) -> RetentionJob | None:
        """The job the settings describe; None when retention is off."""
        policy = RetentionPolicy.from_settings(settings)
        if not policy.enabled:
            return None
        return cls(
            policy,
            engine=engine,
            transactions=transactions,
            sessions=sessions,
            sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        )

    async def run(self) -> None:
        """A pass now, then one per interval, until cancelled (a server-owned task)."""
        while True:
            try:
                await self.run_pass()
            except Exception:  # the job must outlive one failed pass; the next one retries
                log.exception("retention pass failed")
            await asyncio.sleep(self._policy.interval_s)

    async def run_pass(self) -> RetentionPass | None:
        """One pass; None when skipped (another process holds the lock or passed recently).

        Raises the database's errors; chats deleted by then stay deleted."""
        async with try_job_lock(self._engine, JOB_NAME) as held:
            if not held:
                log.debug("retention pass skipped: another process is running one")
                return None
            started = utcnow()
            last = await last_retention_pass(self._sessions)
            if last is not None and started - last.started_at < timedelta(seconds=self._min_gap_s):
                return None
            cutoff = started - timedelta(days=self._policy.days)
            deleted = await self._delete_expired(cutoff)
            vacuum, reclaimed, file_bytes = self._other_vacuum, None, None
            try:
                space = await self._reclaim_space()
            except Exception:  # the deletions stand and are recorded; the next pass vacuums
                log.exception("retention could not give the database space back")
                vacuum = "failed"
            else:
                if space is not None:
                    vacuum, reclaimed, file_bytes = (
                        space.method,
                        space.bytes_reclaimed,
                        space.file_bytes,
                    )
            summary = RetentionPass(
                started_at=started,
                finished_at=utcnow(),
                cutoff=cutoff,
                chats_deleted=deleted.chats,
                messages_deleted=deleted.messages,
                vacuum=vacuum,
                bytes_reclaimed=reclaimed,
                file_bytes=file_bytes,
            )
            await self._transactions.run(
                lambda session: RetentionWrites(session).record_pass(
                    summary.to_json(), audit=deleted.chats > 0
                )
            )
        if deleted.chats:
            log.info(
                "retention deleted %d chat(s), %d message(s) last active before %s; "
                "vacuum %s reclaimed %s bytes",
                deleted.chats,
                deleted.messages,
                cutoff.isoformat(),
                summary.vacuum,
                summary.bytes_reclaimed,
            )
        return summary

    async def _delete_expired(self, cutoff: datetime) -> DeletedBatch:
        chats = messages = 0
        while True:
            batch = await self._transactions.run(
                lambda session: RetentionWrites(session).delete_expired_chats(
                    cutoff=cutoff,
                    keep_pinned=self._policy.keep_pinned,
                    limit=self._policy.batch_size,
                )
            )
            chats += batch.chats
            messages += batch.messages
            if batch.chats < self._policy.batch_size:
                return DeletedBatch(chats=chats, messages=messages)
            await asyncio.sleep(_BATCH_PAUSE_S)

    async def _reclaim_space(self) -> SpaceReport | None:
        """SQLite files only (None for PostgreSQL or an in-memory database): runs in a
        worker thread, off the event loop."""
        if self._sqlite_path is None:
            return None
        return await asyncio.to_thread(
            reclaim_space,
            self._sqlite_path,
            busy_timeout_ms=self._busy_timeout_ms,
            full_vacuum_min_free_bytes=self._policy.vacuum_min_free_bytes,
        )
