"""The TurnHub contract, run against both implementations (in-process and Redis)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from tests.unit.backend import hub_fixtures
from tests.unit.backend.hub_fixtures import HubFactory
from webui_backend.errors import NotFoundError
from webui_backend.services.turn_events import TurnDelta, TurnEvent, TurnFinished, TurnStarted
from webui_backend.services.turn_hub import ReplayRangeLostError, TurnHub


async def collect(hub: TurnHub, turn: str, after: int = 0, owner: str = "u1") -> list[TurnEvent]:
    events: list[TurnEvent] = []
    async for batch in hub.subscribe(turn, owner, after_seq=after):
        events.extend(batch)
    return events


async def publish_turn(hub: TurnHub, turn: str, n_deltas: int, *, first_seq: int = 1) -> None:
    seq = first_seq
    hub.publish(turn, TurnStarted(seq, "m", 3))
    for _ in range(n_deltas):
        seq += 1
        hub.publish(turn, TurnDelta(seq, f"<{seq}>"))
    hub.publish(turn, TurnFinished(seq + 1, "complete", "eos"))
    await hub.close(turn)


hub_factory = hub_fixtures.hub_factory


def seqs(events: Sequence[TurnEvent]) -> list[int]:
    return [e.seq for e in events]


async def test_live_subscriber_sees_every_event_once_in_order(hub_factory: HubFactory) -> None:
    hub = await hub_factory.make()
    await hub.open("t", "u1")
    reader = asyncio.create_task(collect(hub, "t"))
    await asyncio.sleep(0)
    await publish_turn(hub, "t", 40)
    events = await asyncio.wait_for(reader, 10)
    assert seqs(events) == list(range(1, 43))
    assert type(events[-1]) is TurnFinished


@pytest.mark.parametrize("after", [0, 1, 17, 41, 42])
async def test_resume_after_any_seq_has_no_gap_or_duplicate(
    hub_factory: HubFactory, after: int
) -> None:
    hub = await hub_factory.make()
    await hub.open("t", "u1")
    await publish_turn(hub, "t", 40)
    assert seqs(await asyncio.wait_for(collect(hub, "t", after), 10)) == list(range(after + 1, 43))


async def test_unknown_or_foreign_turn_is_not_found(hub_factory: HubFactory) -> None:
    hub = await hub_factory.make()
    await hub.open("t", "owner")
    with pytest.raises(NotFoundError):
        await collect(hub, "t", owner="intruder")
    with pytest.raises(NotFoundError):
        await collect(hub, "missing", owner="owner")


async def test_trimmed_log_reports_the_lost_range(hub_factory: HubFactory) -> None:
    hub = await hub_factory.make(max_events_per_turn=16)
    await hub.open("t", "u1")
    await publish_turn(hub, "t", 200)
    with pytest.raises(ReplayRangeLostError) as lost:
        await asyncio.wait_for(collect(hub, "t", 0), 10)
    assert lost.value.after_seq == 0
    tail = await asyncio.wait_for(collect(hub, "t", 195), 10)
    assert seqs(tail) == list(range(196, 203))


async def test_stop_request_reaches_the_generating_worker(hub_factory: HubFactory) -> None:
    generating = await hub_factory.make()
    other = await hub_factory.make() if hub_factory.kind == "redis" else generating
    await generating.open("t", "u1")
    stop = generating.stop_signal("t")
    assert await other.live_owner("t") == "u1"
    assert await other.request_stop("t") is True
    await asyncio.wait_for(stop, 5)
    await generating.close("t")
    assert await other.live_owner("t") is None
    assert await other.request_stop("t") is False


async def test_a_continued_turn_numbers_on_and_old_seqs_are_out_of_range(
    hub_factory: HubFactory,
) -> None:
    hub = await hub_factory.make()
    await hub.open("t", "u1")
    await publish_turn(hub, "t", 3)  # seqs 1..5
    await hub.open("t", "u1", first_seq=7)
    reader = asyncio.create_task(collect(hub, "t", 6))
    await publish_turn(hub, "t", 2, first_seq=7)  # seqs 7..10
    assert seqs(await asyncio.wait_for(reader, 10)) == [7, 8, 9, 10]
    with pytest.raises(ReplayRangeLostError):
        await collect(hub, "t", 2)


async def test_live_turn_ids_anywhere(hub_factory: HubFactory) -> None:
    hub = await hub_factory.make()
    await hub.open("a", "u1")
    await hub.open("b", "u1")
    await hub.close("a")
    assert hub.live_turn_ids() == ["b"]
    assert await hub.live_turn_ids_anywhere() == ["b"]


async def test_remote_subscriber_follows_a_turn_on_another_worker(
    hub_factory: HubFactory,
) -> None:
    if hub_factory.kind != "redis":
        pytest.skip("one process has no other worker")
    a = await hub_factory.make()
    b = await hub_factory.make()
    await a.open("t", "u1")
    a.publish("t", TurnStarted(1, "m", 3))
    a.publish("t", TurnDelta(2, "x"))
    reader = asyncio.create_task(collect(b, "t", 1))
    for seq in range(3, 30):
        a.publish("t", TurnDelta(seq, "y"))
    a.publish("t", TurnFinished(30, "complete", "eos"))
    await a.close("t")
    assert seqs(await asyncio.wait_for(reader, 10)) == list(range(2, 31))


async def test_a_cancelled_subscriber_does_not_stall_the_others(hub_factory: HubFactory) -> None:
    # A socket that drops cancels its relay while it waits for the next event; another
    # subscriber waiting on the same turn must keep receiving.
    hub = await hub_factory.make()
    await hub.open("t", "u1")
    hub.publish("t", TurnStarted(1, "m", 3))
    first_seen = asyncio.Event()

    async def dropped() -> None:
        async for _batch in hub.subscribe("t", "u1"):
            first_seen.set()

    gone = asyncio.create_task(dropped())
    await asyncio.wait_for(first_seen.wait(), 10)
    survivor = asyncio.create_task(collect(hub, "t", 1))
    await asyncio.sleep(0.05)  # both now wait for seq 2
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    hub.publish("t", TurnDelta(2, "<2>"))
    hub.publish("t", TurnFinished(3, "complete", "eos"))
    await hub.close("t")
    assert seqs(await asyncio.wait_for(survivor, 10)) == [2, 3]
