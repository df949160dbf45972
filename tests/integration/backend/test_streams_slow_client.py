"""A client that never reads: the backend keeps serving others, its memory stays bounded, and
the stuck socket is closed (4008) once a send has waited `WEBUI_WS_SEND_TIMEOUT_S`."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.backend.streams_support import ReplyAssembly, recv_event, ws_session
from tests.support.accounts import Account, signed_in
from tests.support.backend_process import BackendProcess, running_backend
from tests.support.runner_process import RunnerProcess, running_runner

_SEND_TIMEOUT_S = 3
_BIG_WORD = "x" * 65_536
# Replies of ~0.8 MB in 12 tokens each (the runner takes prompts up to 1M characters); eight
# of them are more than the kernel's socket buffers (tcp_wmem max 4 MB), so the server's sends
# must block. Each is asked for many times: a backend that queued per request would have to
# hold all of it.
_BIG_PROMPT = "/echo " + " ".join([_BIG_WORD] * 12)
_BIG_TURNS = 8
_WATCHES_PER_TURN = 15


@pytest.fixture
def runner() -> Iterator[RunnerProcess]:
    with running_runner("--backend", "fake", "--fake-tokens-per-second", "200") as process:
        yield process


@pytest.fixture
def backend(runner: RunnerProcess, tmp_path: Path) -> Iterator[BackendProcess]:
    env = {
        "WEBUI_WS_SEND_TIMEOUT_S": str(_SEND_TIMEOUT_S),
        "WEBUI_MAX_MESSAGE_CHARS": "1000000",
        "WEBUI_MAX_WS_FRAME_BYTES": "4194304",
        "WEBUI_CHAT_MESSAGES_PER_MINUTE": "0",
    }
    with running_backend(runner_address=runner.address, data_dir=tmp_path / "data", env=env) as b:
        yield b


class _NeverReadingClient:
    """A WebSocket client on a raw socket with a tiny receive buffer that sends frames and
    does not read until asked to."""

    def __init__(self, backend: BackendProcess, account: Account) -> None:
        host, port = backend.service.host, backend.service.port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect((host, port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /api/ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {account.access_token}\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def send(self, frame: dict[str, object]) -> None:
        payload = json.dumps(frame).encode()
        mask = os.urandom(4)
        size = len(payload)
        if size < 126:
            header = struct.pack("!BB", 0x81, 0x80 | size)
        elif size < 65_536:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, size)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, size)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def read_until_closed(self, timeout_s: float) -> tuple[int, int | None]:
        """Drain everything; returns (bytes read, close code if a close frame arrived)."""
        self.sock.settimeout(timeout_s)
        data = bytearray()
        try:
            while chunk := self.sock.recv(1 << 20):
                data += chunk
        except ConnectionResetError:
            pass
        return len(data), _close_code(bytes(data))

    def close(self) -> None:
        self.sock.close()


def _close_code(data: bytes) -> int | None:
    """Walk server frames (unmasked) and return the code of a close frame, if any."""
    at = 0
    while at + 2 <= len(data):
        opcode, size = data[at] & 0x0F, data[at + 1] & 0x7F
        at += 2
        if size == 126:
            (size,) = struct.unpack("!H", data[at : at + 2])
            at += 2
        elif size == 127:
            (size,) = struct.unpack("!Q", data[at : at + 8])
            at += 8
        if opcode == 0x8 and size >= 2 and at + 2 <= len(data):
            code: int = struct.unpack("!H", data[at : at + 2])[0]
            return code
        at += size
    return None


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_a_client_that_never_reads_is_dropped_without_hurting_others(
    backend: BackendProcess,
) -> None:
    account = await signed_in(backend)
    # Finished big replies to watch, produced by a normal client.
    big_turns = []
    async with ws_session(backend, account) as ws:
        for _ in range(_BIG_TURNS):
            await ws.send(json.dumps({"type": "chat.send", "content": _BIG_PROMPT}))
            big_turns.append((await recv_event(ws))["turn_id"])
            await ReplyAssembly().read_until_finished(ws)
    baseline_mb = _rss_mb(backend.service.pid)

    stuck = await asyncio.to_thread(_NeverReadingClient, backend, account)
    try:
        # Each subscribe asks for a whole 0.8 MB reply again; the client reads none of it.
        for i in range(_WATCHES_PER_TURN):
            for turn_id in big_turns:
                stuck.send({"type": "turn.subscribe", "turn_id": turn_id, "ref": f"s{i}"})
        stuck.send({"type": "chat.send", "content": "/long 200"})
        stuck_at = time.monotonic()

        # Meanwhile another client is served normally.
        peak_mb = baseline_mb
        async with ws_session(backend, account) as other:
            await other.send(json.dumps({"type": "chat.send", "content": "/echo still fine"}))
            assert (await recv_event(other))["type"] == "turn.accepted"
            reply = ReplyAssembly()
            await reply.read_until_finished(other, timeout_s=20)
            assert (reply.text, reply.finished and reply.finished["status"]) == (
                "still fine",
                "complete",
            )
        async with httpx.AsyncClient(base_url=backend.base_url, timeout=10) as http:
            assert (await http.get("/readyz")).status_code == 200

        # The backend gives up on the stuck socket after the send timeout (deadline polled).
        closing = "closing a WebSocket whose client stopped reading"
        async with asyncio.timeout(_SEND_TIMEOUT_S + 30):
            while not any(closing in line for line in backend.service.output):
                peak_mb = max(peak_mb, _rss_mb(backend.service.pid))
                await asyncio.sleep(0.1)
        gave_up_after = time.monotonic() - stuck_at
        read, code = await asyncio.to_thread(stuck.read_until_closed, 30)
    finally:
        stuck.close()

    print(
        f"\nslow client: dropped after {gave_up_after:.1f} s; backend RSS {baseline_mb:.0f} MB "
        f"-> peak {peak_mb:.0f} MB while {_WATCHES_PER_TURN * _BIG_TURNS} x 0.8 MB were "
        "asked for; "
        f"{read} bytes reached the client; close code {code}"
    )
    # Queuing every request would hold ~95 MB here; a frame per watch is less.
    assert peak_mb - baseline_mb < 64
    assert read < 40 * 1024 * 1024
    assert code in (4008, None)  # the close frame is sent if the socket buffer has room
