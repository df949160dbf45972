"""Alembic environment: async engines, batch mode for SQLite.

When the backend migrates at start-up it hands its own connection in through
`config.attributes["connection"]`; the `alembic` command line builds an engine from Settings.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from webui_backend.db.engine import create_engine
from webui_backend.db.models import Base
from webui_backend.settings import Settings

target_metadata = Base.metadata


def _include_object(obj: object, name: str | None, type_: str, *_: object) -> bool:
    # The full-text index (an FTS5 virtual table and its shadow tables on SQLite, expression
    # indexes on PostgreSQL) is managed by hand in its migrations; autogenerate must neither
    # drop nor recreate it.
    return not (type_ in ("table", "index") and name is not None and name.startswith("chat_search"))


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=_include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_new_engine(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_configure_and_run)
            await connection.commit()
    finally:
        await engine.dispose()


def run_offline() -> None:
    url = context.config.get_main_option("sqlalchemy.url") or Settings().database_url
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url") or Settings().database_url
    asyncio.run(_run_with_new_engine(url))


if context.is_offline_mode():
    run_offline()
else:
    run_online()
