"""The schedules API contract (Shannon-compatible bodies, plus one-off, interval and workflows)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from taskgate.clock import isoformat
from taskgate.models import Schedule, ScheduleRun
from taskgate.schedules.timing import to_zone

CatchupName = Literal["skip", "one", "all"]
OverlapName = Literal["skip", "buffer_one", "allow"]
ScheduleStatus = Literal["ACTIVE", "PAUSED", "COMPLETED"]
MAX_JITTER_SECONDS = 3600

_TIMING_DOC = "Give exactly one of cron_expression, run_at or interval_seconds."


class ScheduleFields(BaseModel):
    """Everything a schedule is made of; on PATCH and PUT only the fields sent change."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    cron_expression: str | None = Field(
        default=None,
        max_length=200,
        description="5 fields (minute hour day-of-month month day-of-week) or a macro such as "
        f"@hourly, read on the wall clock of `timezone`. {_TIMING_DOC}",
    )
    run_at: datetime | None = Field(
        default=None,
        description="One-off: fire once at this instant, then the schedule is COMPLETED. A time "
        f"without an offset is read in `timezone`. {_TIMING_DOC}",
    )
    interval_seconds: int | None = Field(
        default=None,
        description="Fire every this many seconds (UTC arithmetic, unaffected by DST), counted "
        f"from `start_at`. {_TIMING_DOC}",
    )
    start_at: datetime | None = Field(
        default=None,
        description="Interval schedules only: the first occurrence, and the grid the following "
        "ones fall on. Default: one interval after the schedule is created or its timing changed.",
    )
    timezone: str | None = Field(
        default=None,
        max_length=64,
        description="IANA name. Default: the owner's preferred time zone, else UTC.",
    )
    task: dict[str, Any] | None = Field(
        default=None, description="The task to create at each occurrence: a POST /tasks body."
    )
    task_query: str | None = Field(
        default=None, min_length=1, description="Shannon: the query of the task to create."
    )
    task_context: dict[str, Any] | None = Field(
        default=None, description="Shannon: the context of the task to create."
    )
    workflow_id: uuid.UUID | None = Field(
        default=None, description="Run this workflow at each occurrence instead of a task."
    )
    input: dict[str, Any] | None = Field(default=None, description="The workflow's input.")
    timeout_seconds: int | None = Field(
        default=None, ge=1, le=86_400, description="Wall-clock limit of each task started."
    )
    max_budget_per_run_usd: float | None = Field(
        default=None, ge=0, description="Shannon: spending cap per run, kept with the schedule."
    )
    catchup: CatchupName | None = Field(
        default=None,
        description="Occurrences missed while no scheduler ran: skip them (fire only one still "
        "within the grace period), fire one, or fire all of them (up to a cap). Every missed "
        "occurrence is recorded in the history as skipped or fired late.",
    )
    overlap: OverlapName | None = Field(
        default=None,
        description="An occurrence due while the previous run is unfinished: skip it, buffer "
        "one to start when the previous run ends, or allow it to run alongside (up to "
        "max_concurrent_runs). Default skip, or allow when max_concurrent_runs > 1 is given.",
    )
    max_concurrent_runs: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="With overlap 'allow': runs in flight at once; unset means no limit.",
    )
    jitter_seconds: int | None = Field(
        default=None,
        ge=0,
        le=MAX_JITTER_SECONDS,
        description="Delay each occurrence by a fixed pseudo-random 0..jitter_seconds, to spread "
        "schedules that share a time.",
    )
    enabled: bool | None = Field(
        default=None, description="false creates the schedule PAUSED; on update, pauses or resumes."
    )


class ScheduleCreate(ScheduleFields):
    name: str = Field(min_length=1, max_length=200)


class ReasonBody(BaseModel):
    reason: str | None = Field(default=None, max_length=500)


class ScheduleOut(BaseModel):
    id: uuid.UUID
    schedule_id: uuid.UUID = Field(description="Same as id (Shannon).")
    name: str
    description: str | None
    cron_expression: str | None
    run_at: datetime | None
    interval_seconds: int | None
    start_at: datetime | None
    timezone: str
    task: dict[str, Any] | None
    task_query: str | None
    task_context: dict[str, Any] | None
    workflow_id: uuid.UUID | None
    input: dict[str, Any] | None
    timeout_seconds: int | None
    max_budget_per_run_usd: float | None
    catchup: str
    overlap: str
    max_concurrent_runs: int | None
    jitter_seconds: int
    enabled: bool
    status: ScheduleStatus
    pause_reason: str | None
    next_run_at: datetime | None = Field(description="The next occurrence, in UTC.")
    next_run_at_local: str | None = Field(
        description="The next occurrence on the schedule's wall clock, with its UTC offset."
    )
    buffered_for: datetime | None = Field(
        description="An occurrence held back by overlap 'buffer_one', waiting for the run "
        "in flight to end."
    )
    last_run_at: datetime | None
    total_runs: int = Field(description="Occurrences that started a task or workflow.")
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, s: Schedule) -> ScheduleOut:
        template = s.task_template
        return cls(
            id=s.id,
            schedule_id=s.id,
            name=s.name,
            description=s.description,
            cron_expression=s.cron_expression,
            run_at=s.run_at,
            interval_seconds=s.interval_seconds,
            start_at=s.anchor_at if s.interval_seconds is not None else None,
            timezone=s.timezone,
            task=template,
            task_query=template.get("query") if template else None,
            task_context=template.get("context") if template else None,
            workflow_id=s.workflow_id,
            input=s.workflow_input,
            timeout_seconds=s.timeout_seconds,
            max_budget_per_run_usd=s.max_budget_per_run_usd,
            catchup=s.catchup,
            overlap=s.overlap,
            max_concurrent_runs=s.max_concurrent_runs,
            jitter_seconds=s.jitter_seconds,
            enabled=s.enabled,
            status=s.status,
            pause_reason=s.pause_reason,
            next_run_at=s.next_run_at,
            next_run_at_local=local_time(s.next_run_at, s.timezone),
            buffered_for=s.buffered_for,
            last_run_at=s.last_run_at,
            total_runs=s.total_runs,
            version=s.version,
            created_at=s.created_at,
            updated_at=s.updated_at,
        )


class ScheduleCreated(ScheduleOut):
    message: str = "Schedule created successfully"


@dataclass(frozen=True)
class ScheduleFilters:
    """What ``GET /api/v1/schedules`` narrows the caller's schedules to."""

    status: ScheduleStatus | None = None
    search: str | None = None


class ScheduleList(BaseModel):
    """A page of schedules; the Shannon fields appear when ``page`` or ``page_size`` is given."""

    results: list[ScheduleOut]
    next: str | None
    count: int | None = None
    schedules: list[ScheduleOut] | None = None
    total: int | None = None
    page: int | None = None
    page_size: int | None = None


class ScheduleRunOut(BaseModel):
    id: uuid.UUID
    schedule_id: uuid.UUID
    scheduled_for: datetime = Field(description="The occurrence, in UTC (for a manual run: now).")
    scheduled_for_local: str
    trigger: Literal["schedule", "manual"]
    status: Literal["fired", "skipped", "buffered"]
    reason: str | None = Field(
        description="Why skipped (overlap, max_concurrent_runs, catchup, skip-next, paused, "
        "error, owner_inactive, project_disabled), or 'catchup' for an occurrence fired late "
        "after downtime."
    )
    error: str | None
    fired_at: datetime | None = Field(description="When the task or execution was created.")
    delay_ms: int | None = Field(description="fired_at minus scheduled_for (includes jitter).")
    task_id: uuid.UUID | None
    execution_id: uuid.UUID | None
    outcome: str | None = Field(
        description="Status of the task or execution it started (QUEUED, RUNNING, COMPLETED, "
        "FAILED, ...), or DELETED when that is gone."
    )
    started_at: datetime | None = Field(description="When the task started running.")
    finished_at: datetime | None
    created_at: datetime

    @classmethod
    def of(
        cls,
        run: ScheduleRun,
        zone: str,
        outcome: str | None = None,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
    ) -> ScheduleRunOut:
        return cls(
            id=run.id,
            schedule_id=run.schedule_id,
            scheduled_for=run.scheduled_for,
            scheduled_for_local=local_time(run.scheduled_for, zone) or "",
            trigger=run.trigger,
            status=run.status,
            reason=run.reason,
            error=run.error,
            fired_at=run.fired_at,
            delay_ms=run.delay_ms,
            task_id=run.task_id,
            execution_id=run.execution_id,
            outcome=outcome or run.outcome,
            started_at=started_at,
            finished_at=finished_at,
            created_at=run.created_at,
        )


class ScheduleSkipped(BaseModel):
    skipped: ScheduleRunOut = Field(description="The occurrence that will not run.")
    schedule: ScheduleOut = Field(description="The schedule, with its new next_run_at.")


class ScheduleQueueSummary(BaseModel):
    """The schedules part of GET /api/v1/queue."""

    by_state: dict[str, int] = Field(description="Schedules per status (ACTIVE, PAUSED, ...).")
    due_now: int = Field(description="Active schedules whose next occurrence is already due.")
    next_due_at: datetime | None = Field(description="When the scheduler fires next.")
    next_due_schedule_id: uuid.UUID | None


def local_time(instant: datetime | None, zone: str) -> str | None:
    """RFC 3339 on the zone's wall clock (``2026-03-08T03:30:00-04:00``)."""
    if instant is None:
        return None
    if zone == "UTC":
        return isoformat(instant)
    return to_zone(instant, zone).isoformat()
