"""Routing turns across several runners: model, load, retries before streaming, health."""

from __future__ import annotations

import pytest

from model_runner.client import (
    ChatMessage,
    RunnerBusyError,
    RunnerEvent,
    RunnerLoad,
    RunnerUnavailableError,
    StreamDelta,
)
from tests.support.fake_runner_client import FakeRunnerClient, reply_script
from webui_backend.services.runner_pool import RunnerPool

HELLO = [ChatMessage("user", "hi")]


def pool_of(**runners: FakeRunnerClient) -> RunnerPool:
    return RunnerPool(list(runners), lambda address: runners[address], health_interval_s=3600)


async def texts(pool: RunnerPool, model: str = "", request_id: str = "", push: bool = False) -> str:
    """The reply's text through `chat_stream`, or through `chat_into` with `push`."""
    if push:
        events: list[RunnerEvent] = []
        await pool.chat_into(HELLO, on_event=events.append, model=model, request_id=request_id)
    else:
        events = [e async for e in pool.chat_stream(HELLO, model=model, request_id=request_id)]
    return "".join(e.text for e in events if isinstance(e, StreamDelta))


both_apis = pytest.mark.parametrize("push", [False, True], ids=["chat_stream", "chat_into"])


@both_apis
async def test_routes_to_the_runner_that_offers_the_model(push: bool) -> None:
    a = FakeRunnerClient(models=["small"])
    b = FakeRunnerClient(models=["big"])
    pool = pool_of(a=a, b=b)
    await pool.refresh()
    for _ in range(3):
        await texts(pool, model="big", push=push)
    assert (len(a.calls), len(b.calls)) == (0, 3)
    assert {m.id for m in await pool.list_models()} == {"small", "big"}


@both_apis
async def test_prefers_the_least_loaded_runner(push: bool) -> None:
    busy = FakeRunnerClient(load=RunnerLoad(8, 4, 8, 16, False))
    idle = FakeRunnerClient(load=RunnerLoad(1, 0, 8, 16, False))
    pool = pool_of(busy=busy, idle=idle)
    await pool.refresh()
    for _ in range(4):
        await texts(pool, push=push)
    assert (len(busy.calls), len(idle.calls)) == (0, 4)


@both_apis
async def test_a_refusal_before_streaming_moves_the_turn_to_another_runner(push: bool) -> None:
    full = FakeRunnerClient(scripts=[[RunnerBusyError("queue full", retry_after_ms=500)]])
    other = FakeRunnerClient(scripts=[reply_script("from", " other")])
    pool = pool_of(full=full, other=other)
    # Make the full runner look idle so it is tried first.
    other.load = RunnerLoad(4, 0, 8, 16, False)
    await pool.refresh()
    assert await texts(pool, push=push) == "from other"
    assert (len(full.calls), len(other.calls)) == (1, 1)


@both_apis
async def test_an_unreachable_runner_leaves_rotation_until_it_passes_a_check(push: bool) -> None:
    dead = FakeRunnerClient(reachable=False)
    live = FakeRunnerClient(load=RunnerLoad(5, 0, 8, 16, False))
    pool = pool_of(dead=dead, live=live)
    await pool.refresh()
    assert [e.healthy for e in pool.endpoints] == [False, True]
    for _ in range(3):
        await texts(pool, push=push)
    assert (len(dead.calls), len(live.calls)) == (0, 3)

    dead.reachable = True
    await pool.refresh()
    assert all(e.healthy for e in pool.endpoints)
    await texts(pool, push=push)
    assert len(dead.calls) == 1  # idle again, so it is preferred


@both_apis
async def test_no_retry_once_the_stream_has_started(push: bool) -> None:
    broken = FakeRunnerClient(scripts=[[*reply_script("par")[:2], RunnerUnavailableError("gone")]])
    spare = FakeRunnerClient(load=RunnerLoad(7, 0, 8, 16, False))
    pool = pool_of(broken=broken, spare=spare)
    await pool.refresh()
    with pytest.raises(RunnerUnavailableError):
        await texts(pool, push=push)
    assert len(spare.calls) == 0
    assert pool.endpoints[0].healthy is False


@both_apis
async def test_all_runners_refusing_raises_the_last_error(push: bool) -> None:
    a = FakeRunnerClient(reachable=False)
    b = FakeRunnerClient(reachable=False)
    pool = pool_of(a=a, b=b)
    await pool.refresh()
    with pytest.raises(RunnerUnavailableError):
        await texts(pool, push=push)
    assert not await pool.check_health()


async def test_abort_reaches_the_runner_that_owns_the_request() -> None:
    gate_script = reply_script("x")
    a = FakeRunnerClient(scripts=[gate_script])
    b = FakeRunnerClient(load=RunnerLoad(7, 0, 8, 16, False))
    pool = pool_of(a=a, b=b)
    await pool.refresh()
    stream = pool.chat_stream(HELLO, request_id="turn-1")
    await anext(aiter(stream))
    await pool.abort("turn-1")
    assert (a.aborted, b.aborted) == (["turn-1"], [])
    await stream.aclose()  # type: ignore[attr-defined]
    await pool.abort("turn-1")  # finished: broadcast, harmless
    assert b.aborted == ["turn-1"]


async def test_set_addresses_keeps_known_runners_and_closes_removed_ones() -> None:
    runners = {"a": FakeRunnerClient(), "b": FakeRunnerClient(), "c": FakeRunnerClient()}
    pool = RunnerPool(["a", "b"], lambda address: runners[address], health_interval_s=3600)
    await pool.set_addresses(["b", "c"])
    assert [e.address for e in pool.endpoints] == ["b", "c"]
    assert runners["a"].closed
    assert not runners["b"].closed
