"""Conversations in the OpenAI message shape that chat templates and OpenAI servers expect."""

from __future__ import annotations

from typing import Any

from model_runner.domain import Conversation


def openai_messages(conversation: Conversation) -> list[dict[str, Any]]:
    """`[{"role", "content", "tool_calls"?, "tool_call_id"?}, ...]`, oldest first."""
    messages: list[dict[str, Any]] = []
    for m in conversation.messages:
        message: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.tool_calls:
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments_json},
                }
                for c in m.tool_calls
            ]
        if m.tool_call_id:
            message["tool_call_id"] = m.tool_call_id
        messages.append(message)
    return messages
