"""Turns that build on a stored reply: regenerate (a new sibling reply under the same user
message) and continue (more text appended to an interrupted, cancelled or cut-off reply)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from model_runner.client import ChatMessage, GenerationOptions
from webui_backend.db.models import Message, MessageRole, MessageStatus, utcnow
from webui_backend.db.repositories import ChatRepository, MessageRepository
from webui_backend.db.repositories.turns import TurnRepository
from webui_backend.errors import ConflictError, NotFoundError
from webui_backend.services.model_catalog import ModelCatalog
from webui_backend.services.turn_handle import TurnHandle
from webui_backend.services.turn_history import history_of
from webui_backend.services.turn_keys import TurnKeys

# A reply can be continued when its text stopped short of the model's own end.
_CONTINUABLE = (MessageStatus.INTERRUPTED, MessageStatus.CANCELLED, MessageStatus.COMPLETE)
_CONTINUABLE_COMPLETE_REASONS = ("length", "time_limit")


@dataclass(frozen=True, slots=True)
class FollowUpRequest:
    model: str = ""  # regenerate only; empty = the reply's model, then the default
    options: GenerationOptions = field(default_factory=GenerationOptions)
    turn_key: str | None = None  # regenerate only (a continue is idempotent by itself)


@dataclass(frozen=True, slots=True)
class StoredFollowUp:
    handle: TurnHandle
    model: str
    history: list[ChatMessage]
    base_content: str = ""
    first_seq: int = 1


class FollowUps:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        catalog: ModelCatalog,
        default_model: str,
    ) -> None:
        self._sessions = sessions
        self._catalog = catalog
        self._default_model = default_model
        self._keys = TurnKeys(sessions)

    async def owns_reply(self, user_id: str, reply_id: str) -> bool:
        async with self._sessions() as session:
            stored = await TurnRepository(session).get_reply(reply_id)
        return stored is not None and stored.user_id == user_id

    async def regenerate(
        self, user_id: str, reply_id: str, request: FollowUpRequest, digest: str
    ) -> StoredFollowUp:
        """Store an empty `streaming` sibling of `reply_id` and make it the active leaf."""
        async with self._sessions() as session:
            original = await _owned_reply(session, user_id, reply_id)
            model = request.model or original.model or self._default_model
        await self._catalog.check(model)
        async with self._sessions() as session, session.begin():
            original = await _owned_reply(session, user_id, reply_id)
            if original.parent_id is None:
                raise NotFoundError("The reply has no question to answer.", code="reply_not_found")
            messages = MessageRepository(session)
            now = utcnow()
            reply = messages.add(
                chat_id=original.chat_id,
                parent_id=original.parent_id,
                role=MessageRole.ASSISTANT,
                content="",
                status=MessageStatus.STREAMING,
                model=model or None,
                at=now + timedelta(microseconds=1),
            )
            await ChatRepository(session).set_current_message(original.chat_id, reply.id, at=now)
            branch = await messages.branch(original.parent_id)
            handle = TurnHandle(
                turn_id=reply.id,
                chat_id=original.chat_id,
                user_message_id=original.parent_id,
                assistant_message_id=reply.id,
                created_chat=False,
            )
            if request.turn_key is not None:
                await self._keys.claim(session, user_id, request.turn_key, handle, digest)
        return StoredFollowUp(handle, model, history_of(branch))

    async def reopen(self, user_id: str, reply_id: str, request: FollowUpRequest) -> StoredFollowUp:
        """Set the reply back to `streaming`; its new events start after its stored ones."""
        async with self._sessions() as session, session.begin():
            reply = await _owned_reply(session, user_id, reply_id)
            continuable = reply.status in (
                MessageStatus.INTERRUPTED,
                MessageStatus.CANCELLED,
            ) or (
                reply.status is MessageStatus.COMPLETE
                and reply.finish_reason in _CONTINUABLE_COMPLETE_REASONS
            )
            if not continuable or not await TurnRepository(session).reopen_reply(
                reply.id, _CONTINUABLE
            ):
                raise ConflictError(
                    f"This reply is {reply.status.value} and cannot be continued; only an "
                    "interrupted, cancelled or length-limited reply can.",
                    code="not_continuable",
                )
            branch = await MessageRepository(session).branch(reply.id)
            # The stored finished event had seq content_seq + 1; new events follow it.
            first_seq = reply.content_seq + 2
            handle = TurnHandle(
                turn_id=reply.id,
                chat_id=reply.chat_id,
                user_message_id=reply.parent_id or "",
                assistant_message_id=reply.id,
                created_chat=False,
                resume_after=first_seq - 1,
            )
            content = reply.content
            model = reply.model or self._default_model
        return StoredFollowUp(handle, model, history_of(branch), content, first_seq)


async def _owned_reply(session: AsyncSession, user_id: str, reply_id: str) -> Message:
    stored = await TurnRepository(session).get_reply(reply_id)
    if stored is None or stored.user_id != user_id:
        raise NotFoundError("Reply not found.", code="reply_not_found")
    return stored.message
