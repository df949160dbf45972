"""The `llamacpp` backend: GGUF models through llama-cpp-python (the optional `llamacpp` extra).

Install: `uv sync --extra llamacpp` (`make setup` installs every extra). There is no wheel on
the package index, so the first install compiles llama.cpp for the local CPU (about 8 minutes on
2 cores); uv caches the built wheel, so later set-ups on the same machine take seconds.

Threading. A llama.cpp context (its KV cache and the logits of the last decode) is not
thread-safe, so one decode thread owns it: `llamacpp_batch.BatchDecoder` runs every decode step
of every sequence. Tokenizing and chat templating read only the vocabulary (immutable after
load, as llama-server also relies on) and run on this backend's single-thread executor, so a
long prompt never stalls the decode loop nor the event loop.

Continuous batching. Up to `n_seq_max` sequences decode together, one `llama_decode` per step
with one `seq_id` per sequence; more requests wait in arrival order for a free slot, and a
sequence joins between two steps. The context holds `max_context_tokens` KV cells split evenly
across the `n_seq_max` slots (llama.cpp rounds each slot up to a multiple of 256), so each
request's context (ModelInfo.max_context_tokens) is that share, at most the training context.
A finished sequence leaves its KV cells as a prefix cache for the next sequence in its slot;
a cancelled one has them removed at the next step.

Options (LoadModel `options` or the settings): `threads` (`RUNNER_LLAMACPP_THREADS`),
`max_context_tokens` (`RUNNER_LLAMACPP_CONTEXT_TOKENS`: KV cells in all; default: the model's
training context, at most 8192), `n_seq_max` (`RUNNER_LLAMACPP_N_SEQ_MAX`, default 4: sequences
per batch), `n_gpu_layers` (default 0; -1 = all, with a GPU build). Unset sampling fields take
llama.cpp's defaults (temperature 0.8, top_k 40, top_p 0.95, min_p 0.05).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from model_runner.backends.base import GenerationStep, ModelInfo, ModelSpec, SequenceParams
from model_runner.backends.detokenizer import IncrementalDetokenizer
from model_runner.backends.llamacpp_batch import (
    ENDED,
    BatchDecoder,
    BatchStats,
    QueueItem,
    poster,
)
from model_runner.backends.llamacpp_batch import Sequence as BatchSequence
from model_runner.domain import Conversation
from model_runner.errors import InvalidArgument, ModelNotFound, ModelNotLoaded, NotSupported
from model_runner.settings import RunnerSettings

_DEFAULT_MAX_CONTEXT = 8192
_MAX_BATCH_TOKENS = 512  # tokens per llama_decode call: prompt chunks fill up to this
_DETOK_CONTEXT_TOKENS = 4  # prompt tokens decoded with the first output, for leading spaces
_QUANT_PREFIXES = ("Q", "IQ", "F16", "F32", "BF16", "TQ")


class _Loaded:
    """Everything that exists only while a model is loaded."""

    def __init__(
        self,
        model: Any,
        context: Any,
        decoder: BatchDecoder,
        llama_cpp: Any,
        executor: ThreadPoolExecutor,
    ) -> None:
        self.model = model  # llama_cpp._internals.LlamaModel: weights and vocabulary
        self.context = context  # llama_cpp._internals.LlamaContext, used by `decoder` only
        self.decoder = decoder
        self.llama_cpp = llama_cpp
        self.executor = executor  # tokenizing and templating
        self.formatters: dict[bool, Any] = {}
        self.template: str | None = model.metadata().get("tokenizer.chat_template")


class LlamaCppBackend:
    """Implements `model_runner.backends.base.Backend`; see the module docstring."""

    def __init__(self, settings: RunnerSettings) -> None:
        self._settings = settings
        self._loaded: _Loaded | None = None

    @property
    def name(self) -> str:
        return "llamacpp"

    def estimate_memory_bytes(self, spec: ModelSpec) -> int | None:
        """The GGUF file's size: llama.cpp maps the weights as they are stored."""
        try:
            return _gguf_path(spec.source).stat().st_size
        except (ModelNotFound, OSError):
            return None

    async def load(self, spec: ModelSpec) -> ModelInfo:
        try:
            import llama_cpp
        except ImportError as exc:
            raise NotSupported(
                "the llamacpp backend needs the optional `llamacpp` extra: run `uv sync "
                "--extra llamacpp` (it compiles llama.cpp once, about 8 minutes on 2 cores)"
            ) from exc
        path = _gguf_path(spec.source)
        options = spec.options
        config = _ContextConfig(
            threads=_int_option(options, "threads", self._settings.llamacpp_threads),
            n_ctx=_int_option(
                options, "max_context_tokens", self._settings.llamacpp_context_tokens
            ),
            n_seq_max=_int_option(
                options, "n_seq_max", self._settings.llamacpp_n_seq_max, minimum=1
            ),
            gpu_layers=_int_option(options, "n_gpu_layers", 0, minimum=-1),
        )
        max_parallel = int(llama_cpp.llama_max_parallel_sequences())
        if config.n_seq_max > max_parallel:
            raise InvalidArgument(
                f"option n_seq_max is {config.n_seq_max}; llama.cpp decodes at most "
                f"{max_parallel} sequences in one batch"
            )
        size = path.stat().st_size
        spec.on_progress(f"loading {path.name}", 0, size)
        executor = ThreadPoolExecutor(1, thread_name_prefix=f"llamacpp-{spec.id}")
        loop = asyncio.get_running_loop()
        try:
            model, context, n_batch = await loop.run_in_executor(
                executor, partial(_open, llama_cpp, path, config)
            )
        except BaseException:
            executor.shutdown(wait=False)
            raise
        decoder = BatchDecoder(llama_cpp, model, context, n_batch=n_batch)
        loaded = _Loaded(model, context, decoder, llama_cpp, executor)
        self._loaded = loaded
        spec.on_progress("ready", size, size)
        per_sequence = int(llama_cpp.llama_n_ctx_seq(context.ctx))
        trained = model.n_ctx_train()
        context_tokens = min(per_sequence, trained) if trained > 0 else per_sequence
        return ModelInfo(
            id=spec.id,
            backend=self.name,
            source=str(path),
            max_context_tokens=context_tokens,
            max_output_tokens=min(self._settings.max_tokens_cap, context_tokens),
            has_chat_template=loaded.template is not None,
            dtype="gguf",
            quantization=_quantization(model.desc()),
            memory_bytes=int(model.size()),
        )

    async def unload(self) -> None:
        loaded, self._loaded = self._loaded, None
        if loaded is None:
            return
        loop = asyncio.get_running_loop()
        # Stopping the decoder waits for the step under way; sequences still live end with an
        # error (the registry drains or aborts them before it unloads).
        await loop.run_in_executor(loaded.executor, loaded.decoder.close)
        await loop.run_in_executor(loaded.executor, _close, loaded)
        loaded.executor.shutdown(wait=True)

    def batch_stats(self) -> BatchStats:
        """Decode-call counters of the loaded model (see `BatchStats`)."""
        return self._require().decoder.stats

    def hold_steps(self, held: bool) -> None:
        """Pauses (True) or resumes decode steps; sequences still join. For tests that need
        sequences to provably share decode calls."""
        self._require().decoder.hold(held)

    def waiting_sequences(self) -> int:
        """Sequences that joined but have not been given a slot yet."""
        return self._require().decoder.waiting()

    # -- tokens --------------------------------------------------------------------------------

    async def tokenize(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        loaded = self._require()
        job = partial(_tokenize, loaded.model, text, add_special_tokens)
        return await asyncio.get_running_loop().run_in_executor(loaded.executor, job)

    async def tokenize_conversation(self, conversation: Conversation) -> list[int]:
        loaded = self._require()
        job = partial(_tokenize_conversation, loaded, conversation)
        return await asyncio.get_running_loop().run_in_executor(loaded.executor, job)

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        model = self._require().model
        return [_piece(model, token_id) for token_id in ids]

    # -- generation ----------------------------------------------------------------------------

    def generate(self, params: SequenceParams) -> AsyncIterator[GenerationStep]:
        return self._generate(self._require(), params)

    async def _generate(
        self, loaded: _Loaded, params: SequenceParams
    ) -> AsyncIterator[GenerationStep]:
        if not params.prompt_token_ids:
            raise InvalidArgument("the prompt has no tokens; send some text")
        queue: asyncio.Queue[QueueItem] = asyncio.Queue()
        sequence = BatchSequence(params, poster(asyncio.get_running_loop(), queue))
        detokenizer = _detokenizer(loaded.model, params)
        loaded.decoder.join(sequence)
        try:
            produced = 0
            while produced < params.max_tokens:
                item = await queue.get()
                ids: list[int] = []
                eos = False
                # Tokens the reader has not taken yet go out as one step (a lagging reader).
                while True:
                    if isinstance(item, BaseException):
                        raise item
                    if item is ENDED:
                        eos = True
                        break
                    assert isinstance(item, int)
                    ids.append(item)
                    if queue.empty() or produced + len(ids) >= params.max_tokens:
                        break
                    item = queue.get_nowait()
                produced += len(ids)
                # Pushed one by one: the text is then the same however the tokens were merged.
                text = "".join([detokenizer.push((token_id,)) for token_id in ids])
                yield GenerationStep(tuple(ids), text, eos)
                if eos:
                    return
        finally:
            # Cancelled or closed early: the decode thread drops the sequence at its next step.
            loaded.decoder.leave(sequence)

    def _require(self) -> _Loaded:
        if self._loaded is None:
            raise ModelNotLoaded("the llama.cpp model is not loaded")
        return self._loaded


# -- jobs run on the executor thread ---------------------------------------------------------


class _ContextConfig:
    __slots__ = ("gpu_layers", "n_ctx", "n_seq_max", "threads")

    def __init__(self, *, threads: int, n_ctx: int, n_seq_max: int, gpu_layers: int) -> None:
        self.threads = threads
        self.n_ctx = n_ctx
        self.n_seq_max = n_seq_max
        self.gpu_layers = gpu_layers


def _open(llama_cpp: Any, path: Path, config: _ContextConfig) -> tuple[Any, Any, int]:
    """Loads the weights and creates a context with `n_seq_max` KV slots; returns the model,
    the context and the batch size."""
    from llama_cpp import _internals
    from llama_cpp._logger import set_verbose

    set_verbose(False)  # llama.cpp's own log lines only for errors, as Llama(verbose=False)
    llama_cpp.llama_backend_init()
    model_params = llama_cpp.llama_model_default_params()
    model_params.n_gpu_layers = 0x7FFFFFFF if config.gpu_layers == -1 else config.gpu_layers
    model: Any = _internals.LlamaModel(path_model=str(path), params=model_params, verbose=False)
    try:
        trained = model.n_ctx_train()
        n_ctx = config.n_ctx or (min(trained, _DEFAULT_MAX_CONTEXT) if trained > 0 else 0)
        n_ctx = n_ctx or _DEFAULT_MAX_CONTEXT
        # llama.cpp gives each sequence n_ctx / n_seq_max cells, rounded up to a multiple of
        # 256; never more than the model was trained for.
        per_sequence = -(-max(n_ctx // config.n_seq_max, 1) // 256) * 256
        if trained > 0:
            per_sequence = min(per_sequence, -(-trained // 256) * 256)
        n_ctx = per_sequence * config.n_seq_max
        n_batch = max(min(n_ctx, _MAX_BATCH_TOKENS), config.n_seq_max)
        cpus = os.cpu_count() or 1
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_seq_max = config.n_seq_max
        params.kv_unified = False  # one KV stream per sequence: n_ctx is split evenly
        params.n_batch = params.n_ubatch = n_batch
        # Batched decoding makes nearly every step a "batch" step, so one default serves both.
        # Leaving a core to the event loop and gRPC measured 60-73 tok/s at 1-16 chats on two
        # shared cores, against 46 falling to 13 with every core (docs/benchmarks.md).
        threads = config.threads or max(cpus - 1, 1)
        params.n_threads = threads
        params.n_threads_batch = threads
        context = _internals.LlamaContext(model=model, params=params, verbose=False)
        _warm_up(llama_cpp, model, context)
    except BaseException:
        model.close()
        raise
    return model, context, n_batch


def _warm_up(llama_cpp: Any, model: Any, context: Any) -> None:
    """One decode step, so the first request does not pay for lazy initialisation."""
    batch = llama_cpp.llama_batch_init(1, 0, 1)
    try:
        batch.n_tokens = 1
        batch.token[0] = max(model.token_bos(), 0)
        batch.pos[0] = 0
        batch.n_seq_id[0] = 1
        batch.seq_id[0][0] = 0
        batch.logits[0] = True
        llama_cpp.llama_decode(context.ctx, batch)
        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(context.ctx), 0, -1, -1)
    finally:
        llama_cpp.llama_batch_free(batch)


def _close(loaded: _Loaded) -> None:
    loaded.context.close()  # the context before its model
    loaded.model.close()


def _tokenize(model: Any, text: str, add_special_tokens: bool) -> list[int]:
    return list(model.tokenize(text.encode(), add_special_tokens, True))


def _tokenize_conversation(loaded: _Loaded, conversation: Conversation) -> list[int]:
    model = loaded.model
    messages: list[Any] = [{"role": m.role, "content": m.content} for m in conversation.messages]
    if loaded.template is None:
        # No template in the GGUF: a plain transcript (reported as has_chat_template = false).
        prompt = "".join(f"{m['role']}: {m['content']}\n" for m in messages)
        if conversation.add_generation_prompt:
            prompt += "assistant: "
        return _tokenize(model, prompt, True)
    formatter = loaded.formatters.get(conversation.add_generation_prompt)
    if formatter is None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        formatter = Jinja2ChatFormatter(
            template=loaded.template,
            eos_token=_piece(model, model.token_eos()),
            bos_token=_piece(model, model.token_bos()),
            add_generation_prompt=conversation.add_generation_prompt,
        )
        loaded.formatters[conversation.add_generation_prompt] = formatter
    try:
        rendered = formatter(messages=messages)
    except Exception as exc:  # the template's raise_exception(), or a Jinja error
        raise InvalidArgument(
            f"the model's chat template rejected the conversation: {exc}"
        ) from exc
    # The template writes BOS itself where the model wants one.
    return _tokenize(model, rendered.prompt, not rendered.added_special)


def _piece(model: Any, token_id: int) -> str:
    if token_id < 0:
        return ""
    return str(model.detokenize([token_id], special=True).decode("utf-8", errors="replace"))


def _detokenizer(model: Any, params: SequenceParams) -> IncrementalDetokenizer:
    special = not params.skip_special_tokens

    def decode(ids: Sequence[int]) -> str:
        return str(model.detokenize(list(ids), special=special).decode("utf-8", errors="replace"))

    context = params.prompt_token_ids[-_DETOK_CONTEXT_TOKENS:]
    return IncrementalDetokenizer(decode, context_ids=context)


# -- helpers -------------------------------------------------------------------------------------


def _gguf_path(source: str | None) -> Path:
    """The GGUF file of a source: the file itself, or the only .gguf in a directory."""
    if not source:
        raise ModelNotFound("the llamacpp backend needs a GGUF file (or its directory) as source")
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(path.glob("*.gguf"))
        if len(files) != 1:
            found = ", ".join(f.name for f in files) or "none"
            raise ModelNotFound(
                f"{path} must hold exactly one .gguf file (found: {found}); name the file"
            )
        path = files[0]
    if not path.is_file():
        raise ModelNotFound(f"no GGUF file at {path}; check the model source")
    return path


def _int_option(options: Any, key: str, default: int, *, minimum: int = 0) -> int:
    raw = options.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise InvalidArgument(f"option {key} is {raw!r}; use a whole number >= {minimum}")
    return value


def _quantization(description: str) -> str:
    """The quantization word of llama.cpp's model description, e.g. "llama 135M Q4_1"."""
    for word in reversed(description.split()):
        if word.upper().startswith(_QUANT_PREFIXES):
            return word
    return ""
