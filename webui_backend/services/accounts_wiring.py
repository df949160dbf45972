"""Builds the accounts, sharing and administration services for one app instance."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from model_runner.client import GrpcRunnerClient
from webui_backend.db.transactions import Transactions
from webui_backend.services.admin_models import ModelAccessService
from webui_backend.services.admin_runners import RunnerAdminClient, RunnerAdminService
from webui_backend.services.api_keys import ApiKeyService
from webui_backend.services.audit import AuditService
from webui_backend.services.auth import AuthService
from webui_backend.services.auth_crypto import AccessTokens, Passwords, load_or_create_secret
from webui_backend.services.chat_import_export import ChatImportService
from webui_backend.services.model_catalog import ModelCatalog
from webui_backend.services.principal_cache import PrincipalCache
from webui_backend.services.rate_limit import RateLimiter, SlidingWindowLimiter
from webui_backend.services.redis_rate_limit import RedisRateLimiter
from webui_backend.services.runner_pool import RunnerPool
from webui_backend.services.runner_port import RunnerClient
from webui_backend.services.settings_store import SettingsStore, defaults_from
from webui_backend.services.shares import ShareService
from webui_backend.services.titles import TitleGenerator
from webui_backend.services.usage import UsageService
from webui_backend.services.users import UserAdminService
from webui_backend.settings import Settings


@dataclass(slots=True)
class AccountServices:
    auth: AuthService
    settings_store: SettingsStore
    api_keys: ApiKeyService
    users: UserAdminService
    model_access: ModelAccessService
    runners: RunnerAdminService
    usage: UsageService
    audit: AuditService
    shares: ShareService
    importer: ChatImportService
    titles: TitleGenerator
    # Shared by auth (login, sign-up) and model access (chat messages); closed with the app.
    limiter: RateLimiter


def build_limiter(settings: Settings) -> RateLimiter:
    """Redis when a URL is set (every worker counts against one limit), else in-process."""
    if settings.redis_url:
        return RedisRateLimiter(settings.redis_url, prefix=settings.redis_prefix)
    return SlidingWindowLimiter()


async def build_account_services(
    settings: Settings,
    *,
    sessions: async_sessionmaker[AsyncSession],
    transactions: Transactions,
    runner: RunnerClient,
    catalog: ModelCatalog,
    pool: RunnerPool | None,
) -> AccountServices:
    store = SettingsStore(sessions, defaults_from(settings))
    await store.load()
    limiter = build_limiter(settings)
    secret = load_or_create_secret(settings.jwt_secret, settings.data_dir)
    principals = PrincipalCache()

    def runner_client(address: str) -> RunnerAdminClient:
        return GrpcRunnerClient(
            address,
            default_timeout_s=settings.runner_timeout_s,
            connect_timeout_s=settings.runner_connect_timeout_s,
        )

    return AccountServices(
        auth=AuthService(
            sessions=sessions,
            passwords=Passwords(),
            tokens=AccessTokens(secret, settings.access_token_ttl_s),
            settings_store=store,
            limiter=limiter,
            session_ttl_s=settings.session_ttl_s,
            principals=principals,
        ),
        settings_store=store,
        api_keys=ApiKeyService(sessions, principals),
        users=UserAdminService(sessions, principals),
        model_access=ModelAccessService(
            sessions=sessions, catalog=catalog, settings_store=store, limiter=limiter
        ),
        runners=RunnerAdminService(
            sessions=sessions,
            client_factory=runner_client,
            on_change=pool.set_addresses if pool is not None else None,
        ),
        usage=UsageService(sessions, transactions),
        audit=AuditService(sessions),
        shares=ShareService(sessions, public_url=settings.public_url),
        importer=ChatImportService(sessions),
        titles=TitleGenerator(sessions=sessions, runner=runner, settings_store=store),
        limiter=limiter,
    )
