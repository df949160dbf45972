"""Serves the web UI at `/`: the built frontend when present, else the minimal bundled page.

The frontend routes on the client (`/c/<chat id>`, `/admin/users`, `/s/<share id>`), so a
path that names no file and is not under `/api/` gets index.html; the browser's router takes
it from there. Missing assets (a path with a file extension) and unknown API paths stay 404.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Scope

_BUNDLED = Path(__file__).resolve().parents[1] / "static"
_FRONTEND_DIST = Path(__file__).resolve().parents[2] / "frontend" / "dist"


def ui_directory(configured: Path | None) -> Path:
    if configured is not None:
        return configured
    if (_FRONTEND_DIST / "index.html").is_file():
        return _FRONTEND_DIST
    return _BUNDLED


class SinglePageApp(StaticFiles):
    """Static files with a fallback to index.html for client-side routes."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            return await super().get_response(path, scope)
        except HTTPException as exc:
            if exc.status_code != 404 or not is_client_route(path):
                raise
            return await super().get_response("index.html", scope)


def is_client_route(path: str) -> bool:
    """True for `c/abc`, `admin/users`; false for `api/...` and for names with an extension."""
    parts = PurePosixPath(path.lstrip("/")).parts
    return bool(parts) and parts[0] != "api" and "." not in parts[-1]


def mount_ui(app: FastAPI, configured: Path | None) -> None:
    # Mounted last: API routes win, everything else falls through to the UI's files.
    app.mount("/", SinglePageApp(directory=ui_directory(configured), html=True), name="ui")
