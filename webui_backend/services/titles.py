"""A title written by the model after the first exchange, off the request path.

Runs as a background task once the first reply has been stored; a failure only leaves the
provisional title (the first line of the first message) in place.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from model_runner.client import ChatMessage, GenerationOptions, RunnerError, StreamDelta
from webui_backend.db.repositories import ChatRepository, MessageRepository
from webui_backend.services.runner_port import RunnerClient
from webui_backend.services.settings_store import SettingsStore

log = logging.getLogger(__name__)

TITLE_PROMPT = (
    "Write a short title (at most six words) for the conversation above. "
    "Reply with the title only: no quotes, no punctuation at the end."
)
_MAX_TOKENS = 24
_MAX_CHARS = 80
_EXCERPT_CHARS = 2000


class TitleGenerator:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        runner: RunnerClient,
        settings_store: SettingsStore,
        timeout_s: float = 30.0,
    ) -> None:
        self._sessions = sessions
        self._runner = runner
        self._store = settings_store
        self._timeout_s = timeout_s

    async def write_title(self, user_id: str, chat_id: str, model: str) -> None:
        """Replace the provisional title unless the user renamed the chat meanwhile.
        Never raises (except cancellation)."""
        if not self._store.current.title_generation:
            return
        try:
            await self._write(user_id, chat_id, model)
        except RunnerError as exc:
            log.info("no title for chat %s: %s", chat_id, exc)
        except Exception:
            log.exception("title generation failed for chat %s", chat_id)

    async def _write(self, user_id: str, chat_id: str, model: str) -> None:
        async with self._sessions() as session:
            chat = await ChatRepository(session).get_owned(chat_id, user_id)
            if chat is None or chat.current_message_id is None:
                return
            provisional = chat.title
            branch = await MessageRepository(session).branch(chat.current_message_id)
        conversation = [
            ChatMessage(role=m.role.value, content=m.content[:_EXCERPT_CHARS])
            for m in branch
            if m.content and m.role.value in ("user", "assistant")
        ][:2]
        if len(conversation) < 2 or provisional != provisional_title(branch[0].content):
            # Renamed by the user (or not a fresh chat): the user's title stays.
            return
        parts: list[str] = []
        async for event in self._runner.chat_stream(
            [*conversation, ChatMessage(role="user", content=TITLE_PROMPT)],
            model=model,
            request_id=f"title-{chat_id}",
            options=GenerationOptions(max_tokens=_MAX_TOKENS, temperature=0.3),
            timeout_s=self._timeout_s,
        ):
            if isinstance(event, StreamDelta):
                parts.append(event.text)
        title = clean_title("".join(parts))
        if not title:
            return
        async with self._sessions() as session, session.begin():
            await ChatRepository(session).replace_title(chat_id, provisional, title)


def clean_title(raw: str) -> str:
    line = next((ln.strip() for ln in raw.strip().splitlines() if ln.strip()), "")
    line = line.removeprefix("Title:").strip().rstrip(".").strip("\"'`*#").strip()
    return line.rstrip(".")[:_MAX_CHARS]


def provisional_title(first_message: str) -> str:
    """The title a chat gets at once: the first line of its first message (as the turn
    service sets it)."""
    text = first_message.strip()
    return text.splitlines()[0][:_MAX_CHARS] if text else ""
