"""Which models exist, who may use them, and with which defaults.

`ModelAccessService` merges the runner's model list with the administrator's `model_config`
rows. It is also the turn policy that `ChatTurnService` is given: it admits a turn (model
enabled and allowed for this user, message rate within the limit) and supplies the model's
default parameters and system prompt.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from model_runner.client import ModelSummary
from webui_backend.db.models import UserRole
from webui_backend.db.models_admin import ModelConfig
from webui_backend.db.repositories import UserRepository
from webui_backend.db.repositories.admin import ModelConfigRepository
from webui_backend.errors import ModelNotFoundError, NotFoundError
from webui_backend.services.audit import record
from webui_backend.services.background import every
from webui_backend.services.model_catalog import ModelCatalog
from webui_backend.services.principal import AuthenticatedUser
from webui_backend.services.rate_limit import RateLimiter
from webui_backend.services.settings_store import SettingsStore
from webui_backend.services.turn_policy import TurnModelSettings

log = logging.getLogger(__name__)

# How long a model's stored policy is reused without reading it again; changes made through
# this process apply at once, those of another worker within this bound.
_POLICY_TTL_S = 5.0
_POLICY_CACHE_MAX = 1024


@dataclass(frozen=True, slots=True)
class ModelView:
    id: str
    display_name: str
    enabled: bool
    # Whether a runner offers it right now (None: the runner could not be asked).
    available: bool | None
    state: str
    is_default: bool
    max_context_tokens: int
    params: dict[str, Any] = field(default_factory=dict)
    system_prompt: str = ""
    allowed_roles: list[str] = field(default_factory=list)
    allowed_user_ids: list[str] = field(default_factory=list)


class ModelAccessService:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        catalog: ModelCatalog,
        settings_store: SettingsStore,
        limiter: RateLimiter,
    ) -> None:
        self._sessions = sessions
        self._catalog = catalog
        self._store = settings_store
        self._limiter = limiter
        # model id -> (monotonic time read, policy or None when the model has no config row)
        self._policies: dict[str, tuple[float, _ModelPolicy | None]] = {}
        self._generation = 0

    async def list_all(self) -> list[ModelView]:
        """Every model a runner offers or an administrator configured."""
        offered = await self._catalog.list()
        async with self._sessions() as session:
            configs = await ModelConfigRepository(session).all()
        return _merge(offered, configs)

    async def list_for_user(self, user_id: str, role: str) -> list[ModelView]:
        """The enabled models this user may use that a runner offers now."""
        return [
            m
            for m in await self.list_all()
            if m.enabled and m.available is not False and _allowed(m, user_id, role)
        ]

    async def update(
        self, actor: AuthenticatedUser, model_id: str, changes: dict[str, Any]
    ) -> ModelView:
        """Store the administrator's settings for `model_id` (known to a runner or not, so a
        model can be configured before it is deployed)."""
        async with self._sessions() as session, session.begin():
            await ModelConfigRepository(session).upsert(model_id, changes)
            record(
                session,
                actor,
                "model.update",
                target_type="model",
                target_id=model_id,
                details={"changes": changes},
            )
        self._generation += 1
        self._policies.pop(model_id, None)
        for view in await self.list_all():
            if view.id == model_id:
                return view
        raise NotFoundError("Model not found.", code="model_not_found")  # pragma: no cover

    async def admit(self, user_id: str, model: str) -> None:
        """The turn policy's gate. Raises RateLimitedError when the user sent too many
        messages in the last minute, and ModelNotFoundError when the model is disabled or not
        allowed for this user (the same error as an unknown model: access is not disclosed)."""
        await self._limiter.check(
            f"chat:{user_id}",
            limit=self._store.current.chat_messages_per_minute,
            what="messages",
        )
        name = model or await self._default_model_id()
        if not name:
            return
        policy = await self._policy(name)
        if policy is None:
            return
        if not policy.enabled:
            raise ModelNotFoundError(f"Unknown model '{name}'.")
        if not policy.allowed_roles and not policy.allowed_user_ids:
            return
        if user_id in policy.allowed_user_ids:
            return
        # Only a restricted model needs the user's current role (read, not cached, so a
        # role change applies to the next turn).
        async with self._sessions() as session:
            user = await UserRepository(session).get(user_id)
        role = user.role.value if user is not None else UserRole.PENDING.value
        if role != UserRole.ADMIN.value and role not in policy.allowed_roles:
            raise ModelNotFoundError(f"Unknown model '{name}'.")

    async def model_settings(self, model: str) -> TurnModelSettings:
        """The administrator's default parameters and system prompt for `model`."""
        name = model or await self._default_model_id()
        policy = await self._policy(name) if name else None
        return policy.settings if policy is not None else _NO_SETTINGS

    async def run(self) -> None:
        """Re-read the cached policies every half TTL (a background task of the app), so a turn
        finds its model's policy cached even when turns are minutes apart, and another worker's
        change still applies within `_POLICY_TTL_S`. Before, the first turn after a quiet spell
        waited for the query (3-7 ms of added time to first token)."""
        await every(
            _POLICY_TTL_S / 2,
            self._refresh_policies,
            log=log,
            failure="could not refresh the model policies",
        )

    async def _refresh_policies(self) -> None:
        if not self._policies:
            return
        generation = self._generation
        now = time.monotonic()
        async with self._sessions() as session:
            configs = await ModelConfigRepository(session).all()
        if generation != self._generation:
            return  # an update landed during the read; the next pass reads again
        for model_id in list(self._policies):
            config = configs.get(model_id)
            self._policies[model_id] = (now, None if config is None else _ModelPolicy.of(config))

    async def _policy(self, model_id: str) -> _ModelPolicy | None:
        """The model's stored configuration, cached: every turn asks for it twice (admit,
        then its settings), and a query costs more CPU than the rest of the policy. `update`
        drops the entry at once; another worker's change is seen within `_POLICY_TTL_S`."""
        now = time.monotonic()
        cached = self._policies.get(model_id)
        if cached is not None and now - cached[0] < _POLICY_TTL_S:
            return cached[1]
        generation = self._generation
        async with self._sessions() as session:
            config = await ModelConfigRepository(session).get(model_id)
        policy = None if config is None else _ModelPolicy.of(config)
        if generation == self._generation:
            # Not when an update landed during the read: the row read may predate it.
            if len(self._policies) >= _POLICY_CACHE_MAX:
                # Any name is asked for before the catalog refuses it: keep memory bounded.
                self._policies.clear()
            self._policies[model_id] = (now, policy)
        return policy

    async def _default_model_id(self) -> str:
        offered = await self._catalog.list()
        for summary in offered or ():
            if summary.is_default:
                return summary.id
        return ""


@dataclass(frozen=True, slots=True)
class _ModelPolicy:
    """What a turn needs from a `model_config` row, detached from the session."""

    enabled: bool
    allowed_roles: frozenset[str]
    allowed_user_ids: frozenset[str]
    settings: TurnModelSettings

    @classmethod
    def of(cls, config: ModelConfig) -> _ModelPolicy:
        return cls(
            enabled=config.enabled,
            allowed_roles=frozenset(config.allowed_roles),
            allowed_user_ids=frozenset(config.allowed_user_ids),
            settings=TurnModelSettings(
                params=dict(config.params), system_prompt=config.system_prompt
            ),
        )


_NO_SETTINGS = TurnModelSettings(params={}, system_prompt="")


def _allowed(view: ModelView, user_id: str, role: str) -> bool:
    if role == UserRole.ADMIN.value:
        return True
    if not view.allowed_roles and not view.allowed_user_ids:
        return True
    return role in view.allowed_roles or user_id in view.allowed_user_ids


def _merge(offered: list[ModelSummary] | None, configs: dict[str, ModelConfig]) -> list[ModelView]:
    views: dict[str, ModelView] = {}
    for summary in offered or ():
        views[summary.id] = _view(summary.id, summary, configs.get(summary.id), offered=True)
    for model_id, config in configs.items():
        if model_id not in views:
            views[model_id] = _view(
                model_id, None, config, offered=None if offered is None else False
            )
    return sorted(views.values(), key=lambda v: (not v.is_default, v.display_name.lower()))


def _view(
    model_id: str,
    summary: ModelSummary | None,
    config: ModelConfig | None,
    *,
    offered: bool | None = None,
) -> ModelView:
    return ModelView(
        id=model_id,
        display_name=(config.display_name if config and config.display_name else model_id),
        enabled=config.enabled if config else True,
        available=offered,
        state=summary.state if summary else "unknown",
        is_default=summary.is_default if summary else False,
        max_context_tokens=summary.max_context_tokens if summary else 0,
        params=dict(config.params) if config else {},
        system_prompt=config.system_prompt if config else "",
        allowed_roles=list(config.allowed_roles) if config else [],
        allowed_user_ids=list(config.allowed_user_ids) if config else [],
    )
