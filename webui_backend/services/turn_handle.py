"""What starting a turn returns: the ids a client needs to follow and resume it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TurnHandle:
    turn_id: str
    chat_id: str
    user_message_id: str
    assistant_message_id: str
    created_chat: bool
    # True when a turn key matched an earlier send: nothing new was stored or generated.
    existing: bool = False
    # The seq the client already holds the text through: 0 for a new reply, the stored
    # events for a continued one (its new events follow them).
    resume_after: int = 0
