"""Stop, checkpoints, idempotent sends, continue/regenerate and resume from storage."""

from __future__ import annotations

import asyncio

from model_runner.client import StreamDelta, StreamStarted
from tests.support.fake_runner_client import FakeRunnerClient, reply_script
from webui_backend.container import AppServices
from webui_backend.db.models import utcnow
from webui_backend.db.repositories.turn_writes import Checkpoint
from webui_backend.db.repositories.turns import TurnRepository
from webui_backend.services.new_turn import TurnRequest
from webui_backend.services.turn_events import TurnDelta, TurnFinished, TurnSnapshot, WatchEvent
from webui_backend.services.turn_followups import FollowUpRequest


async def stored(services: AppServices, reply_id: str) -> tuple[str, str, int]:
    async with services.sessions() as session:
        reply = await TurnRepository(session).get_reply(reply_id)
    assert reply is not None
    return reply.message.status.value, reply.message.content, reply.message.content_seq


async def watch_all(
    services: AppServices, user_id: str, turn_id: str, after: int = 0
) -> list[WatchEvent]:
    events: list[WatchEvent] = []
    async with asyncio.timeout(10):
        async for batch in services.watcher.watch(user_id, turn_id, after_seq=after):
            events.extend(batch)
    return events


def text_of(events: list[WatchEvent]) -> str:
    text = ""
    for e in events:
        if type(e) is TurnSnapshot:
            text = e.text
        elif type(e) is TurnDelta:
            text += e.text
    return text


async def test_stop_cancels_the_runner_call_and_keeps_the_partial_reply_cancelled(
    services: AppServices, runner: FakeRunnerClient, user_id: str
) -> None:
    hold = asyncio.Event()
    runner.scripts.append(
        [StreamStarted("", "fake", 3), StreamDelta("Half", 1), StreamDelta(" way", 2), hold]
    )
    handle = await services.turns.start_turn(user_id, TurnRequest(content="hi"))
    events = services.watcher.watch(user_id, handle.turn_id)
    seen: list[WatchEvent] = []
    async with asyncio.timeout(10):
        while text_of(seen) != "Half way":
            seen.extend(await anext(events))
        assert await services.turns.stop_turn(user_id, handle.turn_id) is True
        async for batch in events:
            seen.extend(batch)
    finished = seen[-1]
    assert type(finished) is TurnFinished
    assert finished.status == "cancelled"
    assert runner.cancelled == [handle.turn_id]
    assert await stored(services, handle.turn_id) == ("cancelled", "Half way", 3)
    assert await services.turns.stop_turn(user_id, handle.turn_id) is False


async def test_checkpoint_stores_partial_text_and_its_seq_while_streaming(
    services: AppServices, runner: FakeRunnerClient, user_id: str
) -> None:
    hold = asyncio.Event()
    runner.scripts.append([StreamStarted("", "fake", 3), StreamDelta("abc", 1), hold])
    handle = await services.turns.start_turn(user_id, TurnRequest(content="hi"))
    events = services.watcher.watch(user_id, handle.turn_id)
    seen: list[WatchEvent] = []
    async with asyncio.timeout(10):
        while text_of(seen) != "abc":
            seen.extend(await anext(events))
    checkpoints = services.turns._generator._checkpoints
    assert await checkpoints.flush() == 1
    assert await stored(services, handle.turn_id) == ("streaming", "abc", 2)
    await services.turns.stop_turn(user_id, handle.turn_id)
    await watch_all(services, user_id, handle.turn_id, 2)


async def test_a_late_checkpoint_never_overwrites_a_finished_reply_or_a_newer_one(
    services: AppServices, runner: FakeRunnerClient, user_id: str
) -> None:
    hold = asyncio.Event()
    runner.scripts.append([StreamStarted("", "fake", 3), StreamDelta("abc", 1), hold])
    live = await services.turns.start_turn(user_id, TurnRequest(content="b"))
    runner.scripts.append(reply_script("one ", "two"))
    done = await services.turns.start_turn(user_id, TurnRequest(content="a"))
    await watch_all(services, user_id, done.turn_id)
    events = services.watcher.watch(user_id, live.turn_id)
    seen: list[WatchEvent] = []
    async with asyncio.timeout(10):
        while text_of(seen) != "abc":
            seen.extend(await anext(events))
    assert await services.turns._generator._checkpoints.flush() == 1
    late = [Checkpoint(done.turn_id, "stale", 99), Checkpoint(live.turn_id, "older", 1)]
    await services.transactions.run_writes(lambda writes: writes.checkpoint(late, utcnow()))
    assert await stored(services, done.turn_id) == ("complete", "one two", 3)
    assert await stored(services, live.turn_id) == ("streaming", "abc", 2)
    await services.turns.stop_turn(user_id, live.turn_id)
    await watch_all(services, user_id, live.turn_id, 2)


async def test_duplicate_turn_key_never_generates_twice(
    services: AppServices, runner: FakeRunnerClient, user_id: str
) -> None:
    first = await services.turns.start_turn(user_id, TurnRequest(content="hi", turn_key="k1"))
    again = await services.turns.start_turn(user_id, TurnRequest(content="hi", turn_key="k1"))
    assert again.existing
    assert again.turn_id == first.turn_id
    assert again.chat_id == first.chat_id
    await watch_all(services, user_id, first.turn_id)
    assert len(runner.turn_metadata()) == 1  # one generation (the chat's title call aside)


async def test_finished_reply_resumes_from_storage_after_the_hub_forgot_it(
    services: AppServices, runner: FakeRunnerClient, user_id: str
) -> None:
    runner.scripts.append(reply_script("one ", "two ", "three"))
    handle = await services.turns.start_turn(user_id, TurnRequest(content="hi"))
    live = await watch_all(services, user_id, handle.turn_id)
    services.hub._turns.clear()  # type: ignore[attr-defined]  # evicted
    for after in range(0, 5):
        resumed = await watch_all(services, user_id, handle.turn_id, after)
        assert type(resumed[-1]) is TurnFinished
        assert resumed[-1].seq == 5
        assert text_of([*live[:after], *resumed]) == "one two three" or after == 0
    assert text_of(await watch_all(services, user_id, handle.turn_id, 0)) == "one two three"
    assert await watch_all(services, user_id, handle.turn_id, 5) == []


async def test_continue_appends_to_the_same_reply_and_regenerate_adds_a_sibling(
    services: AppServices, runner: FakeRunnerClient, user_id: str
) -> None:
    hold = asyncio.Event()
    runner.scripts.append([StreamStarted("", "fake", 3), StreamDelta("Part", 1), hold])
    handle = await services.turns.start_turn(user_id, TurnRequest(content="hi"))
    async with asyncio.timeout(10):
        async for batch in services.watcher.watch(user_id, handle.turn_id):
            if text_of(list(batch)) == "Part":
                await services.turns.stop_turn(user_id, handle.turn_id)
    cont = await services.turns.continue_turn(user_id, handle.turn_id, FollowUpRequest())
    assert cont.turn_id == handle.turn_id
    assert cont.resume_after == 3
    tail = await watch_all(services, user_id, cont.turn_id, cont.resume_after)
    assert [e.seq for e in tail] == list(range(4, 4 + len(tail)))
    status, content, content_seq = await stored(services, handle.turn_id)
    assert (status, content, content_seq) == ("complete", "Part" + text_of(tail), tail[-1].seq - 1)
    regen = await services.turns.regenerate_turn(user_id, handle.turn_id, FollowUpRequest())
    assert regen.turn_id != handle.turn_id
    assert regen.user_message_id == handle.user_message_id
    regenerated = await watch_all(services, user_id, regen.turn_id)
    assert type(regenerated[-1]) is TurnFinished
    assert regenerated[-1].status == "complete"


async def test_duplicate_turn_key_on_regenerate_never_generates_twice(
    services: AppServices, runner: FakeRunnerClient, user_id: str
) -> None:
    handle = await services.turns.start_turn(user_id, TurnRequest(content="hi"))
    await watch_all(services, user_id, handle.turn_id)
    request = FollowUpRequest(turn_key="regen-1")
    first = await services.turns.regenerate_turn(user_id, handle.turn_id, request)
    again = await services.turns.regenerate_turn(user_id, handle.turn_id, request)
    assert again.existing
    assert again.turn_id == first.turn_id
    # At once, both past the lookup: the key's insert lets one of them store a reply.
    racing = FollowUpRequest(turn_key="regen-2")
    one, two = await asyncio.gather(
        services.turns.regenerate_turn(user_id, handle.turn_id, racing),
        services.turns.regenerate_turn(user_id, handle.turn_id, racing),
    )
    assert one.turn_id == two.turn_id
    await watch_all(services, user_id, one.turn_id)
    await watch_all(services, user_id, first.turn_id)
    assert len(runner.turn_metadata()) == 3  # the first reply and one regeneration per key
