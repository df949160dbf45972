"""Fast bulk seeding of one user's history straight into a migrated SQLite file.

Rows go in with plain `executemany` in large transactions (the FTS triggers of migration 0002
index every message as it lands, exactly as in production). Timestamps use the text format
SQLAlchemy writes for SQLite, so the app reads them back unchanged.
"""

from __future__ import annotations

import random
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "zu", "pe", "qua", "bre", "dor"]


def vocabulary(size: int, rng: random.Random) -> list[str]:
    """Made-up words; the benchmark searches some of them, so hit counts are known."""
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def _text(rng: random.Random, words: list[str], n: int) -> str:
    # Zipf-like: a few words are common, most are rare, like real text.
    return " ".join(words[min(int(rng.paretovariate(1.1)) - 1, len(words) - 1)] for _ in range(n))


def seed(
    db_path: Path, *, chats: int, messages_per_chat: int, words: list[str], seed_value: int = 7
) -> str:
    """Insert one user with `chats` linear chats of `messages_per_chat` messages; returns the
    user id."""
    rng = random.Random(seed_value)
    user_id = str(uuid.uuid4())
    start = datetime(2025, 1, 1, tzinfo=UTC)
    conn = sqlite3.connect(db_path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute(
            "INSERT INTO user (id, email, name, role, created_at, token_version) "
            "VALUES (?, ?, ?, 'user', ?, 0)",
            (user_id, "bench@example.com", "Bench", start.strftime(_FORMAT)),
        )
        batch: list[tuple[object, ...]] = []
        chat_rows: list[tuple[object, ...]] = []
        for c in range(chats):
            chat_id = str(uuid.uuid4())
            created = start + timedelta(minutes=c * 7)
            parent: str | None = None
            for m in range(messages_per_chat):
                message_id = str(uuid.uuid4())
                at = (created + timedelta(seconds=m * 20)).strftime(_FORMAT)
                role = "user" if m % 2 == 0 else "assistant"
                content = _text(rng, words, 12 if role == "user" else 40)
                batch.append((message_id, chat_id, parent, role, content, "complete", at, at))
                parent = message_id
            updated = (created + timedelta(seconds=messages_per_chat * 20)).strftime(_FORMAT)
            chat_rows.append(
                (
                    chat_id,
                    user_id,
                    _text(rng, words, 4),
                    parent,
                    int(c % 200 == 0),
                    0,
                    created.strftime(_FORMAT),
                    updated,
                )
            )
            if len(batch) >= 50_000:
                _flush(conn, chat_rows, batch)
                chat_rows, batch = [], []
        _flush(conn, chat_rows, batch)
    finally:
        conn.close()
    return user_id


def _flush(
    conn: sqlite3.Connection, chats: list[tuple[object, ...]], messages: list[tuple[object, ...]]
) -> None:
    with conn:
        conn.executemany(
            "INSERT INTO chat (id, user_id, title, current_message_id, pinned, archived, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            chats,
        )
        conn.executemany(
            "INSERT INTO message (id, chat_id, parent_id, role, content, status, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            messages,
        )


def chat_ids(db_path: Path) -> Iterator[str]:
    conn = sqlite3.connect(db_path)
    try:
        yield from (row[0] for row in conn.execute("SELECT id FROM chat"))
    finally:
        conn.close()
