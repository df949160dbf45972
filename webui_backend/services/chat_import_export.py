"""Export a chat (our JSON, Markdown) and import chats (our JSON, Open WebUI's export).

An import never trusts the file's ids: every chat and message gets a new id, the tree is
rebuilt from parent links (a parent missing from the file makes the message a root) and a
cycle or a duplicate id is refused before anything is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from webui_backend.db.models import Chat, MessageRole, MessageStatus
from webui_backend.db.repositories import ChatRepository, MessageRepository
from webui_backend.db.repositories.chat_listing import ChatListingRepository
from webui_backend.errors import InvalidInputError
from webui_backend.services.chats import ChatDetail, normalize_tags

EXPORT_FORMAT = "webui-stack.chat"
MAX_IMPORT_MESSAGES = 20_000
_ROLES = {r.value for r in MessageRole}


@dataclass(frozen=True, slots=True)
class ImportedMessage:
    key: str
    parent_key: str | None
    role: str
    content: str
    model: str | None
    created_at: datetime | None


@dataclass(frozen=True, slots=True)
class ImportedChat:
    title: str
    messages: list[ImportedMessage]
    current_key: str | None
    tags: list[str]
    created_at: datetime | None
    pinned: bool = False
    archived: bool = False


def export_json(detail: ChatDetail) -> dict[str, Any]:
    chat = detail.chat
    return {
        "format": EXPORT_FORMAT,
        "version": 1,
        "chat": {
            "id": chat.id,
            "title": chat.title,
            "pinned": chat.pinned,
            "archived": chat.archived,
            "tags": detail.tags,
            "current_message_id": chat.current_message_id,
            "created_at": chat.created_at.isoformat(),
            "updated_at": chat.updated_at.isoformat(),
        },
        "messages": [
            {
                "id": m.id,
                "parent_id": m.parent_id,
                "role": m.role.value,
                "content": m.content,
                "status": m.status.value,
                "model": m.model,
                "created_at": m.created_at.isoformat(),
            }
            for m in detail.messages
        ],
    }


def export_markdown(detail: ChatDetail) -> str:
    """The active branch as Markdown: a heading per speaker."""
    by_id = {m.id: m for m in detail.messages}
    lines = [f"# {detail.chat.title or 'Untitled chat'}", ""]
    for message_id in detail.active_branch:
        m = by_id[message_id]
        speaker = {"user": "User", "assistant": "Assistant", "system": "System"}[m.role.value]
        if m.role is MessageRole.ASSISTANT and m.model:
            speaker += f" ({m.model})"
        lines += [f"## {speaker}", "", m.content.rstrip(), ""]
    return "\n".join(lines)


def parse_import(document: Any) -> list[ImportedChat]:
    """Recognise our export, one Open WebUI chat, or a list of either. Raises
    InvalidInputError naming what is wrong."""
    items = document if isinstance(document, list) else [document]
    if not items:
        raise InvalidInputError("The file holds no chats.", code="invalid_import")
    chats = [_parse_one(item, i) for i, item in enumerate(items)]
    if sum(len(c.messages) for c in chats) > MAX_IMPORT_MESSAGES:
        raise InvalidInputError(
            f"An import may hold at most {MAX_IMPORT_MESSAGES} messages.", code="invalid_import"
        )
    return chats


def _parse_one(item: Any, index: int) -> ImportedChat:
    where = f"chat {index}"
    if not isinstance(item, dict):
        raise InvalidInputError(f"{where}: expected an object.", code="invalid_import")
    if item.get("format") == EXPORT_FORMAT:
        return _parse_ours(item, where)
    if isinstance(item.get("chat"), dict):
        return _parse_open_webui(item, where)
    raise InvalidInputError(
        f"{where}: not a chat export this server understands (our JSON or Open WebUI's).",
        code="invalid_import",
    )


def _parse_ours(item: dict[str, Any], where: str) -> ImportedChat:
    chat = _dict(item.get("chat"), f"{where}.chat")
    messages = [
        ImportedMessage(
            key=_str(m.get("id"), f"{where}.messages[{i}].id"),
            parent_key=_opt_str(m.get("parent_id")),
            role=_role(m.get("role"), f"{where}.messages[{i}].role"),
            content=_str(m.get("content", ""), f"{where}.messages[{i}].content"),
            model=_opt_str(m.get("model")),
            created_at=_time(m.get("created_at")),
        )
        for i, m in enumerate(_list_of_dicts(item.get("messages", []), f"{where}.messages"))
    ]
    tags = chat.get("tags", [])
    return ImportedChat(
        title=_str(chat.get("title", ""), f"{where}.chat.title")[:500],
        messages=messages,
        current_key=_opt_str(chat.get("current_message_id")),
        tags=normalize_tags([t for t in tags if isinstance(t, str)]),
        created_at=_time(chat.get("created_at")),
        pinned=bool(chat.get("pinned", False)),
        archived=bool(chat.get("archived", False)),
    )


def _parse_open_webui(item: dict[str, Any], where: str) -> ImportedChat:
    body = _dict(item.get("chat"), f"{where}.chat")
    raw_history = body.get("history")
    history: dict[str, Any] = raw_history if isinstance(raw_history, dict) else {}
    raw_messages = history.get("messages")
    messages: list[ImportedMessage] = []
    if isinstance(raw_messages, dict) and raw_messages:
        for key, m in raw_messages.items():
            m = _dict(m, f"{where}.chat.history.messages[{key}]")
            messages.append(_open_webui_message(m, str(m.get("id", key)), m.get("parentId"), where))
        current = _opt_str(history.get("currentId"))
    else:
        # Older exports carry only a flat list: a single branch in order.
        previous: str | None = None
        flat = _list_of_dicts(body.get("messages", []), f"{where}.chat.messages")
        for i, m in enumerate(flat):
            key = str(m.get("id") or f"m{i}")
            messages.append(_open_webui_message(m, key, previous, where))
            previous = key
        current = previous
    tags_raw = item.get("tags") or body.get("tags") or []
    tags = [
        t if isinstance(t, str) else str(t.get("name", ""))
        for t in tags_raw
        if isinstance(t, str | dict)
    ]
    return ImportedChat(
        title=str(item.get("title") or body.get("title") or "Imported chat")[:500],
        messages=messages,
        current_key=current,
        tags=normalize_tags([t for t in tags if t.strip()]),
        created_at=_time(item.get("created_at")),
        pinned=bool(item.get("pinned", False)),
        archived=bool(item.get("archived", False)),
    )


def _open_webui_message(m: dict[str, Any], key: str, parent: Any, where: str) -> ImportedMessage:
    return ImportedMessage(
        key=key,
        parent_key=_opt_str(parent),
        role=_role(m.get("role"), f"{where}: message {key} role"),
        content=str(m.get("content") or ""),
        model=_opt_str(m.get("model")),
        created_at=_time(m.get("timestamp")),
    )


class ChatImportService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def import_chats(self, user_id: str, chats: Sequence[ImportedChat]) -> list[Chat]:
        """Store every chat in one transaction: all or nothing."""
        plans = [(chat, _ordered(chat)) for chat in chats]
        created: list[Chat] = []
        async with self._sessions() as session, session.begin():
            chat_repo = ChatRepository(session)
            messages = MessageRepository(session)
            for chat, ordered in plans:
                row = await chat_repo.add(user_id=user_id, title=chat.title)
                ids: dict[str, str] = {}
                last: str | None = None
                for m in ordered:
                    parent = ids.get(m.parent_key) if m.parent_key else None
                    message = messages.add(
                        chat_id=row.id,
                        parent_id=parent,
                        role=MessageRole(m.role),
                        content=m.content,
                        status=MessageStatus.COMPLETE,
                        model=m.model,
                        at=m.created_at,
                    )
                    ids[m.key] = message.id
                    last = message.id
                await session.flush()
                current = ids.get(chat.current_key or "", last)
                await chat_repo.update_fields(
                    row.id,
                    current_message_id=current,
                    pinned=chat.pinned,
                    archived=chat.archived,
                    created_at=chat.created_at or row.created_at,
                )
                await ChatListingRepository(session).set_tags(row.id, chat.tags)
                await session.refresh(row)
                created.append(row)
        return created


def _ordered(chat: ImportedChat) -> list[ImportedMessage]:
    """Parents before children; refuses duplicate ids and cycles."""
    by_key: dict[str, ImportedMessage] = {}
    for m in chat.messages:
        if m.key in by_key:
            raise InvalidInputError(f"Duplicate message id {m.key!r}.", code="invalid_import")
        by_key[m.key] = m
    ordered: list[ImportedMessage] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = done
    for start in by_key:
        stack = [start]
        while stack:
            key = stack[-1]
            if state.get(key) == 2:
                stack.pop()
                continue
            parent = by_key[key].parent_key
            if parent in by_key and state.get(parent) != 2:
                if state.get(parent) == 1:
                    raise InvalidInputError("The message tree has a cycle.", code="invalid_import")
                state[key] = 1
                stack.append(parent)
                continue
            state[key] = 2
            ordered.append(by_key[key])
            stack.pop()
    return ordered


def _dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInputError(f"{where}: expected an object.", code="invalid_import")
    return value


def _list_of_dicts(value: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise InvalidInputError(f"{where}: expected a list of objects.", code="invalid_import")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"{where}: expected a string.", code="invalid_import")
    return value


def _opt_str(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int) and str(value) else None


def _role(value: Any, where: str) -> str:
    if value not in _ROLES:
        raise InvalidInputError(
            f"{where}: role must be one of {sorted(_ROLES)}.", code="invalid_import"
        )
    return str(value)


def _time(value: Any) -> datetime | None:
    """ISO 8601 text, or Unix seconds (Open WebUI), as an aware UTC datetime."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if value > 1e11 else value  # milliseconds in some exports
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None
