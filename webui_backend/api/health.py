"""Liveness and readiness for process managers and load balancers."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from webui_backend.deps import ServicesDep

router = APIRouter(tags=["health"])

_CHECK_TIMEOUT_S = 3.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up and its event loop answers."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "A dependency is not reachable"}})
async def readyz(services: ServicesDep) -> JSONResponse:
    """Ready to serve turns: the database answers and at least one runner is healthy."""
    database, runner = await asyncio.gather(_database_ok(services), _runner_ok(services))
    ready = database and runner
    return JSONResponse(
        {
            "status": "ready" if ready else "not_ready",
            "checks": {"database": database, "runner": runner},
        },
        status_code=200 if ready else 503,
    )


async def _database_ok(services: ServicesDep) -> bool:
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT_S), services.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:
        return False
    return True


async def _runner_ok(services: ServicesDep) -> bool:
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT_S):
            return await services.runner.check_health()
    except Exception:
        return False
