"""Opening a GGUF model with llama.cpp: the model file, the context's KV layout and threads,
and what the model's description says about its quantization (see llamacpp_backend)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from model_runner.backends.cpu_flags import cpu_flags
from model_runner.errors import ModelNotFound

_DEFAULT_MAX_CONTEXT = 8192
_MAX_BATCH_TOKENS = 512  # tokens per llama_decode call: prompt chunks fill up to this
_QUANT_PREFIXES = ("Q", "IQ", "F16", "F32", "BF16", "TQ")


class ContextConfig:
    __slots__ = ("extra_buffers", "gpu_layers", "n_ctx", "n_seq_max", "threads")

    def __init__(
        self,
        *,
        threads: int,
        n_ctx: int,
        n_seq_max: int,
        gpu_layers: int,
        extra_buffers: bool = True,
    ) -> None:
        self.threads = threads
        self.n_ctx = n_ctx
        self.n_seq_max = n_seq_max
        self.gpu_layers = gpu_layers
        self.extra_buffers = extra_buffers


def use_extra_buffers(setting: str) -> bool:
    """Whether llama.cpp may repack weights for its CPU kernels (`llamacpp_extra_buffers`).

    `auto` is off where the CPU advertises AMX: on a 2-core cloud VM that lists `amx_tile`
    (and whose kernel grants the AMX permission), llama.cpp's AMX kernels died with SIGILL at
    `tileloadd` on the first batch of more than one token of the default Q4_1 model, which
    kills the runner. Without extra buffers the same model runs on the AVX-512 kernels.
    """
    if setting == "auto":
        return "amx_tile" not in cpu_flags()
    return setting == "on"


def open_context(llama_cpp: Any, path: Path, config: ContextConfig) -> tuple[Any, Any, int]:
    """Loads the weights and creates a context with `n_seq_max` KV slots; returns the model,
    the context and the batch size."""
    from llama_cpp import _internals
    from llama_cpp._logger import set_verbose

    set_verbose(False)  # llama.cpp's own log lines only for errors, as Llama(verbose=False)
    llama_cpp.llama_backend_init()
    model_params = llama_cpp.llama_model_default_params()
    model_params.n_gpu_layers = 0x7FFFFFFF if config.gpu_layers == -1 else config.gpu_layers
    model_params.use_extra_bufts = config.extra_buffers
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


def gguf_path(source: str | None) -> Path:
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


def quantization(description: str) -> str:
    """The quantization word of llama.cpp's model description, e.g. "llama 135M Q4_1"."""
    for word in reversed(description.split()):
        if word.upper().startswith(_QUANT_PREFIXES):
            return word
    return ""
