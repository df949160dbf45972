"""The UI mount: client-side routes get index.html; API paths and missing assets stay 404."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from webui_backend.api.ui import is_client_route, mount_ui


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("c/abc", True),
        ("admin/users", True),
        ("s/share-1", True),
        ("api/nope", False),
        ("assets/app.js", False),
        ("favicon.ico", False),
        ("", False),
    ],
)
def test_is_client_route(path: str, expected: bool) -> None:
    assert is_client_route(path) is expected


async def test_client_routes_serve_index_html(tmp_path: Path) -> None:
    ui = tmp_path / "ui"
    (ui / "assets").mkdir(parents=True)
    (ui / "index.html").write_text("<!doctype html><title>app</title>", encoding="utf-8")
    (ui / "assets" / "app.js").write_text("console.log(1)", encoding="utf-8")
    app = FastAPI()

    @app.get("/api/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    mount_ui(app, ui)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ui") as client:
        for path in ("/", "/c/some-chat", "/admin/users"):
            response = await client.get(path)
            assert response.status_code == 200, path
            assert "<title>app</title>" in response.text
        assert (await client.get("/api/ping")).json() == {"ok": True}
        assert (await client.get("/assets/app.js")).text == "console.log(1)"
        assert (await client.get("/assets/missing.js")).status_code == 404
        missing_api = await client.get("/api/no-such-endpoint")
        assert missing_api.status_code == 404
        assert "<title>app</title>" not in missing_api.text
