"""`webui-backend serve | migrate`."""

from __future__ import annotations

import argparse
import asyncio
import logging

import uvicorn

from webui_backend.db.engine import create_engine
from webui_backend.db.migrate import upgrade_to_head
from webui_backend.settings import Settings


def _migrate(settings: Settings) -> None:
    async def run() -> None:
        if settings.is_sqlite:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(settings.database_url)
        try:
            await upgrade_to_head(engine)
        finally:
            await engine.dispose()

    asyncio.run(run())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="webui-backend")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP/WebSocket server")
    serve.add_argument("--host", help="bind address (WEBUI_HOST)")
    serve.add_argument("--port", type=int, help="port (WEBUI_PORT)")
    sub.add_parser("migrate", help="apply database migrations and exit")
    args = parser.parse_args(argv)

    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    if args.command == "migrate":
        _migrate(settings)
        return
    uvicorn.run(
        "webui_backend.main:app_factory",
        factory=True,
        host=args.host or settings.host,
        port=args.port if args.port is not None else settings.port,
        ws_max_size=settings.max_ws_frame_bytes,
        log_level=settings.log_level,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
