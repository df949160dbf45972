"""The models a runner knows, their lifecycle, and Ollama-like keep-alive.

One `ModelEntry` per model id: the runner's default model (from its settings) and every model
registered by LoadModel. An entry is AVAILABLE (known, not in memory), LOADING, READY,
UNLOADING or FAILED (the last load failed; `state_reason` says why). Entries stay known after
an unload so that a later LoadModel, or a request when on-demand loading is on, loads them again.

Keep-alive (Ollama semantics): when the last request on a model ends, the model stays loaded for
its keep-alive (default `RunnerSettings.keep_alive_s`, 5 minutes), then unloads; 0 unloads it right
after the request; negative pins it. A request or LoadModel that names a keep-alive sets it for
the model from then on. The default model is pinned unless configured otherwise, because health
reports it. The timers live in `keep_alive.py`, the entry records in `model_entry.py`.

Loads and unloads are serialized by one lock: two loads at once would both pass the memory check
and then not fit together, and an unload racing a load of the same model has no sane outcome.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

from model_runner.backends.base import Backend, ModelSpec
from model_runner.domain import ModelState
from model_runner.engine.keep_alive import KeepAlive, consume_exception
from model_runner.engine.memory import MemoryPlan, estimate_memory_bytes
from model_runner.engine.model_entry import LoadUpdate, ModelEntry, ModelStatus, failure_reason
from model_runner.errors import (
    DeadlineExceeded,
    EngineError,
    InvalidArgument,
    ModelNotFound,
    ModelNotLoaded,
)
from model_runner.metrics import RunnerMetrics
from model_runner.settings import BACKEND_NAMES, RunnerSettings

__all__ = ["BackendFactory", "LoadUpdate", "ModelEntry", "ModelRegistry", "ModelStatus"]

logger = logging.getLogger(__name__)

BackendFactory = Callable[[str], Backend]
_ABORT_SETTLE_S = 5.0  # after aborting a model's requests, how long an unload waits for them


class ModelRegistry:
    """Knows every model, loads and unloads them one at a time, and runs keep-alive."""

    def __init__(
        self,
        settings: RunnerSettings,
        default_backend: Backend,
        backend_factory: BackendFactory,
        *,
        metrics: RunnerMetrics,
        abort_model: Callable[[str], int],
    ) -> None:
        self._settings = settings
        self._factory = backend_factory
        self._metrics = metrics
        self._abort_model = abort_model
        self._lock = asyncio.Lock()
        self._memory = MemoryPlan(settings)
        self._listeners: list[Callable[[], None]] = []
        self._keep_alive = KeepAlive(self._expire)
        self._started = False
        default = ModelEntry(
            ModelSpec(settings.model, settings.model_source),
            settings.backend,
            is_default=True,
            keep_alive_s=settings.default_model_keep_alive_s,
        )
        default.backend = default_backend
        self._default = default
        self._entries: dict[str, ModelEntry] = {default.id: default}

    # -- lookup ------------------------------------------------------------------------------

    @property
    def default(self) -> ModelEntry:
        return self._default

    def add_listener(self, listener: Callable[[], None]) -> None:
        """`listener()` runs (on the loop) after every state change, e.g. to update health."""
        self._listeners.append(listener)

    def find(self, model: str) -> ModelEntry:
        """The entry for an id or alias ("" = the default model). Raises `ModelNotFound`."""
        if not model:
            return self._default
        entry = self._entries.get(model)
        if entry is not None:
            return entry
        for candidate in self._entries.values():
            if model in candidate.names():
                return candidate
        known = ", ".join(sorted(self._entries))
        raise ModelNotFound(
            f"model {model!r} is not known to this runner; known models: {known} "
            "(ListModels lists them; LoadModel with a source adds one)"
        )

    def status(self, entry: ModelEntry) -> ModelStatus:
        return entry.status()

    def statuses(self, *, loaded_only: bool = False) -> list[ModelStatus]:
        return [
            self.status(entry)
            for entry in self._entries.values()
            if not loaded_only or entry.state is ModelState.READY
        ]

    def loaded_count(self) -> int:
        return sum(entry.state is ModelState.READY for entry in self._entries.values())

    def prefix_cache_bytes(self) -> dict[str, int]:
        """What each loaded model's backend keeps of earlier sequences for reuse, where it
        reports it (`prefix_cache_bytes()`, optional). Read at scrape time, off the loop."""
        found: dict[str, int] = {}
        for model_id, entry in list(self._entries.items()):
            report = getattr(entry.backend, "prefix_cache_bytes", None)
            if entry.state is ModelState.READY and report is not None:
                found[model_id] = int(report())
        return found

    # -- requests ----------------------------------------------------------------------------

    async def ensure_loaded(self, entry: ModelEntry, timeout_s: float | None) -> None:
        """Returns once `entry` is READY, loading it on demand when the settings allow.

        Raises `ModelNotLoaded` when it is not loaded and will not be, `DeadlineExceeded` when
        the load outlasts `timeout_s` (the load itself goes on), or the load's own error.
        """
        if entry.state is ModelState.READY:
            return
        can_load = self._started and self._settings.load_on_demand
        if entry.state is ModelState.LOADING or (can_load and entry.state is ModelState.AVAILABLE):
            task = self._start_load(entry, keep_alive_s=None)
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout_s)
            except TimeoutError:
                raise DeadlineExceeded(
                    f"model {entry.id!r} was still loading when the call's deadline passed; "
                    "retry with a longer timeout (the load goes on)"
                ) from None
        if not _is_ready(entry):  # a helper: mypy would keep the narrowing across the await
            reason = f" ({entry.state_reason})" if entry.state_reason else ""
            hint = "load it with LoadModel" if entry.state is not ModelState.UNLOADING else "retry"
            raise ModelNotLoaded(
                f"model {entry.id!r} is {entry.state.value}{reason}, not ready; {hint}"
            )

    def acquire(self, entry: ModelEntry, keep_alive_s: float | None) -> None:
        """Marks one request as using a READY model; keeps it loaded until `release`."""
        if entry.state is not ModelState.READY:
            raise ModelNotLoaded(f"model {entry.id!r} is {entry.state.value}, not ready; retry")
        entry.active += 1
        entry.idle.clear()
        if keep_alive_s is not None:
            entry.keep_alive_s = keep_alive_s
        self._keep_alive.cancel(entry)

    def release(self, entry: ModelEntry) -> None:
        entry.active -= 1
        entry.last_used = time.monotonic()
        if entry.active == 0:
            entry.idle.set()
            self._keep_alive.schedule(entry)

    async def _expire(self, entry: ModelEntry) -> None:
        async with self._lock:
            # Re-checked under the lock: a request may have arrived since the timer fired.
            if entry.state is ModelState.READY and not entry.active and entry.keep_alive_s >= 0:
                logger.info("keep-alive expired: unloading model %r", entry.id)
                await self._unload_locked(entry, 0.0)

    # -- load ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Loads the default model; from then on other known models may load on demand."""
        self._started = True
        await self._start_load(self._default, keep_alive_s=None)

    def load(
        self,
        model: str,
        *,
        source: str = "",
        backend: str = "",
        keep_alive_s: float | None = None,
        options: dict[str, str] | None = None,
    ) -> AsyncIterator[LoadUpdate]:
        """Registers (if new) and loads a model, yielding progress; the last update is READY.

        Raises before the first update: `InvalidArgument` (bad backend, source clash),
        `ModelNotFound` (unknown id without a source). During the load: the backend's error,
        or `InsufficientResources` when it cannot fit. A caller that stops listening does not
        stop the load.
        """
        entry = self._entry_for_load(model, source, backend, options or {})
        return self._load_updates(entry, keep_alive_s)

    def _entry_for_load(
        self, model: str, source: str, backend: str, options: dict[str, str]
    ) -> ModelEntry:
        if backend and backend not in BACKEND_NAMES:
            raise InvalidArgument(
                f"backend {backend!r} is unknown; use one of {', '.join(BACKEND_NAMES)}"
            )
        if not model:
            return self._default
        try:
            entry = self.find(model)
        except ModelNotFound:
            if not source:
                raise ModelNotFound(
                    f"model {model!r} is not known to this runner; pass its source (a "
                    "directory, GGUF file, hub id or URL) to register and load it"
                ) from None
            entry = ModelEntry(
                ModelSpec(model, source, options),
                backend or self._settings.backend,
                is_default=False,
                keep_alive_s=self._settings.keep_alive_s,
            )
            self._entries[model] = entry
            return entry
        changed = (source and source != entry.spec.source) or (
            backend and backend != entry.backend_name
        )
        if changed or (options and dict(options) != dict(entry.spec.options)):
            if entry.state not in (ModelState.AVAILABLE, ModelState.FAILED):
                raise InvalidArgument(
                    f"model {entry.id!r} is {entry.state.value} from {entry.spec.source!r} "
                    f"with backend {entry.backend_name!r}; unload it first, or register the "
                    "new source under another id"
                )
            entry.spec = ModelSpec(entry.id, source or entry.spec.source, options)
            if backend and backend != entry.backend_name:
                entry.backend_name, entry.backend = backend, None
        return entry

    async def _load_updates(
        self, entry: ModelEntry, keep_alive_s: float | None
    ) -> AsyncIterator[LoadUpdate]:
        if entry.state is ModelState.READY:
            if keep_alive_s is not None:
                entry.keep_alive_s = keep_alive_s
                self._keep_alive.schedule(entry)
            yield LoadUpdate(ModelState.READY, "already loaded", model=self.status(entry))
            return
        queue: asyncio.Queue[LoadUpdate | BaseException | None] = asyncio.Queue()
        entry.listeners.append(queue)
        try:
            self._start_load(entry, keep_alive_s=keep_alive_s)
            while (update := await queue.get()) is not None:
                if isinstance(update, BaseException):
                    raise update
                yield update
        finally:
            entry.listeners.remove(queue)

    def _start_load(self, entry: ModelEntry, *, keep_alive_s: float | None) -> asyncio.Task[None]:
        if entry.load_task is None or entry.load_task.done():
            if keep_alive_s is not None:
                entry.keep_alive_s = keep_alive_s
            entry.load_task = asyncio.create_task(self._load(entry))
            # A load nobody awaits (its caller left) must not log "exception never retrieved".
            entry.load_task.add_done_callback(consume_exception)
        return entry.load_task

    async def _load(self, entry: ModelEntry) -> None:
        try:
            if self._lock.locked():
                self._emit(entry, LoadUpdate(ModelState.LOADING, "waiting for another load"))
            async with self._lock:
                if entry.state is not ModelState.READY:
                    await self._load_locked(entry)
            self._emit(entry, LoadUpdate(ModelState.READY, "ready", model=self.status(entry)))
            self._emit(entry, None)
        except BaseException as exc:
            self._emit(entry, exc)
            raise

    async def _load_locked(self, entry: ModelEntry) -> None:
        entry.state, entry.state_reason = ModelState.LOADING, ""
        self._changed()
        started = time.monotonic()
        try:
            backend = entry.backend or self._factory(entry.backend_name)
            entry.backend = backend
            self._emit(entry, LoadUpdate(ModelState.LOADING, "checking memory"))
            needed = estimate_memory_bytes(backend, entry.spec)
            await self._make_room(entry, needed)

            def progress(status: str, done: int = 0, total: int = 0) -> None:
                self._emit(entry, LoadUpdate(ModelState.LOADING, status, done, total))

            progress("loading weights", 0, needed)
            entry.info = await backend.load(replace(entry.spec, on_progress=progress))
        except BaseException as exc:
            entry.state = ModelState.FAILED
            entry.state_reason = failure_reason(exc)
            entry.info = None
            self._metrics.model_load_failed(entry.id, entry.backend_name)
            self._changed()
            if not isinstance(exc, (EngineError, asyncio.CancelledError)):
                logger.exception("loading model %r failed", entry.id)
            raise
        entry.state = ModelState.READY
        self._metrics.model_loaded(entry.id, entry.backend_name, time.monotonic() - started)
        logger.info("model %r ready in %.2f s", entry.id, time.monotonic() - started)
        self._keep_alive.schedule(entry)
        self._changed()

    async def _make_room(self, entry: ModelEntry, needed: int) -> None:
        """Unloads idle, unpinned models (least recently used first) until `needed` bytes and
        a model slot are free. Raises `InsufficientResources` when that cannot be enough."""
        while True:
            loaded = [e for e in self._entries.values() if e.state is ModelState.READY]
            idle = [e for e in loaded if not e.active and e.keep_alive_s >= 0 and not e.is_default]
            reclaimable = sum(e.info.memory_bytes for e in idle if e.info)
            infos = [e.info for e in loaded if e.info]
            refusal = self._memory.refusal(entry.id, needed, infos, reclaimable)
            if refusal is None:
                return
            error, fixable = refusal
            if not idle or not fixable:
                raise error
            victim = min(idle, key=lambda e: e.last_used)
            self._emit(entry, LoadUpdate(ModelState.LOADING, f"unloading idle model {victim.id}"))
            await self._unload_locked(victim, 0.0)

    # -- unload --------------------------------------------------------------------------------

    async def unload(self, model: str, drain_timeout_s: float) -> int:
        """Unloads a model: its running requests get `drain_timeout_s` to finish, the rest end
        with Finished(ABORTED). Returns how many were aborted; 0 if it was not loaded."""
        entry = self.find(model)
        async with self._lock:
            if entry.state is not ModelState.READY:
                return 0
            return await self._unload_locked(entry, drain_timeout_s)

    async def _unload_locked(self, entry: ModelEntry, drain_timeout_s: float) -> int:
        entry.state, entry.state_reason = ModelState.UNLOADING, ""
        self._keep_alive.cancel(entry)
        self._changed()
        aborted = 0
        if entry.active:
            try:
                await asyncio.wait_for(entry.idle.wait(), drain_timeout_s)
            except TimeoutError:
                aborted = self._abort_model(entry.id)
                try:
                    await asyncio.wait_for(entry.idle.wait(), _ABORT_SETTLE_S)
                except TimeoutError:
                    logger.warning("model %r: %d requests still open", entry.id, entry.active)
        try:
            if entry.backend is not None:
                await entry.backend.unload()
        finally:
            entry.state, entry.info = ModelState.AVAILABLE, None
            self._changed()
        logger.info("model %r unloaded (%d requests aborted)", entry.id, aborted)
        return aborted

    async def close(self) -> None:
        """Unloads every model (their requests must already be aborted) and stops timers."""
        self._started = False
        self._keep_alive.close()
        for entry in self._entries.values():
            if entry.load_task is not None and not entry.load_task.done():
                entry.load_task.cancel()
        async with self._lock:
            for entry in self._entries.values():
                if entry.state is ModelState.READY:
                    await self._unload_locked(entry, 0.0)

    # -- helpers -------------------------------------------------------------------------------

    def _emit(self, entry: ModelEntry, update: LoadUpdate | BaseException | None) -> None:
        for queue in entry.listeners:
            queue.put_nowait(update)

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()


def _is_ready(entry: ModelEntry) -> bool:
    return entry.state is ModelState.READY
