"""`RUNNER_LLAMACPP_EXTRA_BUFFERS`: auto leaves llama.cpp's repacked kernels off on CPUs that
advertise AMX (whose kernels crashed a VM with SIGILL), on elsewhere; on/off are obeyed."""

from __future__ import annotations

import pytest

from model_runner.backends import llamacpp_context
from model_runner.backends.llamacpp_context import use_extra_buffers
from model_runner.settings import RunnerSettings


@pytest.mark.parametrize(
    ("flags", "setting", "expected"),
    [
        ({"avx2", "avx512f"}, "auto", True),
        ({"avx512f", "amx_tile", "amx_int8"}, "auto", False),
        (set(), "auto", True),
        ({"amx_tile"}, "on", True),
        ({"avx2"}, "off", False),
    ],
)
def test_extra_buffers_follow_the_setting_and_the_cpu(
    monkeypatch: pytest.MonkeyPatch, flags: set[str], setting: str, expected: bool
) -> None:
    monkeypatch.setattr(llamacpp_context, "cpu_flags", lambda: frozenset(flags))
    assert use_extra_buffers(setting) is expected


def test_the_setting_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER_LLAMACPP_EXTRA_BUFFERS", "sometimes")
    with pytest.raises(ValueError, match="llamacpp_extra_buffers"):
        RunnerSettings()
