"""Inference backends behind one Protocol (`base.Backend`); `create_backend` picks one."""

from __future__ import annotations

from model_runner.backends.base import Backend, GenerationStep, ModelInfo, ModelSpec, SequenceParams
from model_runner.errors import NotSupported
from model_runner.settings import RunnerSettings

__all__ = [
    "Backend",
    "GenerationStep",
    "ModelInfo",
    "ModelSpec",
    "SequenceParams",
    "create_backend",
]


def create_backend(settings: RunnerSettings, name: str | None = None) -> Backend:
    """Builds a backend: `name`, or `settings.backend` when None. A runner builds one per loaded
    model. Raises `NotSupported` for one not built or whose extra is not installed."""
    name = name or settings.backend
    if name == "openai":
        from model_runner.backends.openai_backend import OpenAIBackend

        return OpenAIBackend(settings)
    if name == "transformers":
        from model_runner.backends.transformers_backend import TransformersBackend

        return TransformersBackend(settings)
    if name == "llamacpp":
        from model_runner.backends.llamacpp_backend import LlamaCppBackend

        return LlamaCppBackend(settings)
    if name == "fake":
        # Imported here so that choosing a real backend never imports the others' libraries.
        from model_runner.backends.fake import FakeBackend, FakeBackendConfig

        return FakeBackend(
            FakeBackendConfig(
                tokens_per_second=settings.fake_tokens_per_second,
                reply_tokens=settings.fake_reply_tokens,
                context_tokens=settings.fake_context_tokens,
                max_output_tokens=settings.max_tokens_cap,
                load_seconds=settings.fake_load_seconds,
                step_clock=settings.fake_step_clock,
            )
        )
    raise NotSupported(f"backend {name!r} is not available in this build yet; use --backend fake")
