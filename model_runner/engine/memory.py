"""Whether one more model fits: a memory budget and a cap on loaded models.

With `RUNNER_MEMORY_BUDGET_MB` set, the runner accounts for what its loaded models report
(`ModelInfo.memory_bytes`) and refuses a load that would exceed the budget; this is the setting to
use on a GPU, where host memory says nothing. Without it, a load is refused when its estimate
exceeds 90% of the host's available memory (`MemAvailable`) at that moment.
`RUNNER_MAX_LOADED_MODELS` (0 = no cap) limits how many models are loaded at once.

Estimates come from the backend when it offers `estimate_memory_bytes(spec)` (an optional
addition to the Backend protocol), else from the size of the weight files at the source, else
they are 0 (a hub id or URL: nothing to measure before loading).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from model_runner.backends.base import Backend, ModelInfo, ModelSpec
from model_runner.errors import InsufficientResources
from model_runner.settings import RunnerSettings

MIB = 1024 * 1024
_WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".bin", ".pt", ".pth")
_HOST_HEADROOM = 0.9  # leave the OS and the runner itself a tenth of what is available


def source_path(source: str | None) -> Path | None:
    """The local path of a source, or None for a hub id, a URL, or a path that is missing."""
    if not source or "://" in source:
        return None
    path = Path(source).expanduser()
    return path if path.exists() else None


def estimate_memory_bytes(backend: Backend, spec: ModelSpec) -> int:
    """Bytes the model will need once loaded; 0 when nothing can be measured in advance."""
    estimate = getattr(backend, "estimate_memory_bytes", None)
    if callable(estimate):
        value = estimate(spec)
        if isinstance(value, int):
            return value
    path = source_path(spec.source)
    if path is None:
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(
        f.stat().st_size for f in path.rglob("*") if f.is_file() and f.suffix in _WEIGHT_SUFFIXES
    )


def available_host_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), else None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


class MemoryPlan:
    def __init__(self, settings: RunnerSettings) -> None:
        self._budget = settings.memory_budget_mb * MIB
        self._max_models = settings.max_loaded_models

    def refusal(
        self, model: str, needed: int, loaded: Sequence[ModelInfo], reclaimable: int
    ) -> tuple[InsufficientResources, bool] | None:
        """None if the model fits now; else the error and whether unloading idle models (which
        hold `reclaimable` bytes) could make it fit."""
        others = [info for info in loaded if info.id != model]
        if self._max_models and len(others) >= self._max_models:
            return InsufficientResources(
                f"cannot load {model!r}: {len(others)} models are loaded and "
                f"RUNNER_MAX_LOADED_MODELS is {self._max_models}; unload one (UnloadModel) "
                "or raise the limit"
            ), True
        if self._budget:
            used = sum(info.memory_bytes for info in others)
            if used + needed > self._budget:
                return InsufficientResources(
                    f"cannot load {model!r}: it needs about {needed / MIB:.0f} MiB, the loaded "
                    f"models hold {used / MIB:.0f} MiB of the {self._budget / MIB:.0f} MiB "
                    "budget (RUNNER_MEMORY_BUDGET_MB); unload a model or raise the budget"
                ), needed <= self._budget
            return None
        available = available_host_bytes()
        if available is not None and needed > available * _HOST_HEADROOM:
            return InsufficientResources(
                f"cannot load {model!r}: it needs about {needed / MIB:.0f} MiB but only "
                f"{available / MIB:.0f} MiB of host memory is available; unload a model, free "
                "memory, or set RUNNER_MEMORY_BUDGET_MB if the model lives on a GPU"
            ), needed <= (available + reclaimable) * _HOST_HEADROOM
        return None
