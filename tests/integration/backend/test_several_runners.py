"""One backend, two real runner processes: turns keep being served when one runner dies."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from tests.integration.backend.turn_client import ws_events_until_finished
from tests.support.backend_process import running_backend
from tests.support.runner_process import running_runner

_FAST = ("--backend", "fake", "--fake-tokens-per-second", "0", "--fake-reply-tokens", "8")


async def test_a_dead_runner_leaves_rotation_and_turns_go_to_the_other(tmp_path: Path) -> None:
    with (
        running_runner(*_FAST) as first,
        running_runner(*_FAST) as second,
        running_backend(
            runner_address=f"{first.address},{second.address}",
            data_dir=tmp_path / "data",
            env={"WEBUI_RUNNER_HEALTH_INTERVAL_S": "0.2"},
        ) as backend,
    ):
        async with httpx.AsyncClient(
            base_url=backend.base_url, headers=backend.auth_headers, timeout=10
        ) as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["checks"] == {"database": True, "runner": True}

        first.kill()
        async with connect(backend.ws_url, additional_headers=backend.auth_headers) as ws:
            for n in range(4):
                await ws.send(json.dumps({"type": "chat.send", "content": f"turn {n}"}))
                events = await ws_events_until_finished(ws)
                assert events[-1]["status"] == "complete", events[-1]

        second.kill()
        async with httpx.AsyncClient(
            base_url=backend.base_url, headers=backend.auth_headers, timeout=10
        ) as client:
            not_ready = await client.get("/readyz")
            assert not_ready.status_code == 503
            assert not_ready.json()["checks"]["runner"] is False
