"""Model runners known to this backend: registered by address, kept in the `runner` table.

`WEBUI_RUNNER_ADDRESS` seeds the table on first boot; the first registered runner is the one
chat turns use. Health, loaded models and load/unload go through the runner's gRPC client.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from model_runner.client import (
    LoadProgressEvent,
    ModelSummary,
    RunnerError,
    RunnerLoad,
    RunnerModelNotFoundError,
)
from webui_backend.db.models_admin import RunnerRecord
from webui_backend.db.repositories.admin import RunnerRepository
from webui_backend.errors import AppError, ConflictError, InvalidInputError, NotFoundError
from webui_backend.services.audit import record
from webui_backend.services.principal import AuthenticatedUser
from webui_backend.services.runner_errors import describe_runner_error

# host:port, [v6]:port, or a unix: / dns: target as gRPC understands them.
_ADDRESS = re.compile(r"^(unix:.+|dns:.+|\[[0-9a-fA-F:]+\]:\d{1,5}|[A-Za-z0-9.\-_]+:\d{1,5})$")


class RunnerAdminClient(Protocol):
    async def check_health(self) -> bool: ...

    async def list_models(self) -> list[ModelSummary]: ...

    async def get_load(self) -> RunnerLoad: ...

    def load_model(self, model: str) -> AsyncIterator[LoadProgressEvent]: ...

    async def unload_model(self, model: str, *, drain_timeout_s: float = 0.0) -> int: ...

    async def close(self) -> None: ...


RunnerClientFactory = Callable[[str], RunnerAdminClient]
# Called with the full address list after a runner is registered or removed (the pool).
AddressesChanged = Callable[[list[str]], Awaitable[None]]


class RunnerCallFailedError(AppError):
    code = "runner_error"
    status_code = 502


@dataclass(frozen=True, slots=True)
class RunnerStatus:
    id: str
    name: str
    address: str
    healthy: bool
    models: list[ModelSummary]
    load: RunnerLoad | None
    error: str | None


async def ensure_runner_registry(
    sessions: async_sessionmaker[AsyncSession], default_addresses: Sequence[str]
) -> list[str]:
    """Seed the table with the environment's addresses on first boot; return the registered
    addresses (what the runner pool serves turns from)."""
    async with sessions() as session, session.begin():
        runners = RunnerRepository(session)
        existing = await runners.list()
        if existing:
            return [r.address for r in existing]
        for i, address in enumerate(dict.fromkeys(default_addresses)):
            await runners.add(name="default" if i == 0 else f"runner-{i + 1}", address=address)
        return list(dict.fromkeys(default_addresses))


class RunnerAdminService:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        client_factory: RunnerClientFactory,
        on_change: AddressesChanged | None = None,
        probe_timeout_s: float = 5.0,
        load_timeout_s: float = 600.0,
    ) -> None:
        self._sessions = sessions
        self._factory = client_factory
        self._on_change = on_change
        self._timeout = probe_timeout_s
        self._load_timeout = load_timeout_s

    async def list(self) -> list[RunnerStatus]:
        async with self._sessions() as session:
            rows = await RunnerRepository(session).list()
        return list(await asyncio.gather(*(self._probe(r) for r in rows)))

    async def get(self, runner_id: str) -> RunnerStatus:
        return await self._probe(await self._row(runner_id))

    async def register(self, actor: AuthenticatedUser, *, name: str, address: str) -> RunnerStatus:
        address = address.strip()
        if not _ADDRESS.match(address):
            raise InvalidInputError(
                "address must look like host:port (or a unix:/dns: gRPC target).",
                code="invalid_address",
            )
        async with self._sessions() as session, session.begin():
            runners = RunnerRepository(session)
            if await runners.get_by_address(address) is not None:
                raise ConflictError("This runner is registered already.", code="runner_exists")
            row = await runners.add(name=name.strip() or address, address=address)
            record(
                session,
                actor,
                "runner.register",
                target_type="runner",
                target_id=row.id,
                details={"address": address},
            )
        await self._changed()
        return await self._probe(row)

    async def remove(self, actor: AuthenticatedUser, runner_id: str) -> None:
        async with self._sessions() as session, session.begin():
            runners = RunnerRepository(session)
            row = await runners.get(runner_id)
            if row is None:
                raise NotFoundError("Runner not found.", code="runner_not_found")
            if len(await runners.list()) <= 1:
                raise ConflictError(
                    "The last runner cannot be removed; register another first.",
                    code="last_runner",
                )
            await runners.delete(runner_id)
            record(
                session,
                actor,
                "runner.remove",
                target_type="runner",
                target_id=runner_id,
                details={"address": row.address},
            )
        await self._changed()

    async def _changed(self) -> None:
        if self._on_change is None:
            return
        async with self._sessions() as session:
            addresses = [r.address for r in await RunnerRepository(session).list()]
        await self._on_change(addresses)

    async def load_model(self, actor: AuthenticatedUser, runner_id: str, model: str) -> str:
        """Load `model` on the runner and wait until it is ready; returns its final state."""
        row = await self._row(runner_id)
        client = self._factory(row.address)
        state = "unknown"
        try:
            async with asyncio.timeout(self._load_timeout):
                async for progress in client.load_model(model):
                    state = progress.state
        except RunnerError as exc:
            raise _runner_failure(exc) from exc
        except TimeoutError as exc:
            raise RunnerCallFailedError(
                "The model did not finish loading in time; it may still be loading.",
                code="runner_timeout",
            ) from exc
        finally:
            await client.close()
        await self._audit(actor, "runner.load_model", runner_id, {"model": model, "state": state})
        return state

    async def unload_model(self, actor: AuthenticatedUser, runner_id: str, model: str) -> int:
        """Unload `model`; returns how many running requests were aborted."""
        row = await self._row(runner_id)
        client = self._factory(row.address)
        try:
            aborted = await client.unload_model(model)
        except RunnerError as exc:
            raise _runner_failure(exc) from exc
        finally:
            await client.close()
        await self._audit(actor, "runner.unload_model", runner_id, {"model": model})
        return aborted

    async def _audit(
        self, actor: AuthenticatedUser, action: str, runner_id: str, details: dict[str, Any]
    ) -> None:
        async with self._sessions() as session, session.begin():
            record(
                session, actor, action, target_type="runner", target_id=runner_id, details=details
            )

    async def _row(self, runner_id: str) -> RunnerRecord:
        async with self._sessions() as session:
            row = await RunnerRepository(session).get(runner_id)
        if row is None:
            raise NotFoundError("Runner not found.", code="runner_not_found")
        return row

    async def _probe(self, row: RunnerRecord) -> RunnerStatus:
        client = self._factory(row.address)
        models: Sequence[ModelSummary] = []
        load: RunnerLoad | None = None
        error: str | None = None
        healthy = False
        try:
            async with asyncio.timeout(self._timeout):
                healthy = await client.check_health()
                if healthy:
                    models = await client.list_models()
                    load = await client.get_load()
        except (RunnerError, TimeoutError) as exc:
            error = str(exc) or "The runner did not answer in time."
        finally:
            await client.close()
        if not healthy and error is None:
            error = "The runner is not reachable or not serving."
        return RunnerStatus(
            id=row.id,
            name=row.name,
            address=row.address,
            healthy=healthy,
            models=list(models),
            load=load,
            error=error,
        )


def _runner_failure(exc: RunnerError) -> AppError:
    code, message = describe_runner_error(exc)
    if isinstance(exc, RunnerModelNotFoundError):
        return NotFoundError(message, code="model_not_found")
    return RunnerCallFailedError(message, code=code)
