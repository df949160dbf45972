"""Start a real backend process (uvicorn on a free port) for integration tests."""

from __future__ import annotations

import json
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.support.databases import database_url
from tests.support.processes import ServiceProcess, start_process

_LISTENING = re.compile(r"Uvicorn running on http://([\d.]+):(\d+)")
# The account `start_backend` signs in with (registered on first start: the admin).
TEST_EMAIL = "tester@example.com"
TEST_PASSWORD = "integration-pass-1"


class BackendProcess:
    """A running `webui-backend serve` and where to reach it."""

    def __init__(self, service: ServiceProcess, data_dir: Path, database_url: str) -> None:
        self.service = service
        self.data_dir = data_dir
        # SQLite file under data_dir, or the test session's PostgreSQL database for it.
        self.database_url = database_url
        self.token = ""

    @property
    def auth_headers(self) -> dict[str, str]:
        """`Authorization: Bearer` for the test account (empty when not signed in)."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def sign_in(self, email: str = TEST_EMAIL, password: str = TEST_PASSWORD) -> str:
        """Register the account (the first one is the admin), or log in when it exists;
        keep and return its access token."""
        body = {"email": email, "password": password, "name": "Tester"}
        try:
            answer = _post_json(f"{self.base_url}/api/auth/register", body)
        except urllib.error.HTTPError as exc:
            if exc.code != 409:
                raise
            answer = _post_json(
                f"{self.base_url}/api/auth/login", {"email": email, "password": password}
            )
        self.token = str(answer["access_token"])
        return self.token

    @property
    def base_url(self) -> str:
        return f"http://{self.service.address}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.service.address}/api/ws"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "webui.db"

    def kill(self) -> None:
        self.service.kill()

    def stop(self, timeout_s: float = 15) -> int:
        return self.service.stop(timeout_s)


def start_backend(
    *,
    runner_address: str,
    data_dir: Path,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 60,
    sign_in: bool = True,
) -> BackendProcess:
    """Start `webui-backend serve --port 0` and wait until uvicorn reports its port. With
    `sign_in` the test account is registered (or logged in) and `auth_headers` carry its
    token; pass False to start with no account (first-run flows). The database is the one
    tests.support.databases assigns to `data_dir` (its SQLite file unless
    WEBUI_TEST_DATABASE_URL names PostgreSQL)."""
    env = {"WEBUI_DATABASE_URL": database_url(data_dir), **(env or {})}
    service = start_process(
        [sys.executable, "-m", "webui_backend.cli", "serve", "--host", "127.0.0.1", "--port", "0"],
        listening=_LISTENING,
        env={
            "WEBUI_DATA_DIR": str(data_dir),
            "WEBUI_RUNNER_ADDRESS": runner_address,
            "WEBUI_LOG_LEVEL": "info",
            **env,
        },
        timeout_s=timeout_s,
        name="webui-backend",
    )
    backend = BackendProcess(service, data_dir, env["WEBUI_DATABASE_URL"])
    if sign_in:
        backend.sign_in()
    return backend


@contextmanager
def running_backend(
    *,
    runner_address: str,
    data_dir: Path,
    env: Mapping[str, str] | None = None,
    sign_in: bool = True,
) -> Iterator[BackendProcess]:
    backend = start_backend(
        runner_address=runner_address, data_dir=data_dir, env=env, sign_in=sign_in
    )
    try:
        yield backend
    finally:
        backend.stop()


def _post_json(url: str, body: Mapping[str, object]) -> dict[str, object]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, object] = json.loads(response.read())
    return answer
