"""A WebSocket client that speaks ASGI to the app directly, in the same event loop.

No socket, no thread: what the benchmark measures is the app's own work per frame.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.types import ASGIApp, Message


class AsgiSocket:
    def __init__(self, app: ASGIApp, path: str, headers: Mapping[str, str]) -> None:
        self._app = app
        self._scope: dict[str, Any] = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "scheme": "ws",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "server": ("bench", 80),
            "client": ("127.0.0.1", 1),
            "subprotocols": [],
        }
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._outbox: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Future[None] | None = None

    async def __aenter__(self) -> AsgiSocket:
        self._task = asyncio.ensure_future(
            self._app(self._scope, self._inbox.get, self._outbox.put)
        )
        await self._inbox.put({"type": "websocket.connect"})
        accepted = await self._outbox.get()
        if accepted["type"] != "websocket.accept":
            raise RuntimeError(f"the socket was refused: {accepted}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._inbox.put({"type": "websocket.disconnect", "code": 1000})
        if self._task is not None:
            await self._task

    async def send(self, frame: dict[str, Any]) -> None:
        await self._inbox.put({"type": "websocket.receive", "text": orjson.dumps(frame).decode()})

    async def receive(self) -> dict[str, Any]:
        message = await self._outbox.get()
        if message["type"] != "websocket.send":
            raise RuntimeError(f"the socket closed: {message}")
        event: dict[str, Any] = orjson.loads(message["text"])
        return event
