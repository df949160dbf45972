"""The models the runner offers, cached briefly so a turn does not cost a ListModels call.

`run()` (a background task of the app) refreshes the list every half TTL, so a turn finds it
fresh even when turns are minutes apart: before, the first turn after a quiet spell waited for
a ListModels round trip (3-7 ms of added time to first token, measured with `bench.gateway`).
"""

from __future__ import annotations

import asyncio
import logging
import time

from model_runner.client import ModelSummary, RunnerError
from webui_backend.errors import ModelNotFoundError
from webui_backend.services.background import every
from webui_backend.services.runner_port import RunnerClient

log = logging.getLogger(__name__)

_Models = list[ModelSummary]  # `list` is a method name inside ModelCatalog


class ModelCatalog:
    def __init__(self, runner: RunnerClient, *, ttl_s: float = 5.0) -> None:
        self._runner = runner
        self._ttl_s = ttl_s
        self._models: list[ModelSummary] | None = None
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def list(self, *, refresh: bool = False) -> list[ModelSummary] | None:
        """The runner's models, or None when the runner cannot be asked right now."""
        fresh = time.monotonic() - self._fetched_at < self._ttl_s
        if not refresh and self._models is not None and fresh:
            return self._models
        try:
            return await self._fetch()
        except RunnerError as exc:
            log.warning("could not list the runner's models: %s", exc)
            return None

    async def run(self) -> None:
        """Keep the list fresh; runs until cancelled."""
        await every(
            self._ttl_s / 2,
            self._refresh,
            log=log,
            failure="background refresh of the runner's models failed; retrying",
        )

    async def _refresh(self) -> None:
        try:
            await self._fetch()
        except RunnerError as exc:  # a turn's own fetch reports it, once per turn
            log.debug("background refresh of the runner's models failed: %s", exc)

    async def _fetch(self) -> _Models:
        async with self._lock:
            models = await self._runner.list_models()
            self._models = models
            self._fetched_at = time.monotonic()
        return models

    async def check(self, name: str) -> None:
        """Raise ModelNotFoundError when the runner is known not to offer `name`.

        An empty name means the runner's default. When the runner cannot be reached the check
        passes: the turn then fails with a clear "runner unavailable" instead.
        """
        if not name:
            return
        models = await self.list()
        if models is None or _offers(models, name):
            return
        models = await self.list(refresh=True)
        if models is None or _offers(models, name):
            return
        offered = ", ".join(m.id for m in models) or "none"
        raise ModelNotFoundError(f"Unknown model '{name}'. Available: {offered}.")


def _offers(models: list[ModelSummary], name: str) -> bool:
    return any(m.id == name for m in models)
