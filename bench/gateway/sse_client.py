"""A lean HTTP/1.1 client for Server-Sent Events, so that the benchmark's own client is not what
it measures.

With httpx, the client that read 512 SSE streams of 50 tokens/s used 85-93 % of a core on a
2-core machine that also ran the backend and the runner (a WebSocket client of the same streams
30 %): the inter-token gaps and tokens/s it reported were partly its own lag. Here each
connection is an `asyncio.Protocol` whose bytes go to httptools' response parser (llhttp, in C,
the parser uvicorn itself uses); the parser undoes the chunked encoding and the protocol splits
the body into SSE events, handing each `data:` payload with its arrival time to the stream's
callback. No task and no await per event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httptools

# Called with one event's `data:` payload and the time its bytes arrived.
OnData = Callable[[bytes, float], None]


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._on_data: OnData | None = None
        self._done: asyncio.Future[int] | None = None
        self._pending = b""
        self._now = 0.0
        self.closed = False
        self.error_body = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._done is not None and not self._done.done():
            self._done.set_exception(ConnectionError(f"connection lost mid-response: {exc}"))

    def request(self, head: bytes, body: bytes, on_data: OnData) -> asyncio.Future[int]:
        """Sends one request; the future gives the status once the response has ended."""
        assert self.transport is not None
        self._parser = httptools.HttpResponseParser(self)
        self._on_data = on_data
        self._pending = b""
        self.error_body = b""
        self._done = asyncio.get_running_loop().create_future()
        self.transport.write(head + body)
        return self._done

    def data_received(self, data: bytes) -> None:
        self._now = time.perf_counter()
        assert self._parser is not None
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self._done is not None and not self._done.done():
                self._done.set_exception(exc)

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        assert self._parser is not None
        if self._parser.get_status_code() != 200:
            self.error_body += body
            return
        events = (self._pending + body).split(b"\n\n")
        self._pending = events.pop()
        on_data = self._on_data
        assert on_data is not None
        now = self._now
        for event in events:
            for line in event.split(b"\n"):
                if line.startswith(b"data: "):
                    on_data(line[6:], now)

    def on_message_complete(self) -> None:
        assert self._parser is not None
        if self._done is not None and not self._done.done():
            self._done.set_result(self._parser.get_status_code())
        if not self._parser.should_keep_alive():
            self.closed = True


class SseClient:
    """POSTs JSON and reads the SSE reply over a pool of keep-alive connections."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self._host = host
        self._port = port
        lines = [f"{name}: {value}" for name, value in headers.items()]
        self._headers = "".join(f"{line}\r\n" for line in lines)
        self._idle: list[_Connection] = []

    async def open(self, n: int) -> None:
        """Replaces the idle connections with `n` fresh ones, so that TTFT does not include TCP
        set-up and no request meets a connection the server is closing (its keep-alive
        timeout runs out while other paths are measured)."""
        await self.aclose()
        self._idle = list(await asyncio.gather(*(self._connect() for _ in range(n))))

    async def post(self, path: str, body: bytes, on_data: OnData) -> tuple[int, bytes]:
        """Sends `body` and feeds every SSE `data:` payload to `on_data` as it arrives; returns
        the status and, for a status other than 200, the response body."""
        connection = None
        while self._idle and connection is None:
            connection = self._idle.pop()
            if connection.closed:
                connection = None
        if connection is None:
            connection = await self._connect()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n{self._headers}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        try:
            status = await connection.request(head, body, on_data)
        except BaseException:
            if connection.transport is not None:
                connection.transport.close()
            raise
        if not connection.closed:
            self._idle.append(connection)
        return status, connection.error_body

    async def aclose(self) -> None:
        for connection in self._idle:
            if connection.transport is not None:
                connection.transport.close()
        self._idle.clear()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(_Connection, self._host, self._port)
        return protocol
