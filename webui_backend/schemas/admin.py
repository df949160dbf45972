"""REST bodies for `/api/admin`: users, models, runners, settings, usage, audit."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["admin", "user", "pending"]


class AdminUserOut(BaseModel):
    id: str
    email: str
    name: str
    role: Role
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None


class AdminUserList(BaseModel):
    items: list[AdminUserOut]
    total: int


class AdminUserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    disabled: bool | None = None


class ModelParams(BaseModel):
    """Default generation parameters; a request's own values win."""

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    stop: list[str] | None = Field(default=None, max_length=16)
    seed: int | None = None


class ModelOut(BaseModel):
    id: str
    display_name: str
    enabled: bool
    available: bool | None = Field(
        description="Whether a runner offers it now; null when no runner could be asked."
    )
    state: str
    is_default: bool
    max_context_tokens: int
    params: dict[str, Any]
    system_prompt: str


class UserModelList(BaseModel):
    items: list[ModelOut]


class AdminModelOut(ModelOut):
    allowed_roles: list[str]
    allowed_user_ids: list[str]


class AdminModelList(BaseModel):
    items: list[AdminModelOut]


class AdminModelPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    display_name: str | None = Field(default=None, max_length=200)
    params: ModelParams | None = None
    system_prompt: str | None = Field(default=None, max_length=100_000)
    allowed_roles: list[Literal["admin", "user"]] | None = Field(default=None, max_length=2)
    allowed_user_ids: list[str] | None = Field(default=None, max_length=10_000)


class RunnerModelOut(BaseModel):
    id: str
    backend: str
    state: str
    max_context_tokens: int
    is_default: bool


class RunnerLoadOut(BaseModel):
    running: int
    queued: int
    max_running: int
    max_queued: int
    draining: bool


class RunnerOut(BaseModel):
    id: str
    name: str
    address: str
    healthy: bool
    models: list[RunnerModelOut]
    load: RunnerLoadOut | None
    error: str | None


class RunnerList(BaseModel):
    items: list[RunnerOut]


class RunnerCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str = Field(min_length=3, max_length=300, examples=["127.0.0.1:50051"])
    name: str = Field(default="", max_length=100)


class RunnerModelAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200)


class RunnerLoadResult(BaseModel):
    model: str
    state: str


class RunnerUnloadResult(BaseModel):
    model: str
    aborted_requests: int


class SettingsOut(BaseModel):
    signup_enabled: bool
    default_role: Literal["pending", "user"]
    chat_messages_per_minute: int
    login_attempts_per_account_per_minute: int
    login_attempts_per_address_per_minute: int
    title_generation: bool


class SettingsPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signup_enabled: bool | None = None
    default_role: Literal["pending", "user"] | None = None
    chat_messages_per_minute: int | None = Field(default=None, ge=0, le=10_000)
    login_attempts_per_account_per_minute: int | None = Field(default=None, ge=0, le=10_000)
    login_attempts_per_address_per_minute: int | None = Field(default=None, ge=0, le=10_000)
    title_generation: bool | None = None


class UsageRowOut(BaseModel):
    day: date
    user_id: str
    email: str
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int


class UsageOut(BaseModel):
    start: date
    end: date
    items: list[UsageRowOut]


class AuditEntryOut(BaseModel):
    id: str
    actor_id: str | None
    actor_email: str
    action: str
    target_type: str
    target_id: str
    details: dict[str, Any]
    created_at: datetime


class AuditList(BaseModel):
    items: list[AuditEntryOut]
    next_before: datetime | None


class RetentionPassOut(BaseModel):
    started_at: datetime
    finished_at: datetime
    # Chats last active before this instant were due.
    cutoff: datetime
    chats_deleted: int
    messages_deleted: int
    # "none", "incremental" or "full" (SQLite); "autovacuum" (PostgreSQL); "failed".
    vacuum: str
    # SQLite only: bytes cut from the database file, and its size afterwards.
    bytes_reclaimed: int | None
    file_bytes: int | None


class RetentionOut(BaseModel):
    """The WEBUI_RETENTION_* settings in effect and the newest pass of any worker."""

    enabled: bool
    days: int
    keep_pinned: bool
    interval_s: float
    batch_size: int
    last_pass: RetentionPassOut | None
