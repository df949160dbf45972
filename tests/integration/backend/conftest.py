"""Integration fixtures: a real runner process and a real backend process on free ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.backend_process import BackendProcess, running_backend
from tests.support.databases import query_rows
from tests.support.runner_process import RunnerProcess, running_runner


@pytest.fixture
def runner() -> Iterator[RunnerProcess]:
    with running_runner(
        "--backend", "fake", "--fake-tokens-per-second", "400", "--fake-reply-tokens", "24"
    ) as process:
        yield process


@pytest.fixture
def backend(runner: RunnerProcess, tmp_path: Path) -> Iterator[BackendProcess]:
    with running_backend(runner_address=runner.address, data_dir=tmp_path / "data") as process:
        yield process


def rows(backend: BackendProcess, sql: str, *params: object) -> list[dict[str, Any]]:
    """Read the backend's database directly, as an operator would: one query with `?`
    placeholders, on SQLite or PostgreSQL alike."""
    return query_rows(backend.database_url, sql, *params)
