"""The tasks API contract (Shannon-compatible submission, plus scripts and commands)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from taskgate.models import Event, Task

MAX_COMMANDS = 50


def _no_nul(value: str) -> str:
    # The kernel takes scripts, argv and the environment as C strings: a NUL cannot get there.
    if "\0" in value:
        raise ValueError("cannot contain a NUL character (\\u0000)")
    return value


Label = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]
Command = Annotated[
    str, StringConstraints(min_length=1, max_length=10_000), AfterValidator(_no_nul)
]
Criterion = Annotated[str, StringConstraints(min_length=1, max_length=2_000)]


class ScriptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    language: Literal["bash", "python"] = Field(description="Interpreter for the script.")
    content: Annotated[str, AfterValidator(_no_nul)] = Field(
        min_length=1, max_length=1_000_000, description="The script itself."
    )


class TaskCreate(BaseModel):
    """Exactly one of ``query``, ``script`` or ``commands`` says what to do."""

    # The service checks it (with a message naming the fields); the document declares it.
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": ["query"], "properties": {"query": {"type": "string"}}},
                {"required": ["script"], "properties": {"script": {"type": "object"}}},
                {"required": ["commands"], "properties": {"commands": {"type": "array"}}},
            ]
        }
    )

    query: str | None = Field(
        default=None, min_length=1, max_length=200_000, description="Text or Markdown for a model."
    )
    script: ScriptIn | None = Field(default=None, description="A script run in the sandbox.")
    project_id: uuid.UUID | None = Field(
        default=None,
        description="The project to create the task in, unless X-Tenant-ID names one; "
        "else the caller's default project.",
    )
    commands: list[Command] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_COMMANDS,
        description="Shell commands run in order in the sandbox; the first failure stops them.",
    )
    session_id: uuid.UUID | None = Field(
        default=None, description="The session to add the task to; a new one when absent."
    )
    context: dict[str, Any] = Field(default_factory=dict, description="Free-form context.")
    mode: str | None = Field(default=None, max_length=32)
    model_tier: str | None = Field(default=None, max_length=32)
    model_override: str | None = Field(default=None, max_length=200)
    provider_override: str | None = Field(default=None, max_length=64)
    max_iterations: int | None = Field(default=None, ge=1, le=100)
    attachments: list[uuid.UUID] = Field(default_factory=list, max_length=50)
    acceptance_criteria: list[Criterion] = Field(default_factory=list, max_length=20)
    timeout_seconds: int | None = Field(
        default=None, ge=1, le=86_400, description="Wall clock for the whole run."
    )
    labels: list[Label] = Field(default_factory=list, max_length=20)
    priority: int = Field(default=0, ge=-10, le=10, description="Higher runs sooner.")


class TaskCreated(BaseModel):
    id: uuid.UUID
    task_id: uuid.UUID  # the same id under Shannon's name
    status: str
    message: str
    session_id: uuid.UUID | None
    created_at: datetime


class Usage(BaseModel):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost_usd: float


class TaskOut(BaseModel):
    id: uuid.UUID
    task_id: uuid.UUID  # the same id under Shannon's name
    kind: Literal["query", "script", "commands"]
    status: str
    query: str | None
    input: dict[str, Any]
    result: str | None
    error: str | None
    error_code: str | None
    session_id: uuid.UUID | None
    parent_task_id: uuid.UUID | None
    context: dict[str, Any]
    mode: str | None
    model_tier: str | None
    model_used: str | None
    provider: str | None
    usage: Usage
    attempts: int
    labels: list[str]
    priority: int
    timeout_seconds: int
    acceptance_criteria: list[str]
    attachments: list[str]
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime

    @classmethod
    def of(cls, task: Task) -> TaskOut:
        return cls(
            id=task.id,
            task_id=task.id,
            kind=task.kind,
            status=task.status,
            query=task.query,
            input=task.input,
            result=task.result,
            error=task.error,
            error_code=task.error_code,
            session_id=task.session_id,
            parent_task_id=task.parent_task_id,
            context=task.context,
            mode=task.mode,
            model_tier=task.model_tier,
            model_used=task.model_used,
            provider=task.provider,
            usage=Usage(
                input_tokens=task.input_tokens,
                output_tokens=task.output_tokens,
                total_tokens=task.input_tokens + task.output_tokens,
                cost_usd=task.cost_usd,
            ),
            attempts=task.attempts,
            labels=task.labels,
            priority=task.priority,
            timeout_seconds=task.timeout_seconds,
            acceptance_criteria=task.acceptance_criteria,
            attachments=task.attachments,
            created_at=task.created_at,
            started_at=task.started_at,
            completed_at=task.completed_at,
            updated_at=task.updated_at,
        )


@dataclass(frozen=True)
class TaskFilters:
    """What ``GET /api/v1/tasks`` narrows the caller's tasks to."""

    statuses: Sequence[str] = ()
    session_id: uuid.UUID | None = None
    label: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    search: str | None = None
    parent_task_id: uuid.UUID | None = None


class TaskList(BaseModel):
    """The Shannon form of a task list, answered when ``offset`` is given."""

    tasks: list[TaskOut]
    total_count: int


class EventOut(BaseModel):
    id: int
    type: str
    created_at: datetime
    task_id: uuid.UUID | None
    run_id: uuid.UUID | None
    job_id: uuid.UUID | None
    execution_id: uuid.UUID | None
    session_id: uuid.UUID | None
    payload: dict[str, Any]

    @classmethod
    def of(cls, event: Event) -> EventOut:
        return cls(
            id=event.id,
            type=event.type,
            created_at=event.created_at,
            task_id=event.task_id,
            run_id=event.run_id,
            job_id=event.job_id,
            execution_id=event.execution_id,
            session_id=event.session_id,
            payload=event.payload,
        )


class EventPage(BaseModel):
    results: list[EventOut]
    next: str | None


class ControlRequest(BaseModel):
    reason: str | None = Field(default=None, max_length=500)


class ControlResult(BaseModel):
    success: bool
    message: str


class ControlState(BaseModel):
    status: str
    is_paused: bool
    is_cancelled: bool
    pause_requested: bool
    cancel_requested: bool
    paused_at: datetime | None
    pause_reason: str | None
    paused_by: str | None
    cancel_reason: str | None
    cancelled_by: str | None
