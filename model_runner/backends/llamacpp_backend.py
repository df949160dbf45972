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
per batch), `n_gpu_layers` (default 0; -1 = all, with a GPU build). `RUNNER_LLAMACPP_EXTRA_BUFFERS`
(auto/on/off) decides whether llama.cpp repacks weights for its CPU kernels; auto is off on CPUs
that advertise AMX (see `llamacpp_context.use_extra_buffers`). Unset sampling fields take
llama.cpp's defaults (temperature 0.8, top_k 40, top_p 0.95, min_p 0.05).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
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
from model_runner.backends.llamacpp_context import (
    ContextConfig,
    gguf_path,
    open_context,
    quantization,
    use_extra_buffers,
)
from model_runner.domain import Conversation
from model_runner.errors import InvalidArgument, ModelNotFound, ModelNotLoaded, NotSupported
from model_runner.settings import RunnerSettings

_DETOK_CONTEXT_TOKENS = 4  # prompt tokens decoded with the first output, for leading spaces


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
            return gguf_path(spec.source).stat().st_size
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
        path = gguf_path(spec.source)
        options = spec.options
        config = ContextConfig(
            threads=_int_option(options, "threads", self._settings.llamacpp_threads),
            n_ctx=_int_option(
                options, "max_context_tokens", self._settings.llamacpp_context_tokens
            ),
            n_seq_max=_int_option(
                options, "n_seq_max", self._settings.llamacpp_n_seq_max, minimum=1
            ),
            gpu_layers=_int_option(options, "n_gpu_layers", 0, minimum=-1),
            extra_buffers=use_extra_buffers(self._settings.llamacpp_extra_buffers),
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
                executor, partial(open_context, llama_cpp, path, config)
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
            quantization=quantization(model.desc()),
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
                # Set by the decode thread before it delivered the first token.
                cached = sequence.reused if produced == 0 else 0
                produced += len(ids)
                # Pushed one by one: the text is then the same however the tokens were merged.
                text = "".join([detokenizer.push((token_id,)) for token_id in ids])
                yield GenerationStep(tuple(ids), text, eos, cached)
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
