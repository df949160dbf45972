"""Integration fixtures: a real runner process and a real backend process on free ports."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.backend_process import BackendProcess, running_backend
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


def rows(db_path: Path, sql: str, *params: object) -> list[sqlite3.Row]:
    """Read the backend's SQLite file directly, as an operator would."""
    with sqlite3.connect(db_path) as conn:
        conn.row_factory = sqlite3.Row
        return list(conn.execute(sql, params))
