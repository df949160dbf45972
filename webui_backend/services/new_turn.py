"""A send: what it asks for, and the one transaction that stores it (`NewTurn.store`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from model_runner.client import ChatMessage, GenerationOptions
from webui_backend.db.models import MessageRole, MessageStatus
from webui_backend.db.repositories.turn_writes import TurnWrites, message_row
from webui_backend.errors import NotFoundError
from webui_backend.services.turn_handle import TurnHandle
from webui_backend.services.turn_keys import TurnKeyTakenError, digest_of, turn_key_row

_TITLE_CHARS = 80


@dataclass(frozen=True, slots=True)
class TurnRequest:
    content: str
    chat_id: str | None = None
    # With `use_active_leaf` (the default) the turn continues the chat's active branch.
    # Otherwise it answers under `parent_id`, or starts a new root branch when that is None
    # (editing the first message).
    parent_id: str | None = None
    use_active_leaf: bool = True
    model: str = ""
    options: GenerationOptions = field(default_factory=GenerationOptions)
    # Client-chosen id of this send: the same key again returns the turn it started.
    turn_key: str | None = None


@dataclass(frozen=True, slots=True)
class NewTurn:
    """One send, with its ids chosen up front so the transaction is a plain function."""

    user_id: str
    request: TurnRequest
    model: str
    digest: str
    chat_id: str
    user_message_id: str
    reply_id: str
    at: datetime

    @property
    def handle(self) -> TurnHandle:
        return TurnHandle(
            turn_id=self.reply_id,
            chat_id=self.chat_id,
            user_message_id=self.user_message_id,
            assistant_message_id=self.reply_id,
            created_chat=self.request.chat_id is None,
        )

    def history_without_reads(self) -> list[ChatMessage] | None:
        """A new chat's history, its one message; None when the transaction must read it
        (or will refuse the send: a new chat has no parent to answer under)."""
        request = self.request
        if request.chat_id is None and (request.use_active_leaf or request.parent_id is None):
            return self._history([])
        return None

    def _history(self, earlier: list[tuple[MessageRole, str]]) -> list[ChatMessage]:
        """What the reply answers: the stored messages before this send (empty replies left
        out), then its own."""
        return [
            *(
                ChatMessage(role=role.value, content=content)
                for role, content in earlier
                if content or role is MessageRole.USER
            ),
            ChatMessage(role=MessageRole.USER.value, content=self.request.content),
        ]

    def store(
        self, writes: TurnWrites, *, announce: Callable[[list[ChatMessage]], None]
    ) -> TurnHandle:
        """The user message and an empty `streaming` reply in the caller's transaction;
        `announce` gets the history the reply answers as soon as it is read, before the
        inserts. Raises NotFoundError (chat or parent; before `announce`) and
        TurnKeyTakenError (the key is taken; after it)."""
        request = self.request
        created_chat = request.chat_id is None
        if created_chat:
            leaf = None
        else:
            owned = writes.owned_chat_leaf(self.chat_id, self.user_id)
            if owned is None:
                raise NotFoundError("Chat not found.", code="chat_not_found")
            leaf = owned[0]
        parent_id = leaf if request.use_active_leaf else request.parent_id
        if (
            parent_id is not None
            and not request.use_active_leaf
            and (created_chat or not writes.message_in_chat(parent_id, self.chat_id))
        ):
            raise NotFoundError(
                "The message to reply under is not in this chat.", code="parent_not_found"
            )
        announce(self._history(writes.branch_history(parent_id) if parent_id is not None else []))
        if created_chat:
            writes.add_chat(
                chat_id=self.chat_id,
                user_id=self.user_id,
                title=_title_from(request.content),
                at=self.at,
            )
        writes.add_messages(
            [
                message_row(
                    message_id=self.user_message_id,
                    chat_id=self.chat_id,
                    parent_id=parent_id,
                    role=MessageRole.USER,
                    content=request.content,
                    status=MessageStatus.COMPLETE,
                    model=None,
                    at=self.at,
                ),
                message_row(
                    message_id=self.reply_id,
                    chat_id=self.chat_id,
                    parent_id=self.user_message_id,
                    role=MessageRole.ASSISTANT,
                    content="",
                    status=MessageStatus.STREAMING,
                    model=self.model or None,
                    # A microsecond later, so ordering by time shows the question first.
                    at=self.at + timedelta(microseconds=1),
                ),
            ]
        )
        writes.set_current_message(self.chat_id, self.reply_id, self.at)
        handle = self.handle
        if request.turn_key is not None and not writes.add_turn_key(
            turn_key_row(self.user_id, request.turn_key, handle, self.digest, self.at)
        ):
            raise TurnKeyTakenError(request.turn_key)
        return handle


def request_digest(request: TurnRequest) -> str:
    parent = "<active>" if request.use_active_leaf else request.parent_id
    return digest_of("send", request.content, request.chat_id, parent, request.model)


def _title_from(content: str) -> str:
    line = content.strip().splitlines()[0] if content.strip() else ""
    return line[:_TITLE_CHARS]
