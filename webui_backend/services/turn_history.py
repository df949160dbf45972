"""The conversation a turn sends to the model, from the stored branch."""

from __future__ import annotations

from collections.abc import Sequence

from model_runner.client import ChatMessage
from webui_backend.db.models import Message, MessageRole


def history_of(branch: Sequence[Message]) -> list[ChatMessage]:
    """The branch minus replies that carry no text (failed ones); a partial reply being
    continued has text, so it stays last."""
    return [
        ChatMessage(role=m.role.value, content=m.content)
        for m in branch
        if m.content or m.role is MessageRole.USER
    ]
