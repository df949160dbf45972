"""REST bodies for chats and messages."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Tag = Annotated[str, Field(min_length=1, max_length=64)]


class ChatCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(default="", max_length=500)
    tags: list[Tag] = Field(default_factory=list, max_length=20)


class ChatPatch(BaseModel):
    """Only the fields sent change. `current_message_id` may name any message of the chat:
    the active branch becomes the path to the newest leaf under it."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, max_length=500)
    pinned: bool | None = None
    archived: bool | None = None
    tags: list[Tag] | None = Field(default=None, max_length=20)
    current_message_id: str | None = Field(default=None, max_length=64)


class ChatSummary(BaseModel):
    id: str
    title: str
    current_message_id: str | None
    pinned: bool = False
    archived: bool = False
    tags: list[str] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime = Field(description="Last activity: orders the list.")


class ChatPageOut(BaseModel):
    items: list[ChatSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null = end.")


class SearchHitOut(BaseModel):
    chat_id: str
    title: str
    updated_at: datetime
    message_id: str | None = Field(description="The matching message; null = the title matched.")
    snippet: str = Field(description="Matching text, the matched words in [brackets].")


class SearchOut(BaseModel):
    items: list[SearchHitOut]


class TagOut(BaseModel):
    name: str
    chats: int


class TagList(BaseModel):
    items: list[TagOut]


class ImportOut(BaseModel):
    items: list[ChatSummary]


class ShareOut(BaseModel):
    id: str
    url: str
    chat_id: str
    title: str
    created_at: datetime


class ShareList(BaseModel):
    items: list[ShareOut]


class SharedMessageOut(BaseModel):
    role: str
    content: str
    model: str | None
    created_at: datetime


class SharedChatOut(BaseModel):
    id: str
    title: str
    created_at: datetime
    messages: list[SharedMessageOut]


class MessageOut(BaseModel):
    id: str
    parent_id: str | None
    role: str
    content: str
    status: str
    model: str | None
    finish_reason: str | None
    error: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    queue_ms: float | None
    ttft_ms: float | None
    total_ms: float | None
    created_at: datetime
    updated_at: datetime


class ChatDetailOut(ChatSummary):
    messages: list[MessageOut] = Field(description="Every message of the tree, oldest first.")
    active_branch: list[str] = Field(description="Message ids along the active branch.")
