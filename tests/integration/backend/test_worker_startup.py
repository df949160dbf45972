"""Start-up with several processes: workers without Redis are refused, and processes that
migrate one fresh database at the same moment take turns instead of colliding."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.databases import TEST_DATABASE_ENV, query_rows
from webui_backend.db.migrate import alembic_config

_CLI = [sys.executable, "-m", "webui_backend.cli"]


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "WEBUI_DATA_DIR": str(data_dir), "WEBUI_REDIS_URL": ""}
    for name in ("WEB_CONCURRENCY", "WEBUI_WORKERS", "WEBUI_DATABASE_URL"):
        env.pop(name, None)
    return {**env, **extra}


@pytest.mark.parametrize(
    ("args", "extra"),
    [([], {"WEB_CONCURRENCY": "2"}), (["--workers", "2"], {}), ([], {"WEBUI_WORKERS": "3"})],
)
def test_several_workers_without_redis_exit_with_a_message_naming_the_setting(
    tmp_path: Path, args: list[str], extra: dict[str, str]
) -> None:
    finished = subprocess.run(
        [*_CLI, "serve", "--host", "127.0.0.1", "--port", "0", *args],
        env=_env(tmp_path / "data", **extra),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 1, finished.stderr
    assert "WEBUI_REDIS_URL is not set" in finished.stderr
    # Refused before anything was touched.
    assert not (tmp_path / "data").exists()


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """A new, empty database of this test on the local PostgreSQL (or the server named by
    WEBUI_TEST_DATABASE_URL), dropped afterwards."""
    server = make_url(
        os.environ.get(TEST_DATABASE_ENV) or "postgresql+asyncpg://postgres@127.0.0.1/postgres"
    )
    name = f"webui_workers_{secrets.token_hex(4)}"

    async def admin(statement: str) -> None:
        engine = create_async_engine(server, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text(statement))
        finally:
            await engine.dispose()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, SQLAlchemyError) as exc:
        message = f"PostgreSQL at {server.render_as_string()} is not usable: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: {message}")
        pytest.skip(message)
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _migrate_at_once(data_dir: Path, database_url: str, processes: int = 4) -> None:
    """Start `processes` migrations of one database together; all must succeed."""
    env = _env(data_dir, WEBUI_DATABASE_URL=database_url)
    started = [
        subprocess.Popen(
            [*_CLI, "migrate"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(processes)
    ]
    outputs = [process.communicate(timeout=180)[0] for process in started]
    for process, output in zip(started, outputs, strict=True):
        assert process.returncode == 0, output
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    versions = query_rows(database_url, "SELECT version_num FROM alembic_version")
    assert [row["version_num"] for row in versions] == [head]


def test_processes_migrating_one_fresh_sqlite_file_at_once_take_turns(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    _migrate_at_once(data_dir, f"sqlite+aiosqlite:///{data_dir / 'webui.db'}")


def test_processes_migrating_one_fresh_postgresql_database_at_once_take_turns(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    _migrate_at_once(tmp_path, fresh_postgres_url)
