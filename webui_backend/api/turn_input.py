"""From a turn's wire body (WebSocket frame or SSE request) to the service's request."""

from __future__ import annotations

from model_runner.client import GenerationOptions
from webui_backend.schemas.turns import FollowUpBody, GenerationParams, TurnBody
from webui_backend.services.new_turn import TurnRequest
from webui_backend.services.turn_followups import FollowUpRequest


def options_from(params: GenerationParams) -> GenerationOptions:
    return GenerationOptions(
        temperature=params.temperature,
        top_p=params.top_p,
        max_tokens=params.max_tokens,
        stop=tuple(params.stop),
        seed=params.seed,
    )


def turn_request(body: TurnBody, chat_id: str | None) -> TurnRequest:
    return TurnRequest(
        content=body.content,
        chat_id=chat_id,
        parent_id=body.parent_id,
        # An omitted parent_id continues the active branch; an explicit null starts a root.
        use_active_leaf="parent_id" not in body.model_fields_set,
        model=body.model,
        options=options_from(body.params),
        turn_key=body.turn_key,
    )


def followup_request(body: FollowUpBody) -> FollowUpRequest:
    return FollowUpRequest(
        model=body.model, options=options_from(body.params), turn_key=body.turn_key
    )
