import asyncio

import pytest

from webui_backend.errors import NotFoundError
from webui_backend.services.turn_events import TurnDelta, TurnFinished, TurnStarted
from webui_backend.services.turn_hub import InProcessTurnHub


async def collect(hub: InProcessTurnHub, turn: str, after: int = 0) -> list[int]:
    seqs: list[int] = []
    async for batch in hub.subscribe(turn, "u1", after_seq=after):
        seqs.extend(e.seq for e in batch)
    return seqs


async def test_subscriber_sees_every_event_in_order_then_ends() -> None:
    hub = InProcessTurnHub()
    await hub.open("t", "u1")
    reader = asyncio.create_task(collect(hub, "t"))
    hub.publish("t", TurnStarted(1, "m", 3))
    for seq in range(2, 50):
        hub.publish("t", TurnDelta(seq, "x"))
        if seq % 7 == 0:
            await asyncio.sleep(0)  # let the reader interleave with the publisher
    hub.publish("t", TurnFinished(50, "complete", "eos"))
    await hub.close("t")
    assert await asyncio.wait_for(reader, 5) == list(range(1, 51))


async def test_late_subscriber_resumes_after_seq_without_gap_or_duplicate() -> None:
    hub = InProcessTurnHub()
    await hub.open("t", "u1")
    for seq in range(1, 11):
        hub.publish("t", TurnDelta(seq, str(seq)))
    reader = asyncio.create_task(collect(hub, "t", after=4))
    hub.publish("t", TurnDelta(11, "11"))
    await hub.close("t")
    assert await asyncio.wait_for(reader, 5) == list(range(5, 12))


async def test_other_users_turn_is_not_found() -> None:
    hub = InProcessTurnHub()
    await hub.open("t", "owner")
    with pytest.raises(NotFoundError):
        async for _ in hub.subscribe("t", "intruder"):
            pass
    with pytest.raises(NotFoundError):
        async for _ in hub.subscribe("missing", "owner"):
            pass


async def test_publish_after_close_is_ignored_and_live_ids_track_open_turns() -> None:
    hub = InProcessTurnHub()
    await hub.open("a", "u1")
    await hub.open("b", "u1")
    await hub.close("a")
    hub.publish("a", TurnDelta(1, "late"))
    assert hub.live_turn_ids() == ["b"]
    assert await collect(hub, "a") == []


async def test_finished_logs_expire_but_a_reopened_turn_stays() -> None:
    hub = InProcessTurnHub(retain_finished_s=0.0)
    await hub.open("old", "u")
    await hub.close("old")
    await hub.open("again", "u")
    await hub.close("again")
    # "again" is continued: a new log under the same id, live, while its old entry expires.
    await hub.open("again", "u", first_seq=5)
    await hub.open("new", "u")
    with pytest.raises(NotFoundError):
        await anext(hub.subscribe("old", "u"))
    assert await hub.live_owner("again") == "u"
    assert set(hub.live_turn_ids()) == {"again", "new"}
