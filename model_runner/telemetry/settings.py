"""Log and trace settings, mixed into the backend's `Settings` and the runner's `RunnerSettings`.

Tracing is off unless switched on: by the service's own `tracing_enabled`, or by the standard
variables OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_TRACES_EXPORTER.
OTEL_TRACES_EXPORTER=none or OTEL_SDK_DISABLED=true turn it off whatever else says.
"""

from __future__ import annotations

from pydantic import AliasChoices, BaseModel, Field, field_validator

from model_runner.telemetry.logs import LogFormat
from model_runner.telemetry.tracing import DEFAULT_OTLP_BASE, TracingConfig, parse_exporters


class TelemetrySettings(BaseModel):
    """Log and trace settings, mixed into `Settings` (WEBUI_) and `RunnerSettings` (RUNNER_).

    `log_format` and `tracing_enabled` take the service's prefix; the `otel_*` fields are read
    from the standard OpenTelemetry variables under their own names.
    """

    log_format: LogFormat = "text"
    # Switch tracing on without any OTEL_* variable (exports to OTLP at localhost:4318).
    tracing_enabled: bool = False
    otel_service_name: str = Field(default="", validation_alias="OTEL_SERVICE_NAME")
    otel_traces_exporter: str = Field(default="", validation_alias="OTEL_TRACES_EXPORTER")
    otel_exporter_otlp_endpoint: str = Field(
        default="", validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    otel_exporter_otlp_traces_endpoint: str = Field(
        default="", validation_alias="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    # Only OTLP over HTTP (protobuf) is built in; "grpc" is refused rather than ignored.
    otel_exporter_otlp_protocol: str = Field(
        default="http/protobuf",
        pattern=r"^http/protobuf$",
        validation_alias=AliasChoices(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"
        ),
    )
    otel_sdk_disabled: bool = Field(default=False, validation_alias="OTEL_SDK_DISABLED")

    @field_validator("otel_traces_exporter")
    @classmethod
    def _known_exporters(cls, value: str) -> str:
        parse_exporters(value)
        return value

    def tracing_config(self, default_service_name: str) -> TracingConfig:
        exporters = parse_exporters(self.otel_traces_exporter)
        endpoint = self.otel_exporter_otlp_traces_endpoint
        if not endpoint:
            base = self.otel_exporter_otlp_endpoint or DEFAULT_OTLP_BASE
            endpoint = base.rstrip("/") + "/v1/traces"
        switched_on = (
            self.tracing_enabled
            or bool(exporters)
            or bool(self.otel_exporter_otlp_endpoint or self.otel_exporter_otlp_traces_endpoint)
        )
        if "none" in exporters or self.otel_sdk_disabled:
            switched_on = False
        return TracingConfig(
            enabled=switched_on,
            service_name=self.otel_service_name or default_service_name,
            exporters=tuple(e for e in exporters if e != "none") or ("otlp",),
            otlp_endpoint=endpoint,
        )
