"""Chats for their owner: list (keyset pages), open, create, change, delete, search, tags.

Every method takes the owner's id and treats another user's chat exactly like a missing one.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from webui_backend.db.models import Chat, Message
from webui_backend.db.repositories import ChatRepository, MessageRepository
from webui_backend.db.repositories.chat_listing import ChatCursor, ChatListingRepository
from webui_backend.db.repositories.chat_search import ChatSearchRepository, SearchHit, SearchTerm
from webui_backend.errors import InvalidInputError, NotFoundError

MAX_TAGS = 20


@dataclass(frozen=True, slots=True)
class ChatDetail:
    chat: Chat
    # Every message of the tree, oldest first.
    messages: list[Message]
    # Ids along the active branch, root first.
    active_branch: list[str]
    tags: list[str]


@dataclass(frozen=True, slots=True)
class ChatItem:
    chat: Chat
    tags: list[str]


@dataclass(frozen=True, slots=True)
class ChatPage:
    items: list[ChatItem]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class ChatChanges:
    """A partial update: None = leave as is."""

    title: str | None = None
    pinned: bool | None = None
    archived: bool | None = None
    tags: Sequence[str] | None = None
    current_message_id: str | None = None


class ChatQueryService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def list_chats(self, user_id: str, *, limit: int = 50) -> list[Chat]:
        async with self._sessions() as session:
            return await ChatRepository(session).list_owned(user_id, limit=limit)

    async def list_page(
        self,
        user_id: str,
        *,
        cursor: str | None,
        limit: int,
        archived: bool = False,
        pinned: bool | None = None,
        tag: str | None = None,
    ) -> ChatPage:
        """Pinned first, then most recently active. Raises InvalidInputError for a cursor
        this server did not issue."""
        after = decode_cursor(cursor) if cursor else None
        async with self._sessions() as session:
            listing = ChatListingRepository(session)
            chats = await listing.page(
                user_id, archived=archived, pinned=pinned, tag=tag, after=after, limit=limit + 1
            )
            more = len(chats) > limit
            chats = chats[:limit]
            tags = await listing.tags_of([c.id for c in chats])
        items = [ChatItem(chat=c, tags=tags.get(c.id, [])) for c in chats]
        next_cursor = encode_cursor(chats[-1]) if more and chats else None
        return ChatPage(items=items, next_cursor=next_cursor)

    async def create_chat(self, user_id: str, *, title: str = "") -> Chat:
        return (await self.create_tagged_chat(user_id, title=title)).chat

    async def create_tagged_chat(
        self, user_id: str, *, title: str = "", tags: Sequence[str] = ()
    ) -> ChatItem:
        names = normalize_tags(tags)
        async with self._sessions() as session, session.begin():
            chat = await ChatRepository(session).add(user_id=user_id, title=title)
            await ChatListingRepository(session).set_tags(chat.id, names)
        return ChatItem(chat=chat, tags=names)

    async def get_chat(self, user_id: str, chat_id: str) -> ChatDetail:
        """Raises NotFoundError when the chat does not exist or is not the user's."""
        async with self._sessions() as session:
            chat = await _owned(session, chat_id, user_id)
            messages = MessageRepository(session)
            tree = await messages.list_in_chat(chat.id)
            branch = (
                await messages.branch(chat.current_message_id) if chat.current_message_id else []
            )
            tags = (await ChatListingRepository(session).tags_of([chat.id])).get(chat.id, [])
        return ChatDetail(chat=chat, messages=tree, active_branch=[m.id for m in branch], tags=tags)

    async def update_chat(self, user_id: str, chat_id: str, changes: ChatChanges) -> ChatItem:
        """Apply `changes`. `current_message_id` may name any message of the chat: the active
        branch becomes the path to the newest leaf below it (so choosing a sibling shows that
        sibling's latest continuation). Raises NotFoundError (chat, or message not in it)."""
        async with self._sessions() as session, session.begin():
            chats = ChatRepository(session)
            chat = await _owned(session, chat_id, user_id)
            values: dict[str, object] = {}
            if changes.title is not None:
                values["title"] = changes.title.strip()
            if changes.pinned is not None:
                values["pinned"] = changes.pinned
            if changes.archived is not None:
                values["archived"] = changes.archived
            if changes.current_message_id is not None:
                tree = await MessageRepository(session).list_in_chat(chat.id)
                values["current_message_id"] = newest_leaf_below(tree, changes.current_message_id)
            if values:
                await chats.update_fields(chat.id, **values)
            listing = ChatListingRepository(session)
            if changes.tags is not None:
                await listing.set_tags(chat.id, normalize_tags(changes.tags))
            await session.refresh(chat)
            tags = (await listing.tags_of([chat.id])).get(chat.id, [])
        return ChatItem(chat=chat, tags=tags)

    async def delete_chat(self, user_id: str, chat_id: str) -> None:
        """Delete the chat with its messages and shares. Raises NotFoundError."""
        async with self._sessions() as session, session.begin():
            if not await ChatRepository(session).delete_owned(chat_id, user_id):
                raise NotFoundError("Chat not found.", code="chat_not_found")

    async def search(self, user_id: str, query: str, *, limit: int = 20) -> list[SearchHit]:
        """Titles and messages of the user's chats that contain every word of `query`,
        newest first. Raises InvalidInputError for a query with no words."""
        terms = search_terms(query)
        async with self._sessions() as session:
            return await ChatSearchRepository(session).search(user_id, terms, limit=limit)

    async def list_tags(self, user_id: str) -> list[tuple[str, int]]:
        async with self._sessions() as session:
            return await ChatListingRepository(session).user_tags(user_id)


async def _owned(session: AsyncSession, chat_id: str, user_id: str) -> Chat:
    chat = await ChatRepository(session).get_owned(chat_id, user_id)
    if chat is None:
        raise NotFoundError("Chat not found.", code="chat_not_found")
    return chat


def newest_leaf_below(tree: Sequence[Message], message_id: str) -> str:
    children: dict[str | None, list[Message]] = {}
    known = set()
    for message in tree:
        known.add(message.id)
        children.setdefault(message.parent_id, []).append(message)
    if message_id not in known:
        raise NotFoundError("The message is not in this chat.", code="message_not_found")
    current = message_id
    while children.get(current):
        current = max(children[current], key=lambda m: (m.created_at, m.id)).id
    return current


def normalize_tags(tags: Sequence[str]) -> list[str]:
    names: list[str] = []
    for raw in tags:
        name = " ".join(raw.split()).lower()
        if not name or len(name) > 64:
            raise InvalidInputError("A tag must have 1 to 64 characters.", code="invalid_tag")
        if name not in names:
            names.append(name)
    if len(names) > MAX_TAGS:
        raise InvalidInputError(f"A chat may have at most {MAX_TAGS} tags.", code="invalid_tag")
    return sorted(names)


def search_terms(query: str) -> list[SearchTerm]:
    """The user's words as search terms: split on anything but letters and digits (so no
    query operator gets through), all required, at most 16. A word typed with a trailing `*`
    also matches as a prefix (`prog*`); prefixes are opt-in because a short one can expand to
    thousands of words. Raises InvalidInputError for a query with no words."""
    terms: list[SearchTerm] = []
    for piece in query.split():
        words = "".join(c if c.isalnum() else " " for c in piece).split()
        if not words:
            continue
        prefix = piece.endswith("*") and len(words[-1]) >= 2
        terms += [SearchTerm(w) for w in words[:-1]]
        terms.append(SearchTerm(words[-1], prefix=prefix))
    if not terms:
        raise InvalidInputError("The search has no words.", code="invalid_query")
    return terms[:16]


def encode_cursor(chat: Chat) -> str:
    raw = orjson.dumps([int(chat.pinned), chat.updated_at.isoformat(), chat.id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> ChatCursor:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        pinned, updated_at, chat_id = orjson.loads(raw)
        return ChatCursor(
            pinned=bool(pinned), updated_at=datetime.fromisoformat(updated_at), id=str(chat_id)
        )
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise InvalidInputError("The cursor is not valid.", code="invalid_cursor") from exc
