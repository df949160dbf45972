"""`webui-backend serve | migrate`."""

from __future__ import annotations

import argparse
import asyncio

from model_runner.telemetry.logs import configure_logging, logging_config
from webui_backend.db.engine import create_engine
from webui_backend.db.migrate import upgrade_to_head
from webui_backend.serve import serve as serve_app
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
    serve.add_argument(
        "--workers",
        type=int,
        help="worker processes (WEBUI_WORKERS or WEB_CONCURRENCY; more than one needs "
        "WEBUI_REDIS_URL)",
    )
    sub.add_parser("migrate", help="apply database migrations and exit")
    args = parser.parse_args(argv)

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    if args.command == "migrate":
        _migrate(settings)
        return
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be at least 1")
    serve_app(
        settings,
        host=args.host or settings.host,
        port=args.port if args.port is not None else settings.port,
        workers=args.workers or settings.workers,
        # uvicorn's own lines (start-up, access log) in our format, with the request id.
        log_config=logging_config(settings.log_level, settings.log_format),
    )


if __name__ == "__main__":
    main()
