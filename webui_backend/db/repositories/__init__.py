"""Repositories: every SQL statement of the backend lives in this package."""

from webui_backend.db.repositories.chats import ChatRepository
from webui_backend.db.repositories.messages import MessageRepository
from webui_backend.db.repositories.users import UserRepository

__all__ = ["ChatRepository", "MessageRepository", "UserRepository"]
