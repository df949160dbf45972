"""The gateway benchmark's SSE client against a server that splits events across chunks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from bench.gateway.sse_client import SseClient

_EVENTS = [b'{"n": 1}', b'{"n": 2}', b"[DONE]"]


def _chunked(pieces: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.startswith(b"Content-Length")
        )
        body = await reader.readexactly(length)
        if b"Bearer good" not in head:
            message = b'{"error": "unauthorized"}'
            writer.write(
                b"HTTP/1.1 401 Unauthorized\r\nContent-Length: %d\r\n\r\n%s"
                % (len(message), message)
            )
            continue
        stream = b"".join(b"id: %d\ndata: %s\n\n" % (i, e) for i, e in enumerate(_EVENTS))
        stream = b": a comment\n\n" + stream
        # Chunk boundaries fall inside events and inside the "data: " prefix.
        pieces = [stream[i : i + 7] for i in range(0, len(stream), 7)]
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n")
        writer.write(b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(pieces))
        assert body == b'{"hello": "world"}'


def _collect(seen: list[bytes]) -> Callable[[bytes, float], None]:
    return lambda data, _: seen.append(data)


@pytest.fixture
async def port() -> AsyncIterator[int]:
    server = await asyncio.start_server(_serve, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def test_events_split_across_chunks_arrive_whole_and_in_order(port: int) -> None:
    client = SseClient("127.0.0.1", port, {"Authorization": "Bearer good"})
    await client.open(1)
    try:
        for _ in range(2):  # the same keep-alive connection serves a second request
            seen: list[bytes] = []
            status, _ = await client.post("/x", b'{"hello": "world"}', _collect(seen))
            assert status == 200
            assert seen == _EVENTS
    finally:
        await client.aclose()


async def test_an_error_status_returns_its_body(port: int) -> None:
    client = SseClient("127.0.0.1", port, {"Authorization": "Bearer bad"})
    try:
        seen: list[bytes] = []
        status, body = await client.post("/x", b'{"hello": "world"}', _collect(seen))
    finally:
        await client.aclose()
    assert (status, body, seen) == (401, b'{"error": "unauthorized"}', [])
