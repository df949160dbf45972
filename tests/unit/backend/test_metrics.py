"""The backend's /metrics reports HTTP requests and finished turns."""

from __future__ import annotations

import asyncio

import httpx

from tests.support.fake_runner_client import FakeRunnerClient
from tests.unit.backend.conftest import account
from webui_backend.main import create_app
from webui_backend.services.new_turn import TurnRequest
from webui_backend.settings import Settings


def _value(body: str, name: str) -> float:
    for line in body.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_metrics_count_requests_and_turns(settings: Settings) -> None:
    app = create_app(settings, runner=FakeRunnerClient())
    async with app.router.lifespan_context(app):
        services = app.state.services
        user = await account(services)
        handle = await services.turns.start_turn(user, TurnRequest(content="count me"))
        async with asyncio.timeout(5):
            async for _ in services.hub.subscribe(handle.turn_id, user):
                pass
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get("/healthz")).status_code == 200
            body = (await client.get("/metrics")).text
    assert _value(body, 'webui_turns_total{status="complete"}') == 1
    assert _value(body, "webui_tokens_relayed_total") == 2  # the fake's "Hello", " there"
    assert _value(body, "webui_active_streams") == 0
    assert _value(body, "webui_time_to_first_token_seconds_count") == 1
    healthz = 'webui_http_requests_total{method="GET",route="/healthz",status="200"}'
    assert _value(body, healthz) == 1
