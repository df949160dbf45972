"""docker-compose.yaml is valid and agrees with the settings the services actually read.

No Docker engine runs on our machines, but the compose client validates a file without one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from model_runner.settings import RunnerSettings
from webui_backend.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def _load() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def test_compose_client_accepts_the_file() -> None:
    command = _compose_command()
    if command is None:
        if os.environ.get("CI"):
            pytest.fail("no docker compose client on the CI machine (.ci/run installs one)")
        pytest.skip("no docker compose client here; CI installs one")
    result = subprocess.run(
        [*command, "-f", str(COMPOSE), "--env-file", str(ENV_EXAMPLE), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr


def test_every_service_has_a_health_check_and_a_restart_policy() -> None:
    services = _load()["services"]
    assert set(services) == {"postgres", "redis", "runner", "backend"}
    for name, service in services.items():
        assert "healthcheck" in service, name
        assert service.get("restart") == "unless-stopped", name


def test_backend_waits_for_healthy_storage_and_keeps_state_in_volumes() -> None:
    data = _load()
    backend = data["services"]["backend"]
    assert backend["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert backend["depends_on"]["redis"]["condition"] == "service_healthy"
    declared = set(data["volumes"])
    for name in ("postgres", "runner", "backend"):
        mounts = {v.split(":")[0] for v in data["services"][name]["volumes"]}
        assert mounts <= declared, name


def _env_names(service: dict[str, Any]) -> set[str]:
    env = service.get("environment", {})
    return set(env) if isinstance(env, dict) else {item.split("=")[0] for item in env}


@pytest.mark.parametrize(
    ("service", "prefix", "fields"),
    [
        ("backend", "WEBUI_", set(Settings.model_fields)),
        ("runner", "RUNNER_", set(RunnerSettings.model_fields)),
    ],
)
def test_environment_names_exist_in_the_settings(
    service: str, prefix: str, fields: set[str]
) -> None:
    names = {n for n in _env_names(_load()["services"][service]) if n.startswith(prefix)}
    unknown = {n for n in names if n.removeprefix(prefix).lower() not in fields}
    assert not unknown, f"{service} sets variables its settings do not read: {sorted(unknown)}"
