"""Idempotent sends: a client-chosen turn key maps to the turn its first send started.

The key row is inserted in the same transaction as the messages it describes, under a unique
(user, key) constraint, so two concurrent sends with one key store and generate once: the loser
rolls back and answers with the winner's turn.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from webui_backend.db.models import utcnow
from webui_backend.db.repositories.turns import TurnRepository
from webui_backend.errors import ConflictError
from webui_backend.services.turn_handle import TurnHandle


class TurnKeyTakenError(Exception):
    """Another send claimed this key first (inside `claim`); the transaction must roll back."""


def digest_of(*fields: str | None) -> str:
    """A fingerprint of what a send asked for, to refuse one key reused for another request."""
    h = hashlib.sha256()
    for f in fields:
        h.update(b"\x00" if f is None else b"\x01" + f.encode())
        h.update(b"\x1f")
    return h.hexdigest()


class TurnKeys:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def find(self, user_id: str, key: str, digest: str) -> TurnHandle | None:
        """The turn an earlier send with this key started, or None.

        Raises ConflictError (turn_key_conflict) when the key was used for another request.
        """
        async with self._sessions() as session:
            row = await TurnRepository(session).find_key(user_id, key)
        if row is None:
            return None
        if row.request_digest != digest:
            raise ConflictError(
                "This turn_key was already used for a different request.",
                code="turn_key_conflict",
            )
        return TurnHandle(
            turn_id=row.assistant_message_id,
            chat_id=row.chat_id,
            user_message_id=row.user_message_id or "",
            assistant_message_id=row.assistant_message_id,
            created_chat=row.created_chat,
            existing=True,
        )

    async def claim(
        self, session: AsyncSession, user_id: str, key: str, handle: TurnHandle, digest: str
    ) -> None:
        """Record the key in the caller's transaction; raises TurnKeyTakenError if taken."""
        row = turn_key_row(user_id, key, handle, digest, utcnow())
        if not await TurnRepository(session).add_key(row):
            raise TurnKeyTakenError(key)


def turn_key_row(
    user_id: str, key: str, handle: TurnHandle, digest: str, at: datetime
) -> dict[str, Any]:
    """The `turn_key` row a new send records (see TurnWrites.add_turn_key)."""
    return {
        "user_id": user_id,
        "key": key,
        "chat_id": handle.chat_id,
        "user_message_id": handle.user_message_id,
        "assistant_message_id": handle.assistant_message_id,
        "created_chat": handle.created_chat,
        "request_digest": digest,
        "created_at": at,
    }
