"""Chat turns over Server-Sent Events: the same turn and events as the WebSocket."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from webui_backend.api.turn_encoding import accepted_event, coalesce, sse_frame
from webui_backend.api.turn_input import followup_request, turn_request
from webui_backend.container import AppServices
from webui_backend.deps import CurrentUser, ServicesDep
from webui_backend.schemas.events import ErrorResponse, TurnStopResult
from webui_backend.schemas.turns import FollowUpBody, TurnBody
from webui_backend.services.turn_events import WatchEvent
from webui_backend.services.turn_handle import TurnHandle

router = APIRouter(prefix="/api", tags=["turns"])

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_ERROR_MODEL: dict[str, object] = {"model": ErrorResponse}
_ERRORS: dict[int | str, dict[str, object]] = {
    code: _ERROR_MODEL for code in (400, 404, 409, 413, 422, 503)
}


class ChatTurnBody(TurnBody):
    chat_id: str | None = None


def _after(after_seq: int, last_event_id: str | None) -> int:
    if last_event_id is not None and last_event_id.strip().isdigit():
        return max(after_seq, int(last_event_id.strip()))
    return after_seq


@router.post(
    "/turns",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **_ERRORS},
    summary="Send a message and stream the reply as Server-Sent Events",
)
async def stream_turn(
    body: ChatTurnBody,
    services: ServicesDep,
    user: CurrentUser,
    last_event_id: str | None = Header(default=None),
) -> StreamingResponse:
    """Stores the user message, then streams `turn.accepted`, `turn.started`, `turn.delta`...
    and one `turn.finished`. Each event after `turn.accepted` has an `id:` (its seq) usable as
    `Last-Event-ID` with `GET /api/turns/{turn_id}/events`. Disconnecting does not stop the
    reply. Repeating a `turn_key` returns the first send's turn (`existing: true`), streamed
    after `Last-Event-ID`."""
    handle = await services.turns.start_turn(user.id, turn_request(body, body.chat_id))
    after = _after(0, last_event_id) if handle.existing else 0
    return await _stream(services, user.id, handle, after)


@router.post(
    "/turns/{turn_id}/continue",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **_ERRORS, 409: _ERROR_MODEL},
    summary="Generate more text into an interrupted, cancelled or cut-off reply (SSE)",
)
async def continue_turn(
    turn_id: str, body: FollowUpBody, services: ServicesDep, user: CurrentUser
) -> StreamingResponse:
    """The new text is appended to the same assistant message; events continue its seq."""
    handle = await services.turns.continue_turn(user.id, turn_id, followup_request(body))
    return await _stream(services, user.id, handle, 0)


@router.post(
    "/turns/{turn_id}/regenerate",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **_ERRORS},
    summary="Generate a new reply as a sibling of this one, under the same user message (SSE)",
)
async def regenerate_turn(
    turn_id: str,
    body: FollowUpBody,
    services: ServicesDep,
    user: CurrentUser,
    last_event_id: str | None = Header(default=None),
) -> StreamingResponse:
    handle = await services.turns.regenerate_turn(user.id, turn_id, followup_request(body))
    after = _after(0, last_event_id) if handle.existing else 0
    return await _stream(services, user.id, handle, after)


@router.post(
    "/turns/{turn_id}/stop",
    response_model=TurnStopResult,
    responses={404: _ERROR_MODEL},
    summary="Stop a reply being generated, on whichever worker runs it",
)
async def stop_turn(turn_id: str, services: ServicesDep, user: CurrentUser) -> TurnStopResult:
    """Cancels the runner call; the partial reply is stored as `cancelled` and watchers get
    `turn.finished`. `stopped` is false when the reply had already ended."""
    stopped = await services.turns.stop_turn(user.id, turn_id)
    return TurnStopResult(turn_id=turn_id, stopped=stopped)


@router.get(
    "/turns/{turn_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, 404: _ERROR_MODEL},
    summary="Watch a reply, resuming after a sequence number (live, finished or evicted)",
)
async def watch_turn(
    turn_id: str,
    services: ServicesDep,
    user: CurrentUser,
    after_seq: int = Query(default=0, ge=0),
    last_event_id: str | None = Header(default=None),
) -> StreamingResponse:
    events = services.watcher.watch(user.id, turn_id, after_seq=_after(after_seq, last_event_id))
    # Pull the first batch now: an unknown turn becomes a 404, not an empty stream.
    first = await anext(events, None)
    head = b"".join(sse_frame(s, e) for s, e in coalesce(turn_id, first or ()))
    return StreamingResponse(
        _sse(turn_id, events, head), media_type="text/event-stream", headers=_SSE_HEADERS
    )


async def _stream(
    services: AppServices, user_id: str, handle: TurnHandle, after_seq: int
) -> StreamingResponse:
    events = services.watcher.watch(
        user_id, handle.turn_id, after_seq=max(after_seq, handle.resume_after)
    )
    head = sse_frame(None, accepted_event(handle, None))
    return StreamingResponse(
        _sse(handle.turn_id, events, head), media_type="text/event-stream", headers=_SSE_HEADERS
    )


async def _sse(
    turn_id: str, events: AsyncIterator[Sequence[WatchEvent]], head: bytes
) -> AsyncIterator[bytes]:
    if head:
        yield head
    async for batch in events:
        yield b"".join(sse_frame(seq, event) for seq, event in coalesce(turn_id, batch))
