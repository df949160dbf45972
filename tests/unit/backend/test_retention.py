"""The retention job on the app's real database (a migrated SQLite file, or PostgreSQL with
WEBUI_TEST_DATABASE_URL): what goes, what stays, search, space, and one pass at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from sqlalchemy.orm import Session

from tests.support.databases import database_url, is_postgresql, query_rows
from tests.support.fake_runner_client import FakeRunnerClient
from tests.unit.backend.conftest import account
from webui_backend.container import AppServices
from webui_backend.db.engine import create_engine
from webui_backend.db.job_lock import try_job_lock
from webui_backend.db.models import Chat, Message, MessageRole, MessageStatus, utcnow
from webui_backend.db.repositories.turn_writes import TurnWrites
from webui_backend.db.transactions import Transactions
from webui_backend.main import create_app
from webui_backend.services.retention import (
    JOB_NAME,
    RetentionJob,
    RetentionPass,
    RetentionPolicy,
    last_retention_pass,
)
from webui_backend.settings import Settings

T = TypeVar("T")
POLICY = RetentionPolicy(
    days=30, keep_pinned=True, interval_s=3600, batch_size=100, vacuum_min_free_bytes=0
)


async def _chat(
    services: AppServices,
    user_id: str,
    *,
    days_idle: float,
    words: str = "",
    pinned: bool = False,
    archived: bool = False,
    streaming: bool = False,
    messages: int = 2,
    body: str = "",
) -> str:
    """A chat last active `days_idle` days ago, with user/assistant messages containing
    `words` (searchable) and `body` (bulk); the last reply `streaming` if asked."""
    at = utcnow() - timedelta(days=days_idle)
    chat = Chat(
        user_id=user_id,
        title="",
        pinned=pinned,
        archived=archived,
        created_at=at,
        updated_at=at,
    )

    def store(session: Session) -> str:
        session.add(chat)
        session.flush()
        for n in range(messages):
            last = n == messages - 1
            session.add(
                Message(
                    chat_id=chat.id,
                    role=MessageRole.USER if n % 2 == 0 else MessageRole.ASSISTANT,
                    content=f"{words} message {n} {body}",
                    status=MessageStatus.STREAMING
                    if streaming and last
                    else MessageStatus.COMPLETE,
                    created_at=at,
                    updated_at=at,
                )
            )
        return chat.id

    return await services.transactions.run(store)


def _job(services: AppServices, policy: RetentionPolicy = POLICY, **kwargs: object) -> RetentionJob:
    return RetentionJob(
        policy,
        engine=services.engine,
        transactions=services.transactions,
        sessions=services.sessions,
        **kwargs,  # type: ignore[arg-type]
    )


async def _ran(job: RetentionJob) -> RetentionPass:
    done = await job.run_pass()
    assert done is not None, "the pass was skipped"
    return done


def _size(path: Path) -> int:
    return path.stat().st_size


async def _chat_ids(services: AppServices, user_id: str) -> set[str]:
    return {c.id for c in await services.chats.list_chats(user_id, limit=500)}


async def test_old_chats_go_recent_pinned_and_streaming_ones_stay(services: AppServices) -> None:
    owner = await account(services)
    old = await _chat(services, owner, days_idle=40, words="zebrafjord")
    old_archived = await _chat(services, owner, days_idle=31, words="zebrafjord", archived=True)
    recent = await _chat(services, owner, days_idle=29, words="recentword")
    pinned = await _chat(services, owner, days_idle=400, words="pinnedword", pinned=True)
    streaming = await _chat(services, owner, days_idle=60, words="streamword", streaming=True)
    assert len(await services.chats.search(owner, "zebrafjord")) == 4  # two messages each

    done = await _ran(_job(services))

    assert (done.chats_deleted, done.messages_deleted) == (2, 4)
    assert done.cutoff == done.started_at - timedelta(days=30)
    assert await _chat_ids(services, owner) == {recent, pinned, streaming}
    assert await services.chats.search(owner, "zebrafjord") == []
    # Both messages of the kept chats are still found; of the streaming chat, the user's
    # (a reply is searchable once it stops streaming).
    for kept, hits in (("recentword", 2), ("pinnedword", 2), ("streamword", 1)):
        assert len(await services.chats.search(owner, kept)) == hits, kept
    rows = query_rows(
        services.settings.database_url,
        "SELECT count(*) AS n FROM message WHERE chat_id IN (?, ?)",
        old,
        old_archived,
    )
    assert rows[0]["n"] == 0
    # The pass is on record for every worker, and audited as the system's action.
    assert await last_retention_pass(services.sessions) == done
    audit = await services.accounts.audit.page(limit=10, action="retention.delete")
    assert len(audit) == 1
    assert audit[0].actor_id is None
    assert audit[0].details["chats_deleted"] == 2


async def test_pinned_chats_go_too_when_not_kept(services: AppServices) -> None:
    owner = await account(services)
    await _chat(services, owner, days_idle=40, pinned=True)
    done = await _ran(_job(services, replace(POLICY, keep_pinned=False)))
    assert done.chats_deleted == 1
    assert await _chat_ids(services, owner) == set()


async def test_a_pass_deletes_in_batches_of_the_configured_size(services: AppServices) -> None:
    owner = await account(services)
    for _ in range(5):
        await _chat(services, owner, days_idle=90)
    counting = _CountingTransactions(services.transactions)
    job = RetentionJob(
        replace(POLICY, batch_size=2),
        engine=services.engine,
        transactions=counting,
        sessions=services.sessions,
    )
    done = await _ran(job)
    assert done.chats_deleted == 5
    # Three delete transactions (2 + 2 + 1 chats), then the record of the pass.
    assert counting.calls == 4


async def test_a_recent_pass_of_another_process_makes_this_one_skip(
    services: AppServices,
) -> None:
    owner = await account(services)
    await _ran(_job(services))
    await _chat(services, owner, days_idle=90)
    assert await _job(services).run_pass() is None  # within half the interval
    again = await _ran(_job(services, min_gap_s=0))
    assert again.chats_deleted == 1
    # A pass that deleted nothing is the last pass, but not in the audit log.
    nothing = await _ran(_job(services, min_gap_s=0))
    assert nothing.chats_deleted == 0
    assert await last_retention_pass(services.sessions) == nothing
    assert len(await services.accounts.audit.page(limit=10, action="retention.delete")) == 1


async def test_a_pass_skips_while_another_holds_the_lock(services: AppServices) -> None:
    owner = await account(services)
    await _chat(services, owner, days_idle=90)
    other = create_engine(services.settings.database_url)  # another process's connections
    try:
        async with try_job_lock(other, JOB_NAME) as held:
            assert held
            assert await _job(services).run_pass() is None
            assert len(await _chat_ids(services, owner)) == 1
    finally:
        await other.dispose()
    done = await _ran(_job(services))
    assert done.chats_deleted == 1


async def test_two_concurrent_passes_delete_once(services: AppServices, tmp_path: Path) -> None:
    owner = await account(services)
    for _ in range(6):
        await _chat(services, owner, days_idle=90)
    # A second app on the same database: its own engine, writer thread and lock handle.
    second = create_app(
        Settings(
            data_dir=services.settings.data_dir,
            database_url=services.settings.database_url,
            migrate_on_startup=False,
        ),
        runner=FakeRunnerClient(),
    )
    async with second.router.lifespan_context(second):
        results = await asyncio.gather(
            _job(services, min_gap_s=0).run_pass(),
            _job(second.state.services, min_gap_s=0).run_pass(),
        )
    passes = [r for r in results if r is not None]
    assert len(passes) == 1, results
    assert passes[0].chats_deleted == 6
    assert len(await services.accounts.audit.page(limit=10, action="retention.delete")) == 1


async def test_space_is_given_back_to_the_file_system(services: AppServices) -> None:
    url = services.settings.database_url
    if is_postgresql(url):
        done = await _ran(_job(services))
        assert done.vacuum == "autovacuum"
        assert done.bytes_reclaimed is None
        return
    # A database created by the app is in incremental auto-vacuum mode from the start.
    assert query_rows(url, "PRAGMA auto_vacuum")[0]["auto_vacuum"] == 2
    owner = await account(services)
    for _ in range(40):
        await _chat(services, owner, days_idle=90, messages=4, body="lorem ipsum " * 800)
    await _chat(services, owner, days_idle=1, body="kept " * 100)
    path = Path(services.engine.url.database or "")
    query_rows(url, "PRAGMA wal_checkpoint(TRUNCATE)")
    size_before = _size(path)

    done = await _ran(_job(services))

    assert done.chats_deleted == 40
    assert done.vacuum == "incremental"
    assert done.bytes_reclaimed is not None
    assert done.bytes_reclaimed > 1_000_000
    assert query_rows(url, "PRAGMA freelist_count")[0]["freelist_count"] == 0
    assert _size(path) <= size_before - done.bytes_reclaimed
    assert done.file_bytes == _size(path)


async def test_the_app_runs_the_job_when_retention_is_set(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    settings = Settings(data_dir=data_dir, database_url=database_url(data_dir), retention_days=7)
    app = create_app(settings, runner=FakeRunnerClient())
    async with app.router.lifespan_context(app):
        services: AppServices = app.state.services
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while (last := await last_retention_pass(services.sessions)) is None:
            assert loop.time() < deadline, "no retention pass within 10 s of start-up"
            await asyncio.sleep(0.05)
        assert last.cutoff == last.started_at - timedelta(days=7)


class _CountingTransactions:
    def __init__(self, inner: Transactions) -> None:
        self._inner = inner
        self.calls = 0

    async def run(self, work: Callable[[Session], T]) -> T:
        self.calls += 1
        return await self._inner.run(work)

    async def run_writes(self, work: Callable[[TurnWrites], T]) -> T:
        self.calls += 1
        return await self._inner.run_writes(work)

    async def aclose(self) -> None:
        await self._inner.aclose()
