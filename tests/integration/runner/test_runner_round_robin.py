"""A target that resolves to several runners is one channel whose calls round_robin spreads
over every address (model_runner/client.py); a plain host:port stays on its one runner."""

from __future__ import annotations

import asyncio
import contextlib

from model_runner.client import ChatMessage, GrpcRunnerClient, StreamFinished
from model_runner.client_channels import spreads_calls
from tests.support.runner_process import running_runner

_FAST = ("--fake-tokens-per-second", "0")


async def _reply_tokens(client: GrpcRunnerClient) -> int:
    async with contextlib.aclosing(client.chat_stream([ChatMessage("user", "Hi")])) as events:
        async for event in events:
            if isinstance(event, StreamFinished):
                return event.completion_tokens
    raise AssertionError("the stream ended without StreamFinished")


def test_which_targets_spread_their_calls() -> None:
    assert spreads_calls("dns:///runners.internal:50051")
    assert spreads_calls("ipv4:10.0.0.1:50051,10.0.0.2:50051")
    assert not spreads_calls("runners.internal:50051")
    assert not spreads_calls("127.0.0.1:50051")


async def test_calls_go_to_every_address_of_the_target() -> None:
    # The two runners answer with replies of different lengths: the length tells them apart.
    with (
        running_runner(*_FAST, "--fake-reply-tokens", "3") as three,
        running_runner(*_FAST, "--fake-reply-tokens", "5") as five,
    ):
        spread = GrpcRunnerClient(f"ipv4:{three.address},{five.address}", default_timeout_s=30)
        single = GrpcRunnerClient(three.address, default_timeout_s=30)
        try:
            seen: set[int] = set()
            async with asyncio.timeout(20):
                # round_robin connects to every address; calls go to the ready ones in turn,
                # so both answer within a few calls once both connections are up.
                while seen != {3, 5}:
                    seen.add(await _reply_tokens(spread))
            assert {await _reply_tokens(single) for _ in range(6)} == {3}
        finally:
            await spread.close()
            await single.close()
