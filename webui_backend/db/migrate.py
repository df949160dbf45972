"""Apply Alembic migrations programmatically: at start-up and from `webui-backend migrate`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from webui_backend.db.startup_lock import startup_lock

# The repository root holds alembic.ini and migrations/.
_ROOT = Path(__file__).resolve().parents[2]


def alembic_config() -> Config:
    config = Config(str(_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(_ROOT / "migrations"))
    return config


async def upgrade_to_head(engine: AsyncEngine, *, lock: bool = True) -> None:
    """Bring the schema to the newest revision over the app's own engine.

    With `lock` (the default) this waits for the database's start-up lock, so processes
    starting together migrate one after the other and the later ones find the schema at
    head; pass False only while already holding `startup_lock(engine)`.
    """
    if lock:
        async with startup_lock(engine):
            await upgrade_to_head(engine, lock=False)
        return
    config = alembic_config()

    def _upgrade(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, "heads")

    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)
