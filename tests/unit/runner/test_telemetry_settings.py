"""When tracing is on: off by default, on through the standard OTEL_* variables or the
service's own switch, off again through OTEL_TRACES_EXPORTER=none or OTEL_SDK_DISABLED."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from model_runner.settings import RunnerSettings
from model_runner.telemetry.tracing import build_tracer_provider
from webui_backend.settings import Settings

_OTEL_NAMES = (
    "OTEL_SERVICE_NAME",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_SDK_DISABLED",
    "RUNNER_TRACING_ENABLED",
    "RUNNER_LOG_FORMAT",
    "WEBUI_TRACING_ENABLED",
    "WEBUI_LOG_FORMAT",
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _OTEL_NAMES:
        monkeypatch.delenv(name, raising=False)


def test_off_by_default_with_text_logs() -> None:
    settings = RunnerSettings()
    config = settings.tracing_config("model-runner")
    assert settings.log_format == "text"
    assert not config.enabled
    assert config.service_name == "model-runner"
    assert build_tracer_provider(config) is None


def test_the_standard_endpoint_switches_it_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "runner-eu-1")
    config = RunnerSettings().tracing_config("model-runner")
    assert config.enabled
    assert config.service_name == "runner-eu-1"
    assert config.exporters == ("otlp",)
    assert config.otlp_endpoint == "http://collector:4318/v1/traces"


def test_a_traces_endpoint_is_used_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector:4318/custom")
    config = Settings().tracing_config("webui-backend")
    assert config.enabled
    assert config.otlp_endpoint == "http://collector:4318/custom"


def test_the_exporter_variable_switches_it_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console,otlp")
    config = Settings().tracing_config("webui-backend")
    assert config.enabled
    assert config.exporters == ("console", "otlp")
    assert config.otlp_endpoint == "http://localhost:4318/v1/traces"
    provider = build_tracer_provider(config)
    assert provider is not None
    provider.shutdown()


@pytest.mark.parametrize(
    ("name", "value"), [("OTEL_TRACES_EXPORTER", "none"), ("OTEL_SDK_DISABLED", "true")]
)
def test_none_or_disabled_wins(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv("WEBUI_TRACING_ENABLED", "true")
    monkeypatch.setenv(name, value)
    assert not Settings().tracing_config("webui-backend").enabled


def test_the_services_own_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBUI_TRACING_ENABLED", "true")
    monkeypatch.setenv("WEBUI_LOG_FORMAT", "json")
    monkeypatch.setenv("RUNNER_LOG_FORMAT", "json")
    settings = Settings()
    assert settings.tracing_config("webui-backend").enabled
    assert settings.log_format == "json"
    assert RunnerSettings().log_format == "json"
    assert not RunnerSettings().tracing_config("model-runner").enabled


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OTEL_TRACES_EXPORTER", "jaeger"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("RUNNER_LOG_FORMAT", "xml"),
    ],
)
def test_unsupported_values_are_refused_at_start_up(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        RunnerSettings()
