"""The workflows and executions API contract (Django Automate's bodies)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

TriggerType = Literal["manual", "webhook", "event", "schedule"]
ExecutionStatus = Literal["QUEUED", "RUNNING", "WAITING", "SUCCESS", "FAILED", "CANCELLED"]
StepStatus = Literal["PENDING", "RUNNING", "WAITING", "SUCCESS", "FAILED", "SKIPPED", "CANCELLED"]
Slug = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"^[a-z0-9][a-z0-9_-]*$")
]
SecretName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
]
SecretValue = Annotated[str, StringConstraints(min_length=1, max_length=10_000)]


@dataclass(frozen=True)
class WorkflowFilters:
    """What ``GET /api/v1/workflows`` narrows the caller's workflows to."""

    enabled: bool | None = None
    search: str | None = None
    trigger_type: TriggerType | None = None


@dataclass(frozen=True)
class ExecutionFilters:
    """What ``GET /api/v1/executions`` narrows the caller's executions to."""

    workflow_id: uuid.UUID | None = None
    statuses: Sequence[ExecutionStatus] = ()
    since: datetime | None = None
    until: datetime | None = None


class _ReadOnlyEchoes(BaseModel):
    """Fields a client may echo back from a GET (a read-modify-write PUT); they are ignored."""

    model_config = ConfigDict(extra="forbid")

    id: Any = Field(default=None, exclude=True, description="Read-only; ignored.")
    workflow_version: Any = Field(default=None, exclude=True, description="Read-only; ignored.")
    created_at: Any = Field(default=None, exclude=True, description="Read-only; ignored.")
    updated_at: Any = Field(default=None, exclude=True, description="Read-only; ignored.")
    secret_names: Any = Field(default=None, exclude=True, description="Read-only; ignored.")


class WorkflowCreate(_ReadOnlyEchoes):
    name: str = Field(min_length=1, max_length=200)
    slug: Slug | None = Field(default=None, description="Made from the name when absent.")
    description: str = Field(default="", max_length=10_000)
    enabled: bool = True
    trigger_type: TriggerType = "manual"
    trigger_config: dict[str, Any] = Field(default_factory=dict)
    graph: dict[str, Any] = Field(description="{nodes: [{id, type, config}], edges: [...]}")
    secrets: dict[SecretName, SecretValue] | None = Field(
        default=None,
        description="Write-only values templates reach as {{ secrets.NAME }}; never returned.",
    )


class WorkflowUpdate(_ReadOnlyEchoes):
    """PATCH and PUT alike change only the fields sent (as Django Automate documents PUT)."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    slug: Slug | None = None
    description: str | None = Field(default=None, max_length=10_000)
    enabled: bool | None = None
    trigger_type: TriggerType | None = None
    trigger_config: dict[str, Any] | None = None
    graph: dict[str, Any] | None = None
    secrets: dict[SecretName, SecretValue | None] | None = Field(
        default=None, description="Merged into the stored secrets; null removes one."
    )


class WorkflowSummary(BaseModel):
    id: uuid.UUID
    name: str
    slug: str
    description: str
    enabled: bool
    trigger_type: str
    workflow_version: int
    created_at: datetime
    updated_at: datetime


class WorkflowOut(WorkflowSummary):
    trigger_config: dict[str, Any]
    graph: dict[str, Any]
    secret_names: list[str]


class WorkflowVersionOut(BaseModel):
    id: uuid.UUID
    workflow_id: uuid.UUID
    workflow_version: int
    change: str
    name: str
    slug: str
    description: str
    enabled: bool
    trigger_type: str
    trigger_config: dict[str, Any]
    graph: dict[str, Any]
    created_by: str | None
    created_at: datetime


class DuplicateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    slug: Slug | None = None


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: dict[str, Any] = Field(default_factory=dict, description="What templates see as input.")


class RunAccepted(BaseModel):
    execution_id: uuid.UUID
    trace_id: str | None
    status: ExecutionStatus = "QUEUED"


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    latest_version: bool = Field(
        default=False,
        description="Run the workflow as it is now instead of the version the original pinned.",
    )


class ReplayAccepted(BaseModel):
    execution_id: uuid.UUID
    message: str
    trace_id: str | None


class CancelResult(BaseModel):
    success: bool
    message: str


class StepOut(BaseModel):
    id: uuid.UUID
    node_key: str
    node_type: str
    status: StepStatus
    attempt: int
    input_data: Any
    output_data: Any
    error: str | None
    task_id: uuid.UUID | None
    approval_id: uuid.UUID | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None


class ExecutionOut(BaseModel):
    id: uuid.UUID
    workflow_id: uuid.UUID
    workflow_name: str
    workflow_version: int
    status: ExecutionStatus
    trigger: str
    attempt: int
    trigger_event_id: int | None
    replay_of: uuid.UUID | None
    error_summary: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None


class ExecutionDetail(ExecutionOut):
    input: dict[str, Any]
    context: dict[str, Any]
    trace_id: str | None
    steps: list[StepOut]
