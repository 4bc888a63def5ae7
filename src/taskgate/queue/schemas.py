"""The queue overview API contract (``GET /api/v1/queue``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from taskgate.schedules.schemas import ScheduleQueueSummary


class QueueDepth(BaseModel):
    queued: int = Field(description="Jobs waiting, ready or not.")
    ready: int = Field(description="Queued jobs whose run_after has come.")
    scheduled: int = Field(description="Queued jobs waiting for a later run_after (or backoff).")
    leased: int = Field(description="Jobs a worker is running.")
    done: int | None = Field(default=None, description="Only with include_finished=true.")
    failed: int | None = Field(default=None, description="Only with include_finished=true.")
    dead: int | None = Field(default=None, description="Only with include_finished=true.")
    cancelled: int | None = Field(default=None, description="Only with include_finished=true.")


class PriorityDepth(BaseModel):
    priority: int
    queued: int
    ready: int
    leased: int


class WorkerCapacity(BaseModel):
    alive: int = Field(description="Workers that heartbeated within three lease periods.")
    slots: int = Field(description="Jobs the alive workers can run at once.")
    busy: int = Field(description="Jobs they are running now.")


class WorkerNode(BaseModel):
    id: str
    host: str
    pid: int
    status: str = Field(description="active, draining or stopped.")
    kinds: list[str]
    concurrency: int
    running: int
    capabilities: dict[str, Any]
    started_at: datetime
    heartbeat_at: datetime


class ProjectWork(BaseModel):
    project_id: uuid.UUID
    tasks_by_status: dict[str, int] = Field(
        description="The project's tasks not yet finished, by status."
    )


class QueueOverview(BaseModel):
    depth: QueueDepth
    by_priority: list[PriorityDepth] = Field(description="Live jobs per priority, highest first.")
    oldest_ready_age_seconds: float | None = Field(
        description="How long the oldest ready job has waited for a worker; null when none."
    )
    capacity: WorkerCapacity
    workers: list[WorkerNode] | None = Field(
        default=None, description="The alive workers; administrators only."
    )
    project: ProjectWork | None = Field(
        default=None, description="The request's project: its unfinished tasks by status."
    )
    schedules: ScheduleQueueSummary | None = Field(
        default=None, description="Schedules by state and the next due (yours; all for admins)."
    )
