"""Schedules and the history of their occurrences."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from taskgate.clock import utcnow
from taskgate.db.base import Base, IdMixin, TimestampMixin
from taskgate.db.types import JSONType, UTCDateTime
from taskgate.models.governance import project_index, project_ref


class Schedule(IdMixin, TimestampMixin, Base):
    __tablename__ = "schedules"
    __table_args__ = (project_index("schedules", "created_at"),)

    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID] = project_ref()
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    # Exactly one of the three timings is set.
    cron_expression: Mapped[str | None] = mapped_column(String(200))
    run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    interval_seconds: Mapped[int | None] = mapped_column(Integer)
    # Interval occurrences are anchor + k * interval, so a restart never shifts the grid.
    anchor_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    timezone: Mapped[str] = mapped_column(String(64))
    # Exactly one target: a task body, or a workflow with its input.
    task_template: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    workflow_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    workflow_input: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    timeout_seconds: Mapped[int | None] = mapped_column(Integer)
    max_budget_per_run_usd: Mapped[float | None] = mapped_column(Float)
    catchup: Mapped[str] = mapped_column(String(8))
    overlap: Mapped[str] = mapped_column(String(16))
    max_concurrent_runs: Mapped[int | None] = mapped_column(Integer)
    jitter_seconds: Mapped[int] = mapped_column(Integer, default=0)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    pause_reason: Mapped[str | None] = mapped_column(String(500))
    # The next occurrence (what its history row will call scheduled_for) ...
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # ... and when the scheduler should look at this row again: the occurrence plus its
    # jitter, or sooner while a buffered occurrence waits. NULL when nothing can fire
    # (paused, disabled, completed), so the claim index only holds live schedules.
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    buffered_for: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    total_runs: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(Integer, default=1)


class ScheduleRun(IdMixin, Base):
    """One occurrence of a schedule: fired, skipped (with the reason) or buffered."""

    __tablename__ = "schedule_runs"
    # The key that makes a second firing of the same occurrence impossible.
    __table_args__ = (UniqueConstraint("schedule_id", "scheduled_for"),)

    schedule_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("schedules.id", ondelete="CASCADE")
    )
    scheduled_for: Mapped[datetime] = mapped_column(UTCDateTime)
    trigger: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delay_ms: Mapped[int | None] = mapped_column(BigInteger)
    task_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    execution_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # The started task's or execution's final status, copied once it is final.
    outcome: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
