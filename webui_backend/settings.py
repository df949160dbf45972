"""Typed configuration of the backend, read once at start-up from the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from model_runner.telemetry.settings import TelemetrySettings

_PLACEHOLDER_SECRETS = {"secret", "changeme", "change-me", "jwt-secret", "test", "dev", "please"}


class Settings(BaseSettings, TelemetrySettings):
    """Every knob of the backend. Environment variables use the `WEBUI_` prefix, except the
    standard OTEL_* variables of `TelemetrySettings` (logs and traces: docs/operations.md)."""

    model_config = SettingsConfigDict(
        env_prefix="WEBUI_", env_file=".env", extra="ignore", populate_by_name=True
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    data_dir: Path = Path("data")
    # Empty = a SQLite file under data_dir; or PostgreSQL through asyncpg:
    # postgresql+asyncpg://user:password@host:5432/db (docs/operations.md).
    database_url: str = ""
    sqlite_busy_timeout_ms: int = Field(default=5000, ge=0)
    # PostgreSQL connections per worker process: kept open, and extra ones opened under load
    # and closed again. workers x (pool size + overflow) must fit the server's max_connections.
    database_pool_size: int = Field(default=10, ge=1)
    database_max_overflow: int = Field(default=20, ge=0)
    # Apply Alembic migrations when the app starts (under the database's start-up lock).
    # `webui-backend serve` migrates once before starting its workers and turns it off for them.
    migrate_on_startup: bool = True

    # One runner, a comma-separated list, or a `dns:///name:port` resolved by gRPC; turns go
    # to a healthy runner that has the model, the least loaded first.
    runner_address: str = "127.0.0.1:50051"
    runner_health_interval_s: float = Field(default=5.0, gt=0)
    # Upper bound on one generation call; the runner ends the stream with TIME_LIMIT at this point.
    runner_timeout_s: float = Field(default=600.0, gt=0)
    runner_connect_timeout_s: float = Field(default=5.0, gt=0)
    # All of a worker's turns share one ChatSession call per runner (far fewer gRPC messages);
    # false = one ChatStream call per turn, for an L7 proxy that must balance every turn.
    runner_sessions: bool = True
    default_model: str = ""

    max_message_chars: int = Field(default=100_000, ge=1)
    max_ws_frame_bytes: int = Field(default=1_048_576, ge=1024)
    max_request_body_bytes: int = Field(default=2_097_152, ge=1024)
    # Deltas kept per live turn for late subscribers (bounded; resume across reconnects is
    # built on this).
    turn_buffer_events: int = Field(default=4096, ge=16)
    subscriber_queue_events: int = Field(default=1024, ge=16)
    # Streams that survive (docs/websocket.md). Partial replies are written to the database
    # every `checkpoint_interval_s` (one UPDATE per reply per interval): the text at risk in a
    # crash. A finished turn's events stay replayable from the hub for `hub_retain_finished_s`,
    # then from the stored reply.
    checkpoint_interval_s: float = Field(default=1.0, gt=0, le=60)
    hub_retain_finished_s: float = Field(default=300.0, ge=1)
    # Several workers: a Redis URL selects the Redis hub (resume and stop on any worker) and
    # rate limits counted in Redis (one limit for all workers); empty = both in-process (one
    # worker). `redis_prefix` namespaces the keys.
    redis_url: str = ""
    redis_prefix: str = "webui:"
    # Worker processes of `webui-backend serve` (WEBUI_WORKERS, else the conventional
    # WEB_CONCURRENCY); more than one requires `redis_url` (docs/operations.md).
    workers: int = Field(
        default=1, ge=1, le=64, validation_alias=AliasChoices("WEBUI_WORKERS", "WEB_CONCURRENCY")
    )
    # uvicorn's supervisor pings each worker; one that does not answer within this many
    # seconds is killed and replaced. A new worker answers only once its imports are done,
    # which takes seconds on a busy host, hence more than uvicorn's default of 5.
    worker_healthcheck_timeout_s: int = Field(default=30, ge=1)
    # Each worker refreshes a heartbeat in Redis this often; it expires after three misses,
    # and then the worker's live replies count as orphans.
    worker_heartbeat_s: float = Field(default=2.0, gt=0, le=60)
    # Every `orphan_sweep_interval_s` each worker marks `interrupted` the replies left
    # `streaming` by a worker that died: not live on any worker with a fresh heartbeat and not
    # checkpointed for `orphan_grace_s`.
    orphan_sweep_interval_s: float = Field(default=5.0, gt=0)
    orphan_grace_s: float = Field(default=10.0, ge=0)
    # A WebSocket whose client does not read: how long one send may wait before the
    # connection is closed (4008) and its memory released.
    ws_send_timeout_s: float = Field(default=30.0, gt=0)
    # How often an open WebSocket checks that its credentials still admit an active account
    # (disabled, logged out, password changed, back to pending): it is closed (4401/4403)
    # within this, streams and all.
    ws_recheck_interval_s: float = Field(default=15.0, gt=0)

    # Retention (docs/operations.md): chats whose last activity (`chat.updated_at`) is older
    # than `retention_days` are deleted with their messages, archived ones included; 0 = keep
    # forever. Pinned chats stay unless `retention_keep_pinned` is off; a chat with a reply
    # still streaming always stays. One pass every `retention_interval_s`, across all workers
    # and hosts, deleting `retention_batch_size` chats per transaction so no pass holds
    # SQLite's write lock for long. On SQLite a full VACUUM (one time, converting the file to
    # incremental auto-vacuum) runs only when at least `retention_vacuum_min_free_mb` and a
    # quarter of the file are free; 0 = never.
    retention_days: int = Field(default=0, ge=0)
    retention_keep_pinned: bool = True
    retention_interval_s: float = Field(default=3600.0, ge=10)
    retention_batch_size: int = Field(default=100, ge=1, le=10_000)
    retention_vacuum_min_free_mb: int = Field(default=64, ge=0)

    # Accounts. An empty `jwt_secret` is generated once and kept in `data_dir/jwt_secret`;
    # in production a configured secret must be real (no placeholder, at least 32 characters).
    environment: Literal["development", "production"] = "development"
    jwt_secret: str = ""
    access_token_ttl_s: int = Field(default=3600, ge=60)
    session_ttl_s: int = Field(default=14 * 86400, ge=300)
    # Set when the UI is served over HTTPS (cookies then carry the Secure flag).
    cookie_secure: bool = False
    # Base URL for share links; empty = relative links (`/s/<id>`).
    public_url: str = ""
    # First-boot defaults of the settings an administrator changes at runtime (kept in the DB).
    signup_enabled: bool = True
    default_role: Literal["pending", "user"] = "pending"
    # Per minute; 0 = unlimited.
    chat_messages_per_minute: int = Field(default=30, ge=0)
    login_attempts_per_account_per_minute: int = Field(default=10, ge=0)
    login_attempts_per_address_per_minute: int = Field(default=30, ge=0)
    # Ask the model for a short title after the first exchange (off the request path).
    title_generation: bool = True

    static_dir: Path | None = None
    log_level: str = "info"

    @model_validator(mode="after")
    def _default_database_url(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.data_dir / 'webui.db'}"
        return self

    @model_validator(mode="after")
    def _refuse_placeholder_secret(self) -> Settings:
        secret = self.jwt_secret
        if self.environment == "production" and secret:
            lowered = secret.lower()
            placeholder = lowered in _PLACEHOLDER_SECRETS or lowered.startswith(
                ("change", "replace", "your-", "example")
            )
            if placeholder or len(secret) < 32:
                raise ValueError(
                    "WEBUI_JWT_SECRET is a placeholder or shorter than 32 characters; set a "
                    "random secret or leave it empty to generate one under WEBUI_DATA_DIR."
                )
        return self

    @property
    def runner_addresses(self) -> list[str]:
        return [a.strip() for a in self.runner_address.split(",") if a.strip()]

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
