"""A backend whose runner address is a `dns:///` name: gRPC resolves it and its round_robin
channel serves the turns (docs/operations.md, "Runners behind one DNS name")."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from tests.integration.backend.turn_client import ws_events_until_finished
from tests.support.backend_process import running_backend
from tests.support.runner_process import running_runner

_FAST = ("--backend", "fake", "--fake-tokens-per-second", "0", "--fake-reply-tokens", "8")


async def test_turns_go_through_a_dns_name(tmp_path: Path) -> None:
    resolved = {info[4][0] for info in socket.getaddrinfo("localhost", None)}
    # The runner listens on 127.0.0.1 only; a ::1 that localhost may also resolve to refuses,
    # and round_robin keeps to the address that answers.
    assert "127.0.0.1" in resolved, resolved
    with running_runner(*_FAST) as runner:
        port = runner.address.rsplit(":", 1)[1]
        with running_backend(
            runner_address=f"dns:///localhost:{port}", data_dir=tmp_path / "data"
        ) as backend:
            async with httpx.AsyncClient(
                base_url=backend.base_url, headers=backend.auth_headers, timeout=10
            ) as client:
                ready = await client.get("/readyz")
                assert ready.status_code == 200, ready.text
                assert ready.json()["checks"]["runner"] is True
                models = (await client.get("/api/models")).json()
                assert models, models
            async with connect(backend.ws_url, additional_headers=backend.auth_headers) as ws:
                for n in range(3):
                    await ws.send(json.dumps({"type": "chat.send", "content": f"turn {n}"}))
                    events = await ws_events_until_finished(ws)
                    assert events[-1]["type"] == "turn.finished", events[-1]
                    assert events[-1]["status"] == "complete", events[-1]
