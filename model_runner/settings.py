"""Runner configuration, read once at start-up from `RUNNER_*` variables and CLI flags."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from model_runner.telemetry.settings import TelemetrySettings

BackendName = Literal["fake", "transformers", "llamacpp", "openai"]
BACKEND_NAMES: tuple[str, ...] = ("fake", "transformers", "llamacpp", "openai")


class RunnerSettings(BaseSettings, TelemetrySettings):
    """Everything the runner process needs; built by the CLI and passed down, never global.

    Logs and traces (`TelemetrySettings`): RUNNER_LOG_FORMAT, RUNNER_TRACING_ENABLED and the
    standard OTEL_* variables (docs/operations.md).
    """

    model_config = SettingsConfigDict(env_prefix="RUNNER_", extra="forbid", populate_by_name=True)

    host: str = "127.0.0.1"
    port: int = Field(default=50051, ge=0, le=65535, description="0 = pick a free port")
    backend: BackendName = "fake"
    model: str = Field(default="fake", min_length=1, description="Model id served by default")
    model_source: str | None = Field(
        default=None, description="Directory, GGUF file, hub id or URL; backend-specific"
    )

    max_running: int = Field(default=64, ge=1, description="Sequences generating at once")
    max_queued: int = Field(default=256, ge=0, description="Requests waiting for a slot")
    max_tokens_cap: int = Field(default=4096, ge=1, description="Cap on tokens per request")
    grace_seconds: float = Field(default=10.0, ge=0, description="Drain time on SIGTERM")
    # A call whose deadline leaves less than this cannot produce a first token: refuse it.
    min_deadline_ms: int = Field(default=100, ge=0)
    # Finish with TIME_LIMIT this long before the call's deadline so Finished still gets out.
    deadline_margin_ms: int = Field(default=50, ge=0)
    # Above the largest prompt we accept, so that an oversized prompt reaches our validation and
    # gets INVALID_ARGUMENT with a reason instead of gRPC's RESOURCE_EXHAUSTED (which reads as
    # "busy, retry" to clients).
    max_message_bytes: int = Field(default=128 * 1024 * 1024, ge=4 * 1024 * 1024)
    max_prompt_chars: int = Field(
        default=1_000_000, ge=1, description="Longest prompt (all messages) in characters"
    )

    # Model management (Ollama-like). Keep-alive: seconds a model stays loaded after its last
    # request; 0 = unload right after, negative = pinned.
    keep_alive_s: float = Field(default=300.0, description="Default keep-alive of models")
    default_model_keep_alive_s: float = Field(
        default=-1.0, description="Keep-alive of the default model; negative = pinned"
    )
    load_on_demand: bool = Field(
        default=True, description="A request for a known, unloaded model loads it"
    )
    max_loaded_models: int = Field(default=0, ge=0, description="0 = no cap")
    memory_budget_mb: int = Field(
        default=0, ge=0, description="0 = refuse loads beyond 90% of available host memory"
    )

    # The openai backend (forwards to an OpenAI-compatible server).
    openai_api_key: SecretStr = Field(
        default=SecretStr(""), description="Bearer token for the upstream; empty = none"
    )
    openai_timeout_s: float = Field(default=600.0, gt=0, description="Upstream read timeout")
    openai_context_tokens: int = Field(
        default=4096, ge=16, description="Context size when the upstream does not report one"
    )

    # The llamacpp backend.
    llamacpp_threads: int = Field(
        default=0, ge=0, description="0 = one per core minus one (the loop and gRPC keep one)"
    )
    llamacpp_context_tokens: int = Field(
        default=0,
        ge=0,
        description="KV cache tokens, split across llamacpp_n_seq_max sequences; 0 = the "
        "model's training context, capped at 8192",
    )
    llamacpp_n_seq_max: int = Field(
        default=4, ge=1, le=256, description="Sequences llama.cpp decodes in one batch"
    )
    llamacpp_extra_buffers: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="llama.cpp's repacked weight layouts (AVX2/AVX-512 repack, AMX); auto = "
        "off on CPUs that advertise AMX (its kernels crashed a VM that advertises AMX with an "
        "illegal instruction), on elsewhere",
    )

    # The transformers backend (and model files of any local backend).
    threads: int = Field(
        default=0, ge=0, description="CPU threads for torch; 0 = auto (one per core, less one)"
    )
    device: str = Field(
        default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto = CUDA if present"
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        default="auto",
        description="auto = bfloat16 on GPUs (float16 without bf16) and on CPUs with AMX or "
        "AVX512_BF16, else float32",
    )
    cache_dir: Path | None = Field(
        default=None, description="Converted models; default $XDG_CACHE_HOME/model-runner"
    )
    max_batch_size: int = Field(
        default=32, ge=1, description="Sequences decoded in one forward pass (transformers)"
    )
    prefix_cache_mb: int = Field(
        default=256,
        ge=0,
        description="Keys and values of recent sequences kept so that a chat's next turn or a "
        "shared system prompt is not computed again (transformers); 0 = off",
    )

    fake_tokens_per_second: float = Field(default=0.0, ge=0, description="0 = full speed")
    fake_step_clock: Literal["shared", "per_stream"] = Field(
        default="shared",
        description="shared: paced streams step together, as in a batching engine; "
        "per_stream: every stream on its own timer",
    )
    fake_reply_tokens: int = Field(default=64, ge=1)
    fake_context_tokens: int = Field(default=4096, ge=16)
    fake_load_seconds: float = Field(default=0.0, ge=0, description="Simulated load time")

    metrics_port: int | None = Field(default=None, ge=0, le=65535)
