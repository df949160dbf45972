"""Several model runners behaving as one `RunnerClient`.

Each turn goes to a healthy runner that offers the model, the least loaded first (from the
runners' own load reports). A call the runner refuses before anything streamed (queue full,
unavailable) is retried on the next candidate; once a stream has started it stays where it is.
A runner that fails is taken out of rotation until its health check passes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from model_runner.client import (
    ChatMessage,
    GenerationOptions,
    ModelSummary,
    RunnerBusyError,
    RunnerError,
    RunnerEvent,
    RunnerLoad,
    RunnerUnavailableError,
)
from webui_backend.services.background import every
from webui_backend.services.runner_port import RunnerClient

log = logging.getLogger(__name__)


class PooledRunner(RunnerClient, Protocol):
    """What the pool needs from each runner: the client protocol plus its load report."""

    async def get_load(self) -> RunnerLoad: ...

    async def close(self) -> None: ...


@dataclass
class RunnerEndpoint:
    address: str
    client: PooledRunner
    healthy: bool = True  # optimistic until the first check says otherwise
    models: list[ModelSummary] = field(default_factory=list)
    load: RunnerLoad | None = None

    def offers(self, model: str) -> bool:
        # Before the first successful listing nothing is known: let the runner decide.
        return not model or not self.models or any(m.id == model for m in self.models)

    def busyness(self) -> float:
        if self.load is None:
            return 0.0
        return (self.load.running + self.load.queued) / max(1, self.load.max_running)


class RunnerPool:
    def __init__(
        self,
        addresses: Sequence[str],
        client_factory: Callable[[str], PooledRunner],
        *,
        health_interval_s: float = 5.0,
    ) -> None:
        if not addresses:
            raise ValueError("at least one runner address is required")
        self._factory = client_factory
        self._endpoints = [RunnerEndpoint(a, client_factory(a)) for a in dict.fromkeys(addresses)]
        self._health_interval_s = health_interval_s
        self._rotation = itertools.count()
        self._owners: dict[str, RunnerEndpoint] = {}
        self._monitor: asyncio.Task[None] | None = None

    @property
    def endpoints(self) -> list[RunnerEndpoint]:
        return list(self._endpoints)

    async def start(self) -> None:
        """Check every runner once, then keep checking in the background."""
        await self.refresh()
        self._monitor = asyncio.create_task(self._watch(), name="runner-pool-health")

    async def close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
            self._monitor = None
        for endpoint in self._endpoints:
            await endpoint.client.close()

    async def set_addresses(self, addresses: Sequence[str]) -> None:
        """Replace the set of runners (admin changes); kept ones keep their state."""
        current = {e.address: e for e in self._endpoints}
        wanted = list(dict.fromkeys(addresses))
        if not wanted:
            raise ValueError("at least one runner address is required")
        self._endpoints = [current.get(a) or RunnerEndpoint(a, self._factory(a)) for a in wanted]
        for address, endpoint in current.items():
            if address not in wanted:
                await endpoint.client.close()
        await self.refresh()

    async def refresh(self) -> None:
        await asyncio.gather(*(self._check(e) for e in self._endpoints))

    async def _watch(self) -> None:
        await every(
            self._health_interval_s, self.refresh, log=log, failure="runner health refresh failed"
        )

    async def _check(self, endpoint: RunnerEndpoint) -> None:
        try:
            healthy = await endpoint.client.check_health()
            if healthy:
                endpoint.models = await endpoint.client.list_models()
                endpoint.load = await endpoint.client.get_load()
        except RunnerError as exc:
            log.info("runner %s failed its check: %s", endpoint.address, exc)
            healthy = False
        if healthy != endpoint.healthy:
            log.warning(
                "runner %s is %s", endpoint.address, "back in rotation" if healthy else "out"
            )
        endpoint.healthy = healthy

    def candidates(self, model: str) -> list[RunnerEndpoint]:
        """Healthy runners offering `model`, least loaded first; ties rotate."""
        offering = [e for e in self._endpoints if e.healthy and e.offers(model)]
        if not offering:
            # Nothing known healthy: try everyone that may offer it rather than fail blind.
            offering = [e for e in self._endpoints if e.offers(model)] or list(self._endpoints)
        start = next(self._rotation) % len(offering)
        rotated = offering[start:] + offering[:start]
        return sorted(rotated, key=RunnerEndpoint.busyness)

    async def chat_stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str = "",
        request_id: str = "",
        options: GenerationOptions | None = None,
        timeout_s: float | None = None,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> AsyncIterator[RunnerEvent]:
        last_error: RunnerError | None = None
        for endpoint in self.candidates(model):
            stream = endpoint.client.chat_stream(
                messages,
                model=model,
                request_id=request_id,
                options=options,
                timeout_s=timeout_s,
                metadata=metadata,
            )
            try:
                first = await anext(aiter(stream))
            except (RunnerBusyError, RunnerUnavailableError) as exc:
                await _close(stream)
                if isinstance(exc, RunnerUnavailableError):
                    endpoint.healthy = False
                last_error = exc
                log.info("runner %s refused a turn (%s); trying the next", endpoint.address, exc)
                continue
            except BaseException:
                await _close(stream)
                raise
            if request_id:
                self._owners[request_id] = endpoint
            try:
                yield first
                async for event in stream:
                    yield event
            except RunnerUnavailableError:
                endpoint.healthy = False
                raise
            finally:
                await _close(stream)
                if request_id:
                    self._owners.pop(request_id, None)
            return
        assert last_error is not None
        raise last_error

    async def chat_into(
        self,
        messages: Sequence[ChatMessage],
        *,
        on_event: Callable[[RunnerEvent], None],
        model: str = "",
        request_id: str = "",
        options: GenerationOptions | None = None,
        timeout_s: float | None = None,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        """`chat_stream`, pushed (see `GrpcRunnerClient.chat_into`), with the same failover:
        a refusal before the first event tries the next runner."""
        last_error: RunnerError | None = None
        for endpoint in self.candidates(model):
            delivered = False

            def deliver(event: RunnerEvent) -> None:
                nonlocal delivered
                delivered = True
                on_event(event)

            if request_id:
                self._owners[request_id] = endpoint
            try:
                await endpoint.client.chat_into(
                    messages,
                    on_event=deliver,
                    model=model,
                    request_id=request_id,
                    options=options,
                    timeout_s=timeout_s,
                    metadata=metadata,
                )
                return
            except (RunnerBusyError, RunnerUnavailableError) as exc:
                if isinstance(exc, RunnerUnavailableError):
                    endpoint.healthy = False
                if delivered:
                    raise
                last_error = exc
                log.info("runner %s refused a turn (%s); trying the next", endpoint.address, exc)
            finally:
                if request_id:
                    self._owners.pop(request_id, None)
        assert last_error is not None
        raise last_error

    async def abort(self, request_id: str) -> bool:
        owner = self._owners.get(request_id)
        targets = [owner] if owner is not None else self._endpoints
        found = False
        for endpoint in targets:
            with contextlib.suppress(RunnerError):
                found = await endpoint.client.abort(request_id) or found
        return found

    async def list_models(self) -> list[ModelSummary]:
        """Every model some healthy runner offers (first runner's description wins)."""
        seen: dict[str, ModelSummary] = {}
        reachable = False
        for endpoint in self._endpoints:
            if not endpoint.healthy:
                continue
            try:
                models = await endpoint.client.list_models()
            except RunnerError:
                endpoint.healthy = False
                continue
            reachable = True
            endpoint.models = models
            for summary in models:
                seen.setdefault(summary.id, summary)
        if not reachable:
            raise RunnerUnavailableError("no model runner is reachable")
        return list(seen.values())

    async def check_health(self) -> bool:
        results = await asyncio.gather(
            *(e.client.check_health() for e in self._endpoints), return_exceptions=True
        )
        return any(r is True for r in results)

    async def get_load(self) -> RunnerLoad:
        """The sum over healthy runners."""
        loads = [e.load for e in self._endpoints if e.healthy and e.load is not None]
        return RunnerLoad(
            running=sum(x.running for x in loads),
            queued=sum(x.queued for x in loads),
            max_running=sum(x.max_running for x in loads),
            max_queued=sum(x.max_queued for x in loads),
            draining=bool(loads) and all(x.draining for x in loads),
        )


async def _close(stream: AsyncIterator[RunnerEvent]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
