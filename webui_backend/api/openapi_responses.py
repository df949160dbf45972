"""OpenAPI `responses=` entries for our JSON error body, shared by every router."""

from __future__ import annotations

from webui_backend.schemas.events import ErrorResponse


def error_responses(*codes: int) -> dict[int | str, dict[str, object]]:
    """Document `codes` as answering `{"error": {"code", "message"}}`."""
    return {code: {"model": ErrorResponse} for code in codes}
