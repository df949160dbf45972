"""End-to-end: the built UI in Debian's chromium (Playwright) against a real backend and a
real runner with the fake backend. The browser tests live in frontend/e2e/; this wrapper
starts the processes, runs them, and fails with their output when any fails.

Needs `frontend/node_modules` and `frontend/dist` (`make frontend`) and `/usr/bin/chromium`
(`make setup` installs it with apt when run as root). Without them the test is skipped with
the reason, except under CI=true, where it fails instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.backend_process import BackendProcess, running_backend
from tests.support.runner_process import running_runner

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
FRONTEND = ROOT / "frontend"
CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not (FRONTEND / "node_modules" / "@playwright" / "test").is_dir():
        return "frontend/node_modules is missing: run `make frontend`"
    if not (FRONTEND / "dist" / "index.html").is_file():
        return "frontend/dist is not built: run `make frontend`"
    if not CHROMIUM.is_file():
        return f"{CHROMIUM} is missing: `apt-get install chromium` (make setup does it as root)"
    return None


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendProcess]:
    reason = _missing()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"e2e prerequisites missing under CI: {reason}")
        pytest.skip(reason)
    with (
        running_runner() as runner,
        running_backend(
            runner_address=runner.address,
            data_dir=tmp_path_factory.mktemp("e2e-data"),
            env={"WEBUI_STATIC_DIR": str(FRONTEND / "dist")},
            # The browser registers the first account (the admin) itself.
            sign_in=False,
        ) as backend,
    ):
        yield backend


@pytest.mark.timeout(600)
def test_browser_suite(backend: BackendProcess, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "E2E_BASE_URL": backend.base_url,
        "E2E_OUTPUT_DIR": str(tmp_path / "playwright"),
        "CHROMIUM_PATH": str(CHROMIUM),
    }
    result = subprocess.run(
        ["npx", "--no-install", "playwright", "test"],
        cwd=FRONTEND,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=540,
        check=False,
    )
    print(result.stdout)
    assert result.returncode == 0, "browser tests failed:\n" + result.stdout[-12000:]
