"""`X-Request-ID`: kept when valid, replaced otherwise, returned, and bound for the request."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from model_runner.telemetry.request_id import current_request_id, valid_request_id
from webui_backend.observability.request_id import RequestIdMiddleware


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse({"bound": current_request_id()})


async def _socket(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"bound": current_request_id()})
    await websocket.close()


def _app() -> Starlette:
    app = Starlette(routes=[Route("/echo", _echo), WebSocketRoute("/ws", _socket)])
    app.add_middleware(RequestIdMiddleware)
    return app


async def _get(headers: dict[str, str]) -> httpx.Response:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get("/echo", headers=headers)


async def test_a_valid_id_is_echoed_and_bound() -> None:
    response = await _get({"X-Request-ID": "client-req-7"})
    assert response.headers["x-request-id"] == "client-req-7"
    assert response.json() == {"bound": "client-req-7"}
    assert current_request_id() is None  # unbound after the request


@pytest.mark.parametrize("sent", ["has spaces", "x" * 65, "<script>", ""])
async def test_an_invalid_id_is_replaced(sent: str) -> None:
    response = await _get({"X-Request-ID": sent})
    returned = response.headers["x-request-id"]
    assert returned != sent
    assert valid_request_id(returned) == returned
    assert response.json() == {"bound": returned}


async def test_a_request_without_an_id_gets_a_fresh_one() -> None:
    first = (await _get({})).headers["x-request-id"]
    second = (await _get({})).headers["x-request-id"]
    assert valid_request_id(first) == first
    assert first != second


def test_a_websocket_gets_its_id_in_the_handshake_and_keeps_it_bound() -> None:
    with (
        TestClient(_app()) as client,
        client.websocket_connect("/ws", headers={"X-Request-ID": "socket-1"}) as ws,
    ):
        assert ws.receive_json() == {"bound": "socket-1"}
        # starlette's test client exposes the accept message's headers
        assert ws.extra_headers is not None
        assert (b"x-request-id", b"socket-1") in [tuple(h) for h in ws.extra_headers]
