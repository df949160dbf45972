"""`/v1`: OpenAI-compatible models and chat completions, for programs with an API key.

Errors on these routes use OpenAI's shape (`api/error_handlers.py` renders them).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import ORJSONResponse, StreamingResponse

from webui_backend.api.openai_compat.protocol import (
    ChatCompletionRequest,
    ModelList,
    OpenAIErrorResponse,
)
from webui_backend.api.openai_compat.serving import OpenAIServing
from webui_backend.deps import ApiKeyUser, ServicesDep

router = APIRouter(prefix="/v1", tags=["openai"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": OpenAIErrorResponse} for code in (400, 401, 403, 404, 413, 422, 429, 503)
}


def _serving(services: ServicesDep, user: ApiKeyUser) -> OpenAIServing:
    settings = services.settings
    access = services.accounts.model_access

    async def allowed_models() -> set[str]:
        return {m.id for m in await access.list_for_user(user.id, user.role)}

    return OpenAIServing(
        runner=services.runner,
        catalog=services.catalog,
        max_message_chars=settings.max_message_chars,
        runner_timeout_s=settings.runner_timeout_s,
        user_id=user.id,
        policy=access,
        usage=services.accounts.usage,
        allowed_models=allowed_models,
    )


@router.get("/models", response_model=ModelList, responses=_ERRORS)
async def list_models(services: ServicesDep, user: ApiKeyUser) -> ModelList:
    return await _serving(services, user).models()


@router.post(
    "/chat/completions",
    responses={200: {"content": {"text/event-stream": {}}}, **_ERRORS},
    summary="Create a chat completion (OpenAI-compatible; streamed with `stream: true`)",
)
async def chat_completions(
    body: ChatCompletionRequest, services: ServicesDep, user: ApiKeyUser
) -> Any:
    serving = _serving(services, user)
    if body.stream:
        chunks = await serving.open_stream(body)
        return StreamingResponse(
            chunks,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return ORJSONResponse(await serving.complete(body))
