"""The records of the model registry: one mutable `ModelEntry` per model, and the immutable
views of it that the Models service reports (`ModelStatus`, `LoadUpdate`)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from model_runner.backends.base import Backend, ModelInfo, ModelSpec
from model_runner.domain import ModelState
from model_runner.errors import EngineError


@dataclass(frozen=True, slots=True)
class ModelStatus:
    """A model as ListModels/GetModelInfo report it; `info` is set while it is loaded."""

    id: str
    backend: str
    source: str
    state: ModelState
    state_reason: str
    info: ModelInfo | None
    is_default: bool = True
    keep_alive_s: float = -1.0
    # Wall-clock time (epoch seconds) when keep-alive unloads it; None = pinned or not loaded.
    expires_at: float | None = None
    active_requests: int = 0


@dataclass(frozen=True, slots=True)
class LoadUpdate:
    """One progress message of a load; the last one has state READY and `model` set."""

    state: ModelState
    status: str
    completed_bytes: int = 0
    total_bytes: int = 0
    model: ModelStatus | None = None


class ModelEntry:
    """Mutable lifecycle record of one model; owned by `ModelRegistry`."""

    def __init__(
        self, spec: ModelSpec, backend_name: str, *, is_default: bool, keep_alive_s: float
    ) -> None:
        self.spec = spec
        self.backend_name = backend_name
        self.backend: Backend | None = None
        self.is_default = is_default
        self.keep_alive_s = keep_alive_s
        self.state = ModelState.AVAILABLE
        self.state_reason = ""
        self.info: ModelInfo | None = None
        self.active = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.last_used = time.monotonic()
        self.expiry: asyncio.TimerHandle | None = None
        self.expires_at: float | None = None
        self.load_task: asyncio.Task[None] | None = None
        self.listeners: list[asyncio.Queue[LoadUpdate | BaseException | None]] = []

    @property
    def id(self) -> str:
        return self.spec.id

    def names(self) -> set[str]:
        return {self.spec.id, *(self.info.aliases if self.info else ())}

    def status(self) -> ModelStatus:
        """This model as the Models service reports it, now."""
        info = self.info
        expires_at = self.expires_at
        if self.state is ModelState.READY and self.keep_alive_s >= 0 and self.active:
            # Busy: it cannot expire before its requests end, then keep-alive starts counting.
            expires_at = time.time() + self.keep_alive_s
        return ModelStatus(
            id=self.id,
            backend=self.backend_name,
            source=info.source if info else self.spec.source or "",
            state=self.state,
            state_reason=self.state_reason,
            info=info,
            is_default=self.is_default,
            keep_alive_s=self.keep_alive_s,
            expires_at=expires_at if self.state is ModelState.READY else None,
            active_requests=self.active,
        )


def failure_reason(exc: BaseException) -> str:
    """The `state_reason` of a model whose load raised `exc`."""
    if isinstance(exc, asyncio.CancelledError):
        return "load cancelled (runner stopping)"
    message = exc.message if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
    return f"load failed: {message}"
