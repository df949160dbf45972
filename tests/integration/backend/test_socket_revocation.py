"""An open WebSocket loses its account's rights with the account: disabling it (or ending the
session the socket rides on) closes the socket within `WEBUI_WS_RECHECK_INTERVAL_S`, even while
a reply streams to it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.accounts import Account, sign_up, signed_in
from tests.support.backend_process import BackendProcess, running_backend
from tests.support.runner_process import RunnerProcess


@pytest.fixture
def backend(runner: RunnerProcess, tmp_path: Path) -> Iterator[BackendProcess]:
    env = {"WEBUI_WS_RECHECK_INTERVAL_S": "0.2", "WEBUI_CHAT_MESSAGES_PER_MINUTE": "0"}
    with running_backend(
        runner_address=runner.address, data_dir=tmp_path / "data", env=env
    ) as process:
        yield process


async def _read_until_closed(ws: ClientConnection) -> None:
    """Read (deltas keep coming while a reply streams) until the server closes the socket;
    TimeoutError if it does not within 10 s."""
    async with asyncio.timeout(10):
        while True:
            await ws.recv()


async def _approved_user(backend: BackendProcess, admin: Account) -> Account:
    user = await sign_up(backend.base_url)
    async with httpx.AsyncClient(base_url=backend.base_url, headers=admin.headers) as http:
        approved = await http.patch(f"/api/admin/users/{user.user_id}", json={"role": "user"})
        assert approved.status_code == 200, approved.text
    return user


async def test_disabling_an_account_closes_its_open_socket_mid_reply(
    backend: BackendProcess,
) -> None:
    admin = await signed_in(backend)
    user = await _approved_user(backend, admin)
    async with connect(backend.ws_url, additional_headers=user.headers) as ws:
        await ws.send(json.dumps({"type": "chat.send", "content": "/tps 10 /long 400"}))
        first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert first["type"] == "turn.accepted"
        async with httpx.AsyncClient(base_url=backend.base_url, headers=admin.headers) as http:
            disabled = await http.patch(f"/api/admin/users/{user.user_id}", json={"disabled": True})
            assert disabled.status_code == 200, disabled.text
        with pytest.raises(ConnectionClosed) as closed:
            await _read_until_closed(ws)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code in (4401, 4403)


async def test_logging_out_closes_the_socket_of_that_session(backend: BackendProcess) -> None:
    admin = await signed_in(backend)
    host = backend.base_url.split("://", 1)[1]
    browser = {
        "Cookie": f"webui_session={admin.cookies['webui_session']}",
        "Origin": f"http://{host}",
    }
    async with connect(backend.ws_url, additional_headers=browser) as ws:
        await ws.send(json.dumps({"type": "ping", "ref": "p"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "pong"
        async with httpx.AsyncClient(base_url=backend.base_url) as http:
            http.cookies.update(admin.cookies)
            out = await http.post("/api/auth/logout", headers=admin.csrf_headers)
            assert out.status_code == 204, out.text
        with pytest.raises(ConnectionClosed) as closed:
            await _read_until_closed(ws)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401
