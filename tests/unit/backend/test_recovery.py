"""Replies left `streaming` by a crash are marked interrupted when the backend starts."""

from __future__ import annotations

from tests.support.fake_runner_client import FakeRunnerClient
from tests.unit.backend.conftest import account
from webui_backend.db.models import MessageRole, MessageStatus
from webui_backend.db.repositories import ChatRepository, MessageRepository
from webui_backend.main import create_app
from webui_backend.settings import Settings


async def test_orphaned_streaming_reply_is_interrupted_on_start(settings: Settings) -> None:
    app = create_app(settings, runner=FakeRunnerClient())
    async with app.router.lifespan_context(app):
        services = app.state.services
        owner = await account(services)
        async with services.sessions() as session, session.begin():
            chat = await ChatRepository(session).add(user_id=owner)
            repo = MessageRepository(session)
            question = repo.add(chat_id=chat.id, parent_id=None, role=MessageRole.USER, content="q")
            await session.flush()
            orphan = repo.add(
                chat_id=chat.id,
                parent_id=question.id,
                role=MessageRole.ASSISTANT,
                content="half an ans",
                status=MessageStatus.STREAMING,
            )
        orphan_id, chat_id = orphan.id, chat.id

    restarted = create_app(settings, runner=FakeRunnerClient())
    async with restarted.router.lifespan_context(restarted):
        services = restarted.state.services
        detail = await services.chats.get_chat(owner, chat_id)
        reply = next(m for m in detail.messages if m.id == orphan_id)
        assert reply.status is MessageStatus.INTERRUPTED
        assert reply.content == "half an ans"
        assert reply.finish_reason == "interrupted"
