"""A reply is searchable once it stops streaming: its checkpoints (one a second while it
streams) do not re-index its growing text. The same on SQLite (FTS5 triggers, migration 0005)
and PostgreSQL (WEBUI_TEST_DATABASE_URL)."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from tests.unit.backend.conftest import account
from webui_backend.container import AppServices
from webui_backend.db.models import Chat, Message, MessageRole, MessageStatus, utcnow
from webui_backend.db.repositories.turn_writes import Checkpoint, TurnWrites


async def test_a_reply_is_found_once_it_stops_streaming(services: AppServices) -> None:
    owner = await account(services)

    def store(session: Session) -> str:
        chat = Chat(user_id=owner, title="")
        session.add(chat)
        session.flush()
        reply = Message(
            chat_id=chat.id,
            role=MessageRole.ASSISTANT,
            content="",
            status=MessageStatus.STREAMING,
        )
        session.add(reply)
        session.flush()
        return reply.id

    reply_id = await services.transactions.run(store)
    for seq, text in enumerate(("a quokkaword", "a quokkaword and a wombatword"), 1):
        checkpoint = [Checkpoint(reply_id, text, seq)]

        def write(writes: TurnWrites, checkpoint: list[Checkpoint] = checkpoint) -> None:
            writes.checkpoint(checkpoint, utcnow())

        await services.transactions.run_writes(write)
        assert await services.chats.search(owner, "quokkaword") == []

    def finish(session: Session) -> None:
        session.execute(
            update(Message).where(Message.id == reply_id).values(status=MessageStatus.COMPLETE)
        )

    await services.transactions.run(finish)
    for word in ("quokkaword", "wombatword"):
        [hit] = await services.chats.search(owner, word)
        assert hit.message_id == reply_id
