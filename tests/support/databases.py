"""Which database the backend tests run on.

By default every test's backend keeps a SQLite file in its data directory. When
`WEBUI_TEST_DATABASE_URL` names a PostgreSQL server (`postgresql+asyncpg://user@host:port/db`,
`db` being one to connect to for administration, e.g. `postgres`), the test session creates
`webui_test_<random>` and migrates it to head once, and each data directory gets its own fresh
copy of it, `webui_test_<random>_<n>` (CREATE DATABASE ... TEMPLATE: a few hundred ms, where
migrating an empty database took about two seconds), created on first use. All of them are
dropped when the session ends (tests/conftest.py). Two backends started on the same data
directory (a restart, two workers) share a database, as they would share a SQLite file.

Unreachable PostgreSQL skips the tests locally and fails them under `CI=true`.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from sqlalchemy.engine import URL, make_url

from webui_backend.db.engine import create_engine
from webui_backend.db.migrate import upgrade_to_head

TEST_DATABASE_ENV = "WEBUI_TEST_DATABASE_URL"
T = TypeVar("T")


def _blocking(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync or async test code alike: on its own event
    loop in a helper thread (a test's loop may already be running in this thread)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-db") as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def _connect_args(url: URL) -> dict[str, Any]:
    return {
        "host": url.host or "127.0.0.1",
        "port": url.port or 5432,
        "user": url.username or "postgres",
        "password": url.password,
        "database": url.database or "postgres",
    }


class PostgresTestDatabases:
    """A migrated template database, one copy of it per data directory; drops them all."""

    def __init__(self, server_url: str) -> None:
        self._server = make_url(server_url)
        self._prefix = f"webui_test_{secrets.token_hex(4)}"
        self._by_data_dir: dict[Path, str] = {}
        self._created: list[str] = []
        self._lock = threading.Lock()

    def create_template(self) -> None:
        """Create and migrate the session's template database. Raises OSError (or asyncpg's
        error) when the server cannot be reached."""
        self._admin(f'CREATE DATABASE "{self._prefix}"')
        self._created.append(self._prefix)

        async def migrate() -> None:
            engine = create_engine(self._url(self._prefix))
            try:
                await upgrade_to_head(engine)
            finally:
                # A template must have no open connection when it is copied.
                await engine.dispose()

        _blocking(migrate)

    def url_for(self, data_dir: Path) -> str:
        """The SQLAlchemy URL of `data_dir`'s database, created (empty) on first use."""
        key = data_dir.resolve()
        with self._lock:
            name = self._by_data_dir.get(key)
            if name is None:
                name = f"{self._prefix}_{len(self._by_data_dir) + 1}"
                self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{self._prefix}"')
                self._created.append(name)
                self._by_data_dir[key] = name
        return self._url(name)

    def drop_all(self) -> None:
        """Drop every database of the session. Each DROP DATABASE waits for a checkpoint
        (most of a second); run side by side, the drops share them."""
        with self._lock:
            names, self._created = self._created, []
            self._by_data_dir.clear()
        clones = [n for n in names if n != self._prefix]

        async def drop(name: str) -> None:
            conn = await asyncpg.connect(**_connect_args(self._server), timeout=10)
            try:
                # FORCE: a backend a test killed may not have closed its connections yet.
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()

        async def drop_batches() -> None:
            # In batches: the server's connection slots are shared with other test runs.
            for start in range(0, len(clones), 16):
                await asyncio.gather(*(drop(n) for n in clones[start : start + 16]))
            if self._prefix in names:
                await drop(self._prefix)

        _blocking(drop_batches)

    def _url(self, database: str) -> str:
        return self._server.set(database=database).render_as_string(hide_password=False)

    def _admin(self, statement: str) -> None:
        async def run() -> None:
            conn = await asyncpg.connect(**_connect_args(self._server), timeout=10)
            try:
                await conn.execute(statement)
            finally:
                await conn.close()

        _blocking(run)


_active: PostgresTestDatabases | None = None


@contextmanager
def backend_databases() -> Iterator[None]:
    """For the whole test session: in PostgreSQL mode check the server, let `database_url`
    hand out databases, and drop them at the end. Skips (fails under CI=true) when the
    server named by WEBUI_TEST_DATABASE_URL cannot be reached."""
    global _active
    server_url = os.environ.get(TEST_DATABASE_ENV, "")
    if not server_url:
        yield
        return
    if not server_url.startswith("postgresql"):
        pytest.fail(f"{TEST_DATABASE_ENV} must name PostgreSQL (postgresql+asyncpg://...)")
    databases = PostgresTestDatabases(server_url)
    try:
        databases.create_template()
    except (OSError, asyncpg.PostgresError) as exc:
        databases.drop_all()
        message = f"PostgreSQL from {TEST_DATABASE_ENV} is not usable: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: {message}")
        pytest.skip(message)
    _active = databases
    try:
        yield
    finally:
        _active = None
        databases.drop_all()


def database_url(data_dir: Path) -> str:
    """The URL a backend on `data_dir` uses: its own PostgreSQL database in PostgreSQL mode,
    else the SQLite file the backend creates by default."""
    if _active is not None:
        return _active.url_for(data_dir)
    return f"sqlite+aiosqlite:///{data_dir / 'webui.db'}"


def is_postgresql(url: str) -> bool:
    return url.startswith("postgresql")


def query_rows(url: str, sql: str, *params: object) -> list[dict[str, Any]]:
    """Run one query (`?` placeholders) against a backend's database, as an operator would,
    outside the app: stdlib sqlite3 on the SQLite file, asyncpg on PostgreSQL."""
    if not is_postgresql(url):
        with sqlite3.connect(make_url(url).database or "") as conn:
            conn.row_factory = sqlite3.Row
            return [dict(row) for row in conn.execute(sql, params)]

    async def fetch() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(**_connect_args(make_url(url)), timeout=10)
        try:
            return [dict(r) for r in await conn.fetch(_numbered(sql), *params)]
        finally:
            await conn.close()

    return _blocking(fetch)


def _numbered(sql: str) -> str:
    """`?` placeholders as asyncpg's `$1, $2, ...` (none inside quoted literals)."""
    pieces = sql.split("'")
    count = 0
    for i in range(0, len(pieces), 2):
        parts = pieces[i].split("?")
        out = parts[0]
        for part in parts[1:]:
            count += 1
            out += f"${count}{part}"
        pieces[i] = out
    return "'".join(pieces)
