"""The long-lived objects of one app instance, built in the lifespan and torn down with it."""

from __future__ import annotations

from dataclasses import dataclass, field

from opentelemetry.trace import NoOpTracer, Tracer
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from webui_backend.db.transactions import Transactions
from webui_backend.services.accounts_wiring import AccountServices
from webui_backend.services.auth import AuthService
from webui_backend.services.background import BackgroundTasks
from webui_backend.services.chat_turn import ChatTurnService
from webui_backend.services.chats import ChatQueryService
from webui_backend.services.model_catalog import ModelCatalog
from webui_backend.services.runner_port import RunnerClient
from webui_backend.services.turn_hub import TurnHub
from webui_backend.services.turn_watch import TurnWatcher
from webui_backend.settings import Settings


@dataclass(slots=True)
class AppServices:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    # The turn's own writes (on SQLite: the writer thread).
    transactions: Transactions
    runner: RunnerClient
    hub: TurnHub
    catalog: ModelCatalog
    tasks: BackgroundTasks
    turns: ChatTurnService
    chats: ChatQueryService
    watcher: TurnWatcher
    auth: AuthService
    # Accounts, sharing and administration services (api/auth, keys, admin, shares).
    accounts: AccountServices
    # Spans of WebSocket frames (observability/tracing.py); a no-op tracer when tracing is off.
    tracer: Tracer = field(default_factory=NoOpTracer)
