"""The four kinds of streaming client the gateway benchmark drives, each timing one stream.

`direct` calls the runner with `GrpcRunnerClient` (the baseline); `ws`, `sse` and `v1` go
through the backend. Every client records when its request left, when each piece of text
arrived, and the completion tokens the stream reported.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from bench.gateway.sse_client import SseClient
from model_runner.client import (
    ChatMessage,
    GenerationOptions,
    GrpcRunnerClient,
    StreamDelta,
    StreamFinished,
)

PROMPT = "Tell me a long story about a fox."


@dataclass(slots=True)
class StreamTiming:
    sent_at: float
    arrivals: list[float] = field(default_factory=list)
    tokens: int = 0
    error: str | None = None

    @property
    def ttft_s(self) -> float | None:
        return self.arrivals[0] - self.sent_at if self.arrivals else None

    def record(self, event: dict[str, Any], now: float) -> bool:
        """Note one turn event (WebSocket or SSE, same shape); True when the turn is over."""
        kind = event["type"]
        if kind == "turn.delta":
            self.arrivals.append(now)
            return False
        if kind == "turn.finished":
            self.tokens = event["usage"]["completion_tokens"] or 0
            if event["status"] != "complete":
                self.error = str(event["error"])
            return True
        if kind == "error":
            self.error = str(event["error"])
            return True
        return False

    def gaps_s(self) -> list[float]:
        a = self.arrivals
        return [a[i] - a[i - 1] for i in range(1, len(a))]


StreamFn = Callable[[], Awaitable[StreamTiming]]


def direct_stream(client: GrpcRunnerClient, tokens: int) -> StreamFn:
    async def run() -> StreamTiming:
        timing = StreamTiming(time.perf_counter())
        arrivals = timing.arrivals
        events = client.chat_stream(
            [ChatMessage("user", PROMPT)], options=GenerationOptions(max_tokens=tokens)
        )
        async for event in events:
            if type(event) is StreamDelta:
                arrivals.append(time.perf_counter())
            elif type(event) is StreamFinished:
                timing.tokens = event.completion_tokens
        return timing

    return run


def ws_stream(ws: ClientConnection, tokens: int) -> StreamFn:
    """One turn on an already open socket (a browser tab keeps its socket)."""
    frame = orjson.dumps(
        {"type": "chat.send", "content": PROMPT, "params": {"max_tokens": tokens}}
    ).decode()

    async def run() -> StreamTiming:
        timing = StreamTiming(time.perf_counter())
        await ws.send(frame)
        while True:
            try:
                raw = await ws.recv()
            except ConnectionClosed as exc:
                timing.error = f"socket closed: {exc}"
                return timing
            now = time.perf_counter()
            if timing.record(orjson.loads(raw), now):
                return timing

    return run


def sse_stream(http: SseClient, tokens: int) -> StreamFn:
    body = orjson.dumps({"content": PROMPT, "params": {"max_tokens": tokens}})

    async def run() -> StreamTiming:
        timing = StreamTiming(time.perf_counter())

        def on_data(data: bytes, now: float) -> None:
            timing.record(orjson.loads(data), now)

        status, error = await http.post("/api/turns", body, on_data)
        if status != 200:
            timing.error = f"HTTP {status}: {error[:200]!r}"
        return timing

    return run


def v1_stream(http: SseClient, tokens: int) -> StreamFn:
    body = orjson.dumps(
        {
            "model": "fake",
            "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )

    async def run() -> StreamTiming:
        timing = StreamTiming(time.perf_counter())
        arrivals = timing.arrivals

        def on_data(data: bytes, now: float) -> None:
            if data == b"[DONE]":
                return
            chunk = orjson.loads(data)
            if "error" in chunk:
                timing.error = str(chunk["error"])
                return
            usage = chunk.get("usage")
            if usage:
                timing.tokens = usage["completion_tokens"]
            choices = chunk["choices"]
            if choices and choices[0]["delta"].get("content"):
                arrivals.append(now)

        status, error = await http.post("/v1/chat/completions", body, on_data)
        if status != 200:
            timing.error = f"HTTP {status}: {error[:200]!r}"
        return timing

    return run
