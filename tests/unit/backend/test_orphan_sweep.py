"""The dead-worker sweep: replies left `streaming` by a worker that is gone end `interrupted`
(with the checkpoint and the text the worker had published), while live ones are left alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from tests.unit.backend import hub_fixtures
from tests.unit.backend.conftest import account
from tests.unit.backend.hub_fixtures import HubFactory
from webui_backend.container import AppServices
from webui_backend.db.models import Message, MessageRole, MessageStatus, utcnow
from webui_backend.db.repositories import ChatRepository, MessageRepository
from webui_backend.services.recovery import ORPHAN_MESSAGE, OrphanSweeper
from webui_backend.services.turn_events import TurnDelta, TurnEvent, TurnFinished, TurnStarted
from webui_backend.services.turn_hub import TurnHub

OWNER_EMAIL = "sweep@example.com"


@pytest.fixture
async def redis_hubs() -> AsyncIterator[HubFactory]:
    await hub_fixtures.redis_or_skip()
    factory = HubFactory("redis")
    try:
        yield factory
    finally:
        await factory.aclose()


async def streaming_reply(
    services: AppServices, owner: str, *, content: str, content_seq: int, age_s: float
) -> str:
    """A stored reply still `streaming`, last written `age_s` ago."""
    at = utcnow() - timedelta(seconds=age_s)
    async with services.sessions() as session, session.begin():
        chat = await ChatRepository(session).add(user_id=owner)
        repo = MessageRepository(session)
        question = repo.add(
            chat_id=chat.id, parent_id=None, role=MessageRole.USER, content="q", at=at
        )
        await session.flush()
        reply = repo.add(
            chat_id=chat.id,
            parent_id=question.id,
            role=MessageRole.ASSISTANT,
            content=content,
            status=MessageStatus.STREAMING,
            at=at,
        )
        reply.content_seq = content_seq
    return reply.id


async def stored(services: AppServices, reply_id: str) -> Message:
    async with services.sessions() as session:
        message = await session.get(Message, reply_id)
    assert message is not None
    return message


async def collect(hub: TurnHub, turn: str, owner: str) -> list[TurnEvent]:
    events: list[TurnEvent] = []
    async for batch in hub.subscribe(turn, owner, after_seq=0):
        events.extend(batch)
    return events


def sweeper(services: AppServices, hub: TurnHub, *, grace_s: float = 5) -> OrphanSweeper:
    return OrphanSweeper(services.sessions, hub, interval_s=60, grace_s=grace_s)


async def test_a_dead_workers_reply_ends_interrupted_with_its_text_and_watchers_finish(
    services: AppServices, redis_hubs: HubFactory
) -> None:
    owner = await account(services, OWNER_EMAIL)
    # The checkpoint covers seqs 1-3 ("Hel" + "lo"); the dead worker had published up to 5.
    reply_id = await streaming_reply(services, owner, content="Hello", content_seq=3, age_s=60)
    # The watcher's reads block until the sweep's finished event lands: with the fixture's
    # 200 ms it could give up first on a slow machine (a dead worker, a log not yet closed),
    # which ends a watch too, but not the way this test checks.
    dead, alive = await redis_hubs.make(), await redis_hubs.make(block_ms=30_000)
    await dead.open(reply_id, owner)
    for event in (
        TurnStarted(1, "m", 3),
        TurnDelta(2, "Hel"),
        TurnDelta(3, "lo"),
        TurnDelta(4, " wor"),
        TurnDelta(5, "ld"),
    ):
        dead.publish(reply_id, event)
    watcher = asyncio.create_task(collect(alive, reply_id, owner))
    await dead.aclose()  # flushes, then its heartbeat is gone: the worker died

    assert await sweeper(services, alive).sweep() == 1

    events = await asyncio.wait_for(watcher, 10)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    finished = events[-1]
    assert type(finished) is TurnFinished
    assert (finished.status, finished.error_code) == ("interrupted", "interrupted")
    reply = await stored(services, reply_id)
    assert (reply.status, reply.content, reply.content_seq) == (
        MessageStatus.INTERRUPTED,
        "Hello world",
        5,
    )
    assert (reply.finish_reason, reply.error) == ("interrupted", ORPHAN_MESSAGE)
    assert await alive.live_turn_ids_anywhere() == []
    # Idempotent: a second pass (or another worker's) finds nothing.
    assert await sweeper(services, alive).sweep() == 0


async def test_a_reply_live_on_a_worker_with_a_fresh_heartbeat_is_left_alone(
    services: AppServices, redis_hubs: HubFactory
) -> None:
    owner = await account(services, OWNER_EMAIL)
    # No checkpoint for a minute (e.g. waiting in the runner's queue), but its worker lives.
    reply_id = await streaming_reply(services, owner, content="", content_seq=0, age_s=60)
    generating, other = await redis_hubs.make(), await redis_hubs.make()
    await generating.open(reply_id, owner)

    assert await sweeper(services, other).sweep() == 0
    assert (await stored(services, reply_id)).status is MessageStatus.STREAMING


async def test_a_recently_written_reply_waits_for_the_grace_period(
    services: AppServices, redis_hubs: HubFactory
) -> None:
    owner = await account(services, OWNER_EMAIL)
    # Just stored, not yet registered in the hub: the moment between commit and `open`.
    reply_id = await streaming_reply(services, owner, content="", content_seq=0, age_s=0)
    hub = await redis_hubs.make()

    assert await sweeper(services, hub, grace_s=30).sweep() == 0
    assert (await stored(services, reply_id)).status is MessageStatus.STREAMING


async def test_in_process_hub_keeps_the_checkpoint(services: AppServices) -> None:
    owner = await account(services, OWNER_EMAIL)
    reply_id = await streaming_reply(services, owner, content="partial", content_seq=4, age_s=60)

    assert await sweeper(services, services.hub).sweep() == 1
    reply = await stored(services, reply_id)
    assert (reply.status, reply.content, reply.content_seq) == (
        MessageStatus.INTERRUPTED,
        "partial",
        4,
    )


async def test_a_log_already_past_the_finished_seq_is_closed_without_it(
    redis_hubs: HubFactory,
) -> None:
    dead, alive = await redis_hubs.make(), await redis_hubs.make()
    await dead.open("t", "u1")
    for event in (TurnStarted(1, "m", 3), TurnDelta(2, "a"), TurnDelta(3, "b")):
        dead.publish("t", event)
    await dead.aclose()
    assert await alive.orphan_tail("t", 1) == ("ab", 3)
    assert await alive.orphan_tail("t", 3) == ("", 3)

    # The stored reply covers less than the log: the log only closes, and watchers then
    # read the stored reply (TurnWatcher), which has the last word.
    await alive.finish_orphan("t", TurnFinished(3, "interrupted", "interrupted"))
    events = await asyncio.wait_for(collect(alive, "t", "u1"), 10)
    assert [e.seq for e in events] == [1, 2, 3]
    assert await alive.live_turn_ids_anywhere() == []
