"""Small helpers to drive a turn over a real WebSocket or SSE connection."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection


async def ws_events_until_finished(
    ws: ClientConnection, timeout_s: float = 30
) -> list[dict[str, Any]]:
    """Receive events until a `turn.finished` (or an `error`) arrives."""
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout_s):
        while True:
            event = json.loads(await ws.recv())
            events.append(event)
            if event["type"] in ("turn.finished", "error"):
                return events


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str | None, dict[str, Any]]]:
    """Parse a text/event-stream body into (id, data) pairs."""
    event_id: str | None = None
    data: list[str] = []
    async for line in response.aiter_lines():
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and data:
            yield event_id, json.loads("\n".join(data))
            event_id, data = None, []


def reply_text(events: list[dict[str, Any]]) -> str:
    return "".join(e["text"] for e in events if e["type"] == "turn.delta")
