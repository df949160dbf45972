"""The chat WebSocket: frames in, turn events out. Protocol: docs/websocket.md.

The socket only starts and watches turns; generation belongs to the server, so a socket that
closes mid-reply stops nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import orjson
from fastapi import APIRouter, WebSocket
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect

from webui_backend.api.error_handlers import validation_details
from webui_backend.api.turn_encoding import accepted_event, coalesce, dumps, error_event
from webui_backend.api.turn_input import followup_request, turn_request
from webui_backend.container import AppServices
from webui_backend.deps import (
    WS_CLOSE_FORBIDDEN,
    WS_CLOSE_UNAUTHORIZED,
    AuthenticatedUser,
    CurrentUser,
    ServicesDep,
    recheck_socket_user,
)
from webui_backend.errors import AppError, InvalidInputError
from webui_backend.observability.tracing import frame_span
from webui_backend.schemas.turns import (
    ChatSendFrame,
    ClientFrame,
    ClientFrameEnvelope,
    PingFrame,
    TurnContinueFrame,
    TurnRegenerateFrame,
    TurnStopFrame,
    TurnSubscribeFrame,
)
from webui_backend.services.turn_handle import TurnHandle

log = logging.getLogger(__name__)
router = APIRouter()

# Close codes (RFC 6455 and the 4000-4999 private range).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL_ERROR = 1011


# A client that stopped reading: its connection is dropped (see `ws_send_timeout_s`).
CLOSE_TOO_SLOW = 4008
# Turns one socket may watch at once. Each watch holds at most one serialized frame while the
# socket is busy, so this bounds a connection's memory.
MAX_WATCHES_PER_SOCKET = 64


@router.websocket("/api/ws")
async def chat_socket(websocket: WebSocket, services: ServicesDep, user: CurrentUser) -> None:
    await websocket.accept()
    connection = _Connection(websocket, services, user)
    try:
        await connection.serve()
    finally:
        await connection.close()


class _Connection:
    """One socket: a reader of client frames and a relay task per watched turn.

    Relays and replies write their frames themselves, one at a time (`_send`). When the client
    reads slowly a relay waits on its send, stops pulling from the hub, and the hub's cursor
    hands it everything it missed as one batch (one merged delta) later. A client that does
    not read at all is disconnected after `ws_send_timeout_s`, releasing its memory; the
    generation and other clients never wait for it.
    """

    def __init__(self, ws: WebSocket, services: AppServices, user: AuthenticatedUser) -> None:
        self._ws = ws
        self._services = services
        self._user = user
        # Senders take turns on the socket: a frame waits for the lock, not in a queue, so a
        # relayed token costs no hop through a writer task (a relay waiting here holds one
        # frame and pulls nothing more from the hub, which merges what it misses).
        self._send_lock = asyncio.Lock()
        # Set once the socket cannot be written (the client is gone or stopped reading).
        self._unwritable = asyncio.Event()
        # While a send is in progress: when it began and which task is sending. A watchdog
        # reads them instead of a timer around every send (a timer per relayed token cost
        # about a tenth of the event loop's time at 32 streams).
        self._send_started: float | None = None
        self._sender: asyncio.Task[object] | None = None
        # One relay per watched turn: subscribing again to a turn replaces its relay.
        self._watchers: dict[str, asyncio.Task[None]] = {}

    async def serve(self) -> None:
        tasks = (
            asyncio.create_task(self._read()),
            asyncio.create_task(self._unwritable.wait()),
            asyncio.create_task(self._watch_sends()),
            asyncio.create_task(self._recheck()),
        )
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _read(self) -> None:
        while True:
            try:
                raw = await self._ws.receive_text()
            except (WebSocketDisconnect, RuntimeError):
                return
            except KeyError:
                # A binary frame: starlette's receive_text looks for "text" and finds "bytes".
                await self._send(error_event("invalid_frame", "Send JSON text frames.", None))
                continue
            await self._handle(raw)

    async def _watch_sends(self) -> None:
        """Ends the connection once a send has waited `ws_send_timeout_s`: the client stopped
        reading. Checked four times per timeout, so the cut comes within a quarter of it after
        the deadline, and an idle socket wakes every 7.5 s by default."""
        timeout = self._services.settings.ws_send_timeout_s
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(timeout / 4)
            started = self._send_started
            if started is not None and loop.time() - started > timeout:
                break
        log.info("closing a WebSocket whose client stopped reading")
        # Returning ends the connection (serve() waits for the first task to end).
        if self._sender is not None:
            self._sender.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._ws.close(CLOSE_TOO_SLOW), 1.0)

    async def _recheck(self) -> None:
        """Close the socket once its account may no longer use it (disabled, logged out,
        password changed, set back to pending), relays included; ends only then."""
        interval = self._services.settings.ws_recheck_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                await recheck_socket_user(self._ws, self._services)
            except AppError as exc:
                code = WS_CLOSE_UNAUTHORIZED if exc.status_code == 401 else WS_CLOSE_FORBIDDEN
                log.info("closing a WebSocket whose account may no longer use it: %s", exc.code)
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1.0):
                        await self._ws.close(code, f"{exc.code}: {exc.message}"[:120])
                return
            except Exception:
                # The database may be briefly unreachable: that ends no socket; next time.
                log.warning("could not re-check a WebSocket's account", exc_info=True)

    async def _handle(self, raw: str) -> None:
        try:
            frame = ClientFrameEnvelope.model_validate_json(raw).root
        except ValidationError as exc:
            details = validation_details(exc.errors(include_url=False))
            await self._send(
                error_event(
                    "invalid_frame",
                    "The frame is not valid: "
                    + "; ".join(f"{d['field']}: {d['reason']}" for d in details[:5]),
                    _ref_of(raw),
                    details=details,
                )
            )
            return
        if isinstance(frame, PingFrame):  # keep-alives get no span
            await self._dispatch(frame)
            return
        # A span per frame (a no-op when tracing is off); a turn the frame starts is its child.
        with frame_span(self._services.tracer, frame.type, _frame_attributes(frame)):
            await self._dispatch(frame)

    async def _dispatch(self, frame: ClientFrame) -> None:
        turns = self._services.turns
        user_id = self._user.id
        try:
            if isinstance(frame, ChatSendFrame):
                handle = await turns.start_turn(user_id, turn_request(frame, frame.chat_id))
                await self._accepted(handle, frame.ref, frame.after_seq if handle.existing else 0)
            elif isinstance(frame, TurnSubscribeFrame):
                self._watch(frame.turn_id, frame.after_seq)
            elif isinstance(frame, TurnStopFrame):
                stopped = await turns.stop_turn(user_id, frame.turn_id)
                await self._send(
                    {
                        "type": "turn.stop",
                        "ref": frame.ref,
                        "turn_id": frame.turn_id,
                        "stopped": stopped,
                    }
                )
            elif isinstance(frame, TurnContinueFrame):
                handle = await turns.continue_turn(user_id, frame.turn_id, followup_request(frame))
                await self._accepted(handle, frame.ref, 0)
            elif isinstance(frame, TurnRegenerateFrame):
                handle = await turns.regenerate_turn(
                    user_id, frame.turn_id, followup_request(frame)
                )
                await self._accepted(handle, frame.ref, 0)
            else:
                await self._send({"type": "pong", "ref": frame.ref})
        except AppError as exc:
            await self._send(error_event(exc.code, exc.message, frame.ref))
        except Exception:
            # E.g. the database refused a write under load: this frame fails, the socket and
            # the turns it watches go on.
            log.exception("WebSocket frame %s failed", type(frame).__name__)
            await self._send(
                error_event("internal_error", "The server failed to handle this frame.", frame.ref)
            )

    async def _accepted(self, handle: TurnHandle, ref: str | None, after_seq: int) -> None:
        await self._send(accepted_event(handle, ref))
        self._watch(handle.turn_id, max(after_seq, handle.resume_after))

    def _watch(self, turn_id: str, after_seq: int) -> None:
        """Relay `turn_id` after `after_seq`. Raises InvalidInputError (too_many_watches)."""
        previous = self._watchers.pop(turn_id, None)
        if previous is not None:
            previous.cancel()
        elif len(self._watchers) >= MAX_WATCHES_PER_SOCKET:
            raise InvalidInputError(
                f"This connection already watches {MAX_WATCHES_PER_SOCKET} replies.",
                code="too_many_watches",
            )
        task = asyncio.create_task(self._relay(turn_id, after_seq))
        self._watchers[turn_id] = task
        task.add_done_callback(lambda done: self._forget(turn_id, done))

    def _forget(self, turn_id: str, task: asyncio.Task[None]) -> None:
        if self._watchers.get(turn_id) is task:
            del self._watchers[turn_id]

    async def _relay(self, turn_id: str, after_seq: int) -> None:
        watch = self._services.watcher.watch
        try:
            async for batch in watch(self._user.id, turn_id, after_seq=after_seq):
                for _seq, event in coalesce(turn_id, batch):
                    await self._send(event)
        except AppError as exc:
            await self._send(error_event(exc.code, exc.message, None, turn_id=turn_id))

    async def _send(self, event: dict[str, object]) -> None:
        """Writes one frame; ends the connection when the client cannot keep up."""
        text = dumps(event)
        async with self._send_lock:
            if self._unwritable.is_set():
                return
            self._send_started = asyncio.get_running_loop().time()
            self._sender = asyncio.current_task()
            try:
                await self._ws.send_text(text)
            except (WebSocketDisconnect, RuntimeError, OSError):
                self._unwritable.set()
            finally:
                self._send_started = self._sender = None

    async def close(self) -> None:
        watchers = list(self._watchers.values())
        for task in watchers:
            task.cancel()
        for task in watchers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _frame_attributes(frame: ClientFrame) -> dict[str, str]:
    if isinstance(frame, ChatSendFrame):
        return {"chat.id": frame.chat_id} if frame.chat_id else {}
    turn_id = getattr(frame, "turn_id", None)
    return {"chat.turn.id": turn_id} if isinstance(turn_id, str) else {}


def _ref_of(raw: str) -> str | None:
    """Best effort: the `ref` of a frame that failed validation, so the client can match it."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    ref = value.get("ref") if isinstance(value, dict) else None
    return ref if isinstance(ref, str) and len(ref) <= 128 else None
