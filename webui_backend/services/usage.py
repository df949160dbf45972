"""Token usage per user, model and UTC day (recorded by ReplyGenerator as a reply ends, and
here for requests outside a chat)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from webui_backend.db.models import utcnow
from webui_backend.db.repositories.admin import UsageRepository
from webui_backend.db.transactions import Transactions
from webui_backend.errors import InvalidInputError

_MAX_DAYS = 366


@dataclass(frozen=True, slots=True)
class UsageRow:
    day: date
    user_id: str
    email: str
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int


class UsageService:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], transactions: Transactions
    ) -> None:
        self._sessions = sessions
        self._transactions = transactions

    async def record(
        self, user_id: str, *, model: str, prompt_tokens: int, completion_tokens: int
    ) -> None:
        """Add one request's tokens to the user's daily row (requests made outside a chat,
        such as `/v1/chat/completions`). The same upsert a chat reply runs, as one
        transaction on the turn writer: an ORM session per call cost a `/v1` request more
        CPU than the rest of its start."""
        day = utcnow().date()
        await self._transactions.run_writes(
            lambda writes: writes.add_usage(
                user_id,
                model=model,
                day=day,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
            )
        )

    @staticmethod
    def resolve_range(start: date | None, end: date | None) -> tuple[date, date]:
        end = end or utcnow().date()
        return start or end - timedelta(days=29), end

    async def query(
        self,
        *,
        start: date | None,
        end: date | None,
        user_id: str | None = None,
        model: str | None = None,
    ) -> list[UsageRow]:
        """Rows for [start, end] (default: the last 30 days). Raises InvalidInputError for a
        reversed or over-long range."""
        start, end = self.resolve_range(start, end)
        if start > end:
            raise InvalidInputError("start is after end.", code="invalid_range")
        if (end - start).days >= _MAX_DAYS:
            raise InvalidInputError(
                f"The range may span at most {_MAX_DAYS} days.", code="invalid_range"
            )
        async with self._sessions() as session:
            rows = await UsageRepository(session).query(
                start=start, end=end, user_id=user_id, model=model
            )
        return [
            UsageRow(
                day=row.day,
                user_id=row.user_id,
                email=email,
                model=row.model,
                requests=row.requests,
                prompt_tokens=row.prompt_tokens,
                completion_tokens=row.completion_tokens,
            )
            for row, email in rows
        ]
