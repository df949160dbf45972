"""The engine: every request's lifecycle, over the models of a `ModelRegistry`.

A generation runs inside the task that iterates `Engine.stream()` (the gRPC handler's task):
no extra task or queue per request, because every hop costs microseconds per token. The
per-token loop is `decode.py`; a request's token budget and deadline are `limits.py`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import AsyncGenerator, Callable
from functools import partial

from model_runner.backends.base import Backend, ModelInfo, SequenceParams
from model_runner.domain import (
    Conversation,
    Finished,
    FinishReason,
    GenerationEvent,
    GenerationRequest,
    LoadSnapshot,
    ModelState,
    PromptInput,
    Started,
    TokenizeResult,
    TokenPrompt,
    Usage,
)
from model_runner.engine.admission import Admission
from model_runner.engine.decode import decode, interruptible
from model_runner.engine.limits import stop_time, token_budget
from model_runner.engine.live import LiveRequest
from model_runner.engine.model_entry import ModelEntry, ModelStatus
from model_runner.engine.registry import BackendFactory, ModelRegistry
from model_runner.engine.validation import validate_prompt, validate_request
from model_runner.errors import (
    DeadlineExceeded,
    Draining,
    DuplicateRequest,
    EngineError,
    ModelNotLoaded,
)
from model_runner.metrics import RunnerMetrics
from model_runner.settings import RunnerSettings

logger = logging.getLogger(__name__)

_ABORT_SETTLE_S = 5.0  # after aborting everything, how long drain() waits for streams to end


class Engine:
    """Admission, request registry, abort, deadlines, stop strings and usage around the models
    of a `ModelRegistry` (one backend instance per loaded model).

    `backend` serves the default model (`settings.model`); models registered later get a new
    backend from `backend_factory(name)` (default: `create_backend`).
    """

    def __init__(
        self,
        backend: Backend,
        settings: RunnerSettings,
        *,
        backend_factory: BackendFactory | None = None,
        metrics: RunnerMetrics | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics or RunnerMetrics()
        self._admission = Admission(settings.max_running, settings.max_queued)
        self._live: dict[str, LiveRequest] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._draining = False
        self._started = False
        self._listeners: list[Callable[[], None]] = []
        self._models = ModelRegistry(
            settings,
            backend,
            backend_factory or partial(_create_backend, settings),
            metrics=self._metrics,
            abort_model=self._abort_model,
        )
        self._models.add_listener(self._changed)
        self._metrics.bind(
            self.load_snapshot, self._models.loaded_count, self._models.prefix_cache_bytes
        )

    # -- model lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Loads and warms up the default model. Re-raises the backend's error after recording
        it (GetModelInfo then shows FAILED with the reason)."""
        await self._models.start()
        self._started = True
        self._changed()

    async def close(self) -> None:
        """Aborts whatever is left and unloads every model."""
        self.abort_all()
        await self._models.close()

    @property
    def models(self) -> ModelRegistry:
        """Model management: list, describe, load, unload (the Models service)."""
        return self._models

    @property
    def metrics(self) -> RunnerMetrics:
        return self._metrics

    @property
    def ready(self) -> bool:
        """True when the default model is warm and the runner admits requests (health)."""
        return (
            self._started and not self._draining and self._models.default.state is ModelState.READY
        )

    def add_listener(self, listener: Callable[[], None]) -> None:
        """`listener()` runs after anything that may change `ready`."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()

    def model_status(self) -> ModelStatus:
        """The default model's status."""
        return self._models.status(self._models.default)

    def resolve_model(self, model: str) -> ModelInfo:
        """The loaded model for an id or alias ("" = default). Raises ModelNotFound/NotLoaded."""
        entry = self._models.find(model)
        if entry.info is None or entry.state is not ModelState.READY:
            raise ModelNotLoaded(
                f"model {entry.id!r} is {entry.state.value}, not ready; retry when the "
                "runner's health reports SERVING, or load it with LoadModel"
            )
        return entry.info

    # -- load and shutdown -----------------------------------------------------------------

    def load_snapshot(self) -> LoadSnapshot:
        return LoadSnapshot(
            running=self._admission.running,
            queued=self._admission.queued,
            max_running=self._admission.max_running,
            max_queued=self._admission.max_queued,
            draining=self._draining,
        )

    def abort(self, request_id: str) -> bool:
        """Ends a live request with Finished(ABORTED). False if unknown or already ending."""
        live = self._live.get(request_id)
        return live is not None and live.interrupt(FinishReason.ABORTED)

    def abort_all(self) -> int:
        return sum(live.interrupt(FinishReason.ABORTED) for live in list(self._live.values()))

    def _abort_model(self, model: str) -> int:
        return sum(
            live.interrupt(FinishReason.ABORTED)
            for live in list(self._live.values())
            if live.model == model
        )

    def begin_drain(self) -> None:
        """From now on new requests get `Draining`; live ones go on."""
        self._draining = True
        self._changed()

    async def drain(self, grace_s: float) -> int:
        """Lets live requests finish for up to `grace_s`, then aborts the rest and waits for
        their streams to end. Returns how many were aborted."""
        self.begin_drain()
        try:
            await asyncio.wait_for(self._idle.wait(), grace_s)
            return 0
        except TimeoutError:
            aborted = self.abort_all()
        try:
            await asyncio.wait_for(self._idle.wait(), _ABORT_SETTLE_S)
        except TimeoutError:
            logger.warning("%d streams still open after abort", len(self._live))
        return aborted

    # -- tokenizing --------------------------------------------------------------------------

    async def tokenize(
        self,
        model: str,
        prompt: Conversation | str,
        *,
        add_special_tokens: bool = True,
        timeout_s: float | None = None,
    ) -> tuple[list[int], ModelInfo]:
        """Token ids of a text or a templated conversation, and the model that made them.

        Raises `InvalidArgument`, `ModelNotFound`, `ModelNotLoaded` (or a load's error when the
        model loads on demand)."""
        ids, _, info = await self._tokenize(model, prompt, add_special_tokens, False, timeout_s)
        return ids, info

    async def tokenize_result(
        self,
        model: str,
        prompt: Conversation | str,
        *,
        add_special_tokens: bool = True,
        with_strings: bool = False,
        timeout_s: float | None = None,
    ) -> TokenizeResult:
        ids, strings, info = await self._tokenize(
            model, prompt, add_special_tokens, with_strings, timeout_s
        )
        return TokenizeResult(tuple(ids), tuple(strings), info.max_context_tokens)

    async def _tokenize(
        self,
        model: str,
        prompt: Conversation | str,
        add_special_tokens: bool,
        with_strings: bool,
        timeout_s: float | None,
    ) -> tuple[list[int], list[str], ModelInfo]:
        validate_prompt(prompt, self._settings.max_prompt_chars)
        entry = self._models.find(model)
        await self._models.ensure_loaded(entry, timeout_s)
        self._models.acquire(entry, None)
        try:
            backend, info = _loaded(entry)
            if isinstance(prompt, Conversation):
                ids = await backend.tokenize_conversation(prompt)
            else:
                ids = await backend.tokenize(prompt, add_special_tokens=add_special_tokens)
            strings = backend.token_strings(ids) if with_strings else []
        finally:
            self._models.release(entry)
        return ids, strings, info

    # -- generation --------------------------------------------------------------------------

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[GenerationEvent, None]:
        """Runs one generation: Started, Delta..., exactly one Finished.

        Raises before the first event (nothing has been sent yet): `Draining`,
        `InvalidArgument`, `ModelNotFound`, `ModelNotLoaded`, `DeadlineTooShort`,
        `DuplicateRequest`, `QueueFull`, `DeadlineExceeded` (still queued, or the model still
        loading, at the deadline), or a failed on-demand load's error.
        After Started, failures end the stream with Finished(ERROR/ABORTED/TIME_LIMIT).
        Closing the iterator or cancelling its task frees the sequence and the slot.
        """
        model_label = ""
        try:
            if self._draining:
                raise Draining("the runner is shutting down; send the request to another replica")
            validate_request(request, max_prompt_chars=self._settings.max_prompt_chars)
            entry = self._models.find(request.model)
            model_label = entry.id
            arrival_ns = time.monotonic_ns()
            loop = asyncio.get_running_loop()
            stop_at = stop_time(self._settings, request.timeout_s, loop.time())
            request_id = request.request_id or uuid.uuid4().hex
            self._check_unique(request_id)
            if entry.state is not ModelState.READY:
                left = stop_at - loop.time() if stop_at is not None else None
                await self._models.ensure_loaded(entry, left)
                self._check_unique(request_id)
            ticket = self._admission.enter(request.priority)
        except EngineError as exc:
            self._metrics.request_rejected(model_label, exc)
            raise
        self._models.acquire(entry, request.keep_alive_s)
        backend, info = _loaded(entry)
        task = asyncio.current_task()
        assert task is not None  # an async generator always runs inside a task
        live = LiveRequest(request_id, task, entry.id)
        self._live[request_id] = live
        self._idle.clear()
        timer = loop.call_at(stop_at, live.interrupt, FinishReason.TIME_LIMIT) if stop_at else None
        slot_ns = 0
        started = False
        try:
            prompt_ids = await interruptible(live, self._prompt_ids(backend, request.prompt))
            if prompt_ids is not None:
                max_tokens, limit_reason = token_budget(
                    self._settings, info, len(prompt_ids), request
                )
                await interruptible(live, ticket.wait())
            if live.reason is FinishReason.TIME_LIMIT:
                waited_ms = (time.monotonic_ns() - arrival_ns) // 1_000_000
                raise DeadlineExceeded(
                    f"the deadline passed after {waited_ms} ms waiting for a slot; "
                    "the runner is busy: retry with a longer timeout or on another replica"
                )
            slot_ns = time.monotonic_ns()
            seed = request.sampling.seed
            if seed is None:
                seed = random.getrandbits(63)
            prompt_len = len(prompt_ids) if prompt_ids is not None else 0
            started = True
            yield Started(request_id, info.id, prompt_len, seed)
            if live.reason is not None or prompt_ids is None:
                usage = Usage(prompt_len, 0, 0, slot_ns - arrival_ns, 0, slot_ns - arrival_ns)
                finished = Finished(live.reason or FinishReason.ABORTED, usage)
                self._metrics.request_finished(info.id, finished)
                yield finished
                return
            params = SequenceParams(
                prompt_token_ids=prompt_ids,
                max_tokens=max_tokens,
                sampling=request.sampling,
                seed=seed,
                stop_token_ids=request.stopping.stop_token_ids,
                ignore_eos=request.stopping.ignore_eos,
                skip_special_tokens=request.output.skip_special_tokens,
                prompt=request.prompt,
            )
            events = decode(live, backend, request, params, limit_reason, arrival_ns)
            async for event in events:
                if type(event) is Finished:
                    self._metrics.request_finished(info.id, event)
                yield event
        except EngineError as exc:
            if not started:
                self._metrics.request_rejected(info.id, exc)
            raise
        finally:
            if timer is not None:
                timer.cancel()
            if slot_ns:
                self._admission.record_service_time((time.monotonic_ns() - slot_ns) / 1e6)
            ticket.release()
            del self._live[request_id]
            if not self._live:
                self._idle.set()
            self._models.release(entry)

    def _check_unique(self, request_id: str) -> None:
        if request_id in self._live:
            raise DuplicateRequest(
                f"request_id {request_id!r} is already running; use a new id per request"
            )

    @staticmethod
    async def _prompt_ids(backend: Backend, prompt: PromptInput) -> list[int]:
        if isinstance(prompt, Conversation):
            return await backend.tokenize_conversation(prompt)
        if isinstance(prompt, TokenPrompt):
            return list(prompt.ids)
        return await backend.tokenize(prompt, add_special_tokens=True)


def _loaded(entry: ModelEntry) -> tuple[Backend, ModelInfo]:
    """The backend and info of a READY entry (acquired, so neither can go away)."""
    if entry.backend is None or entry.info is None:
        raise ModelNotLoaded(f"model {entry.id!r} is {entry.state.value}, not ready; retry")
    return entry.backend, entry.info


def _create_backend(settings: RunnerSettings, name: str) -> Backend:
    # Imported late: the backends package imports the engine's settings, not the other way.
    from model_runner.backends import create_backend

    return create_backend(settings, name)
