"""Batched checkpoints of replies being generated, so a crash loses at most one interval.

Generators only update a `ReplyProgress` in memory (an append and an int per token); one loop
for the whole process writes every reply that moved since the last pass in one transaction per
interval. The database sees one UPDATE per reply per interval, never one per token.
"""

from __future__ import annotations

import logging

from webui_backend.db.models import utcnow
from webui_backend.db.repositories.turn_writes import Checkpoint
from webui_backend.db.transactions import Transactions
from webui_backend.services.background import every

log = logging.getLogger(__name__)


class ReplyProgress:
    """The reply text so far (`parts`, starting with any stored text a continue extends) and
    the seq of the last event it covers."""

    __slots__ = ("parts", "saved_seq", "seq")

    def __init__(self, base_content: str, seq: int) -> None:
        self.parts: list[str] = [base_content] if base_content else []
        self.seq = seq
        self.saved_seq = seq

    def text(self) -> str:
        parts = self.parts
        if len(parts) > 1:
            # Keep later joins cheap on long replies.
            parts[:] = ["".join(parts)]
        return parts[0] if parts else ""


class ReplyCheckpointer:
    def __init__(self, transactions: Transactions, *, interval_s: float) -> None:
        self._transactions = transactions
        self._interval_s = interval_s
        self._live: dict[str, ReplyProgress] = {}

    def track(self, turn_id: str, progress: ReplyProgress) -> None:
        self._live[turn_id] = progress

    def untrack(self, turn_id: str) -> None:
        self._live.pop(turn_id, None)

    async def run(self) -> None:
        """Checkpoint every interval until cancelled (a server-owned task)."""
        await every(
            self._interval_s,
            self.flush,
            log=log,
            failure="could not checkpoint replies; retrying next interval",
        )

    async def flush(self) -> int:
        """Write every reply that moved since its last checkpoint; returns how many."""
        due = [
            (turn_id, progress, progress.seq)
            for turn_id, progress in self._live.items()
            if progress.seq > progress.saved_seq
        ]
        if not due:
            return 0
        checkpoints = [Checkpoint(turn_id, progress.text(), seq) for turn_id, progress, seq in due]
        now = utcnow()
        await self._transactions.run_writes(lambda writes: writes.checkpoint(checkpoints, now))
        for _turn_id, progress, seq in due:
            progress.saved_seq = max(progress.saved_seq, seq)
        return len(due)
