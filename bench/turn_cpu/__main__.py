"""Turn CPU benchmark: CPU milliseconds per persisted chat turn, with the app in this process.

    uv run python -m bench.turn_cpu                 # 400 turns per path, sequential and 32 at once
    uv run python -m bench.turn_cpu --turns 100     # quicker
    make bench-turn ARGS="--paths ws"

The app is `create_app` on a real migrated SQLite file with the fake runner client, which
streams a two-piece reply at once, so what is measured is the backend's own work per turn:
authentication, the turn policy, both commits (user message + reply row; reply + usage), the
hub, and the event encoding. Paths: `service` (`ChatTurnService.start_turn` and the watcher,
no HTTP), `ws` (`chat.send` on an in-process ASGI WebSocket, one socket per conversation
worker), `sse` (`POST /api/turns` through httpx's ASGI transport, authenticated per request),
and two baselines: `sql`, the same two transactions as bare SQL through the app's async engine
(aiosqlite: the path turns took before `db/transactions.py`), and `sql-thread`, the same SQL
with the stdlib `sqlite3` on one writer thread, one hand-over per transaction (what the app's
writer thread would cost with no SQLAlchemy at all).

CPU is `time.process_time()` (every thread: aiosqlite's included) over the run / turns; `loop`
is the event loop thread's share (`time.thread_time()`). Turns are in conversations of
`--turns-per-chat` (the first creates the chat); the model has an administrator's settings,
as in production. Title generation is off: it is a separate runner call per new chat.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
from fastapi import FastAPI
from sqlalchemy import func, select

from bench.turn_cpu.asgi_socket import AsgiSocket
from bench.turn_cpu.baselines import (
    CONTENT,
    MODEL,
    ThreadWriter,
    sql_conversation,
    thread_conversation,
)
from tests.support.fake_runner_client import FakeRunnerClient
from webui_backend.container import AppServices
from webui_backend.db.models import Message, MessageRole, MessageStatus
from webui_backend.main import create_app
from webui_backend.services.new_turn import TurnRequest
from webui_backend.services.principal import AuthenticatedUser
from webui_backend.services.turn_events import TurnFinished
from webui_backend.settings import Settings

PATHS = ("sql-thread", "sql", "service", "ws", "sse")

# Runs one conversation of `turns` turns; returns how many finished `complete`.
Conversation = Callable[[int], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class Figures:
    path: str
    mode: str
    turns: int
    cpu_s: float
    loop_cpu_s: float
    wall_s: float

    @property
    def cpu_ms_per_turn(self) -> float:
        return self.cpu_s * 1000 / self.turns

    @property
    def loop_ms_per_turn(self) -> float:
        return self.loop_cpu_s * 1000 / self.turns

    @property
    def turns_per_s(self) -> float:
        return self.turns / self.wall_s


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.turn_cpu", description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=400, help="turns per path and mode")
    parser.add_argument("--concurrency", type=int, default=32, help="conversations at once")
    parser.add_argument("--turns-per-chat", type=int, default=4)
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument("--modes", nargs="+", choices=("seq", "conc"), default=["seq", "conc"])
    return parser.parse_args(argv)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-turn-") as tmp:
        settings = Settings(
            data_dir=Path(tmp) / "data",
            default_role="user",
            chat_messages_per_minute=0,
            title_generation=False,
        )
        app = create_app(settings, runner=FakeRunnerClient(models=[MODEL]))
        async with app.router.lifespan_context(app):
            services: AppServices = app.state.services
            user, token = await _accounts(services)
            results: list[Figures] = []
            for path in args.paths:
                conversation = _conversation(path, app, services, user, token)
                for mode in args.modes:
                    workers = 1 if mode == "seq" else args.concurrency
                    await _drive(conversation, services, 20, 1, args.turns_per_chat)  # warm-up
                    figures = await _drive(
                        conversation, services, args.turns, workers, args.turns_per_chat
                    )
                    results.append(
                        Figures(path, mode, args.turns, figures[0], figures[1], figures[2])
                    )
            print(_table(results, args.concurrency))


async def _accounts(services: AppServices) -> tuple[AuthenticatedUser, str]:
    """An admin who configures the model, and the user who chats (signed in: a token)."""
    admin = await services.auth.register(
        email="admin@example.com", password="pw-12345678", name="A"
    )
    actor = AuthenticatedUser(id=admin.id, role=admin.role.value)
    await services.accounts.model_access.update(
        actor, MODEL, {"system_prompt": "Answer briefly.", "params": {"temperature": 0.7}}
    )
    await services.auth.register(email="user@example.com", password="pw-12345678", name="U")
    login = await services.auth.login(
        email="user@example.com", password="pw-12345678", address="bench", user_agent="bench"
    )
    principal = await services.auth.authenticate_bearer(login.access_token)
    return principal, login.access_token


async def _drive(
    conversation: Conversation, services: AppServices, turns: int, workers: int, per_chat: int
) -> tuple[float, float, float]:
    """Run `turns` turns as conversations over `workers` concurrent workers; check that every
    one was stored `complete`. Returns (process CPU s, loop thread CPU s, wall s)."""
    before = await _complete_replies(services)
    chats = [per_chat] * (turns // per_chat) + ([turns % per_chat] if turns % per_chat else [])
    queue = iter(chats)

    async def worker() -> int:
        done = 0
        for size in queue:
            done += await conversation(size)
        return done

    cpu0, loop0, wall0 = time.process_time(), time.thread_time(), time.perf_counter()
    done = sum(await asyncio.gather(*(worker() for _ in range(workers))))
    figures = (
        time.process_time() - cpu0,
        time.thread_time() - loop0,
        time.perf_counter() - wall0,
    )
    stored = await _complete_replies(services) - before
    if done != turns or stored != turns:
        raise RuntimeError(f"{turns} turns sent, {done} finished, {stored} stored complete")
    return figures


async def _complete_replies(services: AppServices) -> int:
    async with services.sessions() as session:
        stmt = select(func.count()).where(
            Message.role == MessageRole.ASSISTANT, Message.status == MessageStatus.COMPLETE
        )
        return int((await session.execute(stmt)).scalar_one())


def _conversation(
    path: str, app: FastAPI, services: AppServices, user: AuthenticatedUser, token: str
) -> Conversation:
    headers = {"authorization": f"Bearer {token}", "host": "bench"}
    if path == "service":
        return lambda turns: _service_conversation(services, user, turns)
    if path == "ws":
        return lambda turns: _ws_conversation(app, headers, turns)
    if path == "sse":
        return lambda turns: _sse_conversation(app, headers, turns)
    if path == "sql":
        return lambda turns: sql_conversation(services.engine, user.id, turns)
    writer = ThreadWriter(services.settings.data_dir / "webui.db")
    return lambda turns: thread_conversation(writer, user.id, turns)


async def _service_conversation(services: AppServices, user: AuthenticatedUser, turns: int) -> int:
    chat_id: str | None = None
    complete = 0
    for _ in range(turns):
        handle = await services.turns.start_turn(
            user.id, TurnRequest(content=CONTENT, chat_id=chat_id, model=MODEL)
        )
        chat_id = handle.chat_id
        async for batch in services.watcher.watch(user.id, handle.turn_id):
            last = batch[-1]
            if type(last) is TurnFinished:
                complete += last.status == "complete"
    return complete


async def _ws_conversation(app: FastAPI, headers: dict[str, str], turns: int) -> int:
    chat_id: str | None = None
    complete = 0
    async with AsgiSocket(app, "/api/ws", headers) as socket:
        for _ in range(turns):
            frame = {"type": "chat.send", "chat_id": chat_id, "content": CONTENT, "model": MODEL}
            await socket.send(frame)
            while True:
                event = await socket.receive()
                if event["type"] == "turn.accepted":
                    chat_id = event["chat_id"]
                elif event["type"] == "turn.finished":
                    complete += event["status"] == "complete"
                    break
                elif event["type"] == "error":
                    raise RuntimeError(f"turn refused: {event}")
    return complete


async def _sse_conversation(app: FastAPI, headers: dict[str, str], turns: int) -> int:
    chat_id: str | None = None
    complete = 0
    async with _client(app, headers) as client:
        for _ in range(turns):
            body = {"chat_id": chat_id, "content": CONTENT, "model": MODEL}
            response = await client.post("/api/turns", json=body)
            response.raise_for_status()
            for line in response.text.splitlines():
                if not line.startswith("data: "):
                    continue
                event = orjson.loads(line[6:])
                if event["type"] == "turn.accepted":
                    chat_id = event["chat_id"]
                elif event["type"] == "turn.finished":
                    complete += event["status"] == "complete"
    return complete


@contextlib.asynccontextmanager
async def _client(app: FastAPI, headers: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://bench", headers=headers
    ) as client:
        yield client


def _table(results: list[Figures], concurrency: int) -> str:
    base = {r.mode: r.cpu_ms_per_turn for r in results if r.path == "sql"}
    lines = [
        "| path | mode | turns | CPU ms/turn | loop ms/turn | turns/s | CPU vs sql |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        mode = "sequential" if r.mode == "seq" else f"{concurrency} at once"
        ratio = f"{r.cpu_ms_per_turn / base[r.mode]:.1f}x" if r.mode in base else "—"
        lines.append(
            f"| {r.path} | {mode} | {r.turns} | {r.cpu_ms_per_turn:.2f} | "
            f"{r.loop_ms_per_turn:.2f} | {r.turns_per_s:,.0f} | {ratio} |"
        )
    return "\n".join(lines)


def run(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    asyncio.run(main(args))


if __name__ == "__main__":
    run()
