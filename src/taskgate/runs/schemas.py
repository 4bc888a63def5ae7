"""The runs, run logs and jobs API contract."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RunStatus = Literal[
    "QUEUED", "RUNNING", "PAUSED", "WAITING_APPROVAL", "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"
]
LogLevel = Literal["debug", "info", "warning", "error"]


@dataclass(frozen=True)
class RunFilters:
    """What ``GET /api/v1/runs`` narrows the caller's runs to."""

    task_id: uuid.UUID | None = None
    job_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    parent_run_id: uuid.UUID | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class RunLogFilters:
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class JobFilters:
    task_id: uuid.UUID | None = None
    run_id: uuid.UUID | None = None
    status: str | None = None


class RunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    task_id: uuid.UUID | None
    session_id: uuid.UUID | None
    parent_run_id: uuid.UUID | None
    name: str
    kind: str
    status: str
    attempt: int
    node_id: str | None
    usage: dict[str, Any]
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None
    created_at: datetime
    updated_at: datetime


class RunDetail(RunOut):
    transcript: dict[str, Any]


class RunCreate(BaseModel):
    """A run a client performed on its own and reports here."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    task_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    parent_run_id: uuid.UUID | None = None
    status: RunStatus = "RUNNING"


class RunLogIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    level: LogLevel = "info"
    message: str = Field(min_length=1, max_length=20_000)
    data: dict[str, Any] | None = None


class RunLogsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entries: list[RunLogIn] = Field(min_length=1, max_length=100)


class RunLogOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    run_id: uuid.UUID
    level: str
    message: str
    data: dict[str, Any]
    created_at: datetime


class RunLogsAppended(BaseModel):
    appended: int


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    task_id: uuid.UUID
    run_id: uuid.UUID | None
    kind: str
    status: str
    input: dict[str, Any]
    exit_code: int | None
    output_excerpt: str | None
    output_truncated: bool
    output_bytes: int
    output_path: str | None
    attempts: int
    node_id: str | None
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    created_at: datetime
