"""`python -m bench.history`: seed a long history for one user, then time the sidebar list,
opening a chat and searching, through the same services the REST routes call.

    uv run python -m bench.history --chats 10000 --messages 100
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.history.seed import chat_ids, seed, vocabulary
from webui_backend.db.engine import create_engine, create_session_factory
from webui_backend.db.migrate import upgrade_to_head
from webui_backend.services.chats import ChatQueryService

_GOAL_MS = 20.0


async def _time(
    name: str, runs: int, call: Callable[[int], Awaitable[object]]
) -> tuple[str, float, float]:
    for i in range(min(5, runs)):  # warm the page cache and the statement cache
        await call(i)
    samples = []
    for i in range(runs):
        started = time.perf_counter()
        await call(i)
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    p50 = statistics.median(samples)
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return name, p50, p99


async def migrate(db_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{db_path}")
    await upgrade_to_head(engine)
    await engine.dispose()


async def measure(
    db_path: Path, user_id: str, ids: list[str], words: list[str], messages: int, runs: int
) -> list[tuple[str, float, float]]:
    engine = create_engine(f"sqlite+aiosqlite:///{db_path}")
    service = ChatQueryService(create_session_factory(engine))

    first = await service.list_page(user_id, cursor=None, limit=50)
    deep_cursor = first.next_cursor
    for _ in range(50):  # 50 pages in: ~2,500 chats down the list
        page = await service.list_page(user_id, cursor=deep_cursor, limit=50)
        deep_cursor = page.next_cursor
    common, mid, rare = words[0], words[40], words[2500]

    results = [
        await _time(
            "list (first page, 50)",
            runs,
            lambda i: service.list_page(user_id, cursor=None, limit=50),
        ),
        await _time(
            "list (page 51, cursor)",
            runs,
            lambda i: service.list_page(user_id, cursor=deep_cursor, limit=50),
        ),
        await _time(
            f"open ({messages} messages)",
            runs,
            lambda i: service.get_chat(user_id, ids[(i * 7919) % len(ids)]),
        ),
        await _time("search (rare word)", runs, lambda i: service.search(user_id, rare, limit=20)),
        await _time("search (mid word)", runs, lambda i: service.search(user_id, mid, limit=20)),
        await _time(
            "search (common word)",
            max(10, runs // 5),
            lambda i: service.search(user_id, common, limit=20),
        ),
        await _time(
            "search (prefix: 4 letters*)",
            max(10, runs // 5),
            lambda i: service.search(user_id, f"{rare[:4]}*", limit=20),
        ),
        await _time(
            "search (two words)", runs, lambda i: service.search(user_id, f"{mid} {rare}", limit=20)
        ),
    ]
    await engine.dispose()
    return results


def run(db_path: Path, chats: int, messages: int, runs: int) -> None:
    asyncio.run(migrate(db_path))
    words = vocabulary(3000, random.Random(11))
    started = time.perf_counter()
    user_id = seed(db_path, chats=chats, messages_per_chat=messages, words=words)
    seeded_s = time.perf_counter() - started
    ids = list(chat_ids(db_path))
    results = asyncio.run(measure(db_path, user_id, ids, words, messages, runs))
    size_mb = db_path.stat().st_size / 1e6
    print(
        f"history: {chats} chats x {messages} messages = {chats * messages} messages, "
        f"seeded in {seeded_s:.1f} s, database {size_mb:.0f} MB"
    )
    print(f"{'operation':<28} {'p50 ms':>8} {'p99 ms':>8}  vs goal {_GOAL_MS:.0f} ms p50")
    for name, p50, p99 in results:
        print(f"{name:<28} {p50:8.2f} {p99:8.2f}  {p50 / _GOAL_MS:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chats", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--db", type=Path, default=None, help="keep the database here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db_path = args.db or Path(tmp) / "history.db"
        if db_path.exists():
            parser.error(f"{db_path} exists; the benchmark seeds a fresh database")
        run(db_path, args.chats, args.messages, args.runs)


if __name__ == "__main__":
    main()
