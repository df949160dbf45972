"""Tests of an optional extra: skip locally when it is not installed, fail in CI."""

from __future__ import annotations

import importlib.util
import os

import pytest


def require_extra(module: str, extra: str) -> None:
    """Skips the calling test (or module) when `module` is missing, unless `CI=true`, where a
    missing extra is a broken set-up and fails instead."""
    if importlib.util.find_spec(module) is not None:
        return
    message = f"{module} is not installed: run `uv sync --extra {extra}` (or `make setup`)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but the `{extra}` extra is missing; {message}")
    pytest.skip(message)
